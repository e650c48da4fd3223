# The export environment as an image, for the one-shot `models` service (compose.yaml): downloads the
# real models from ModelScope / Hugging Face and exports them into the model repository volume.
# It is `make download-models export-real` in a container: the same scripts and the same
# requirements/export.txt (built by scripts/ensure_env.sh, so its smoke test runs at build time).
# torch comes from PyTorch's CPU index (2.13.0+cpu satisfies requirements/export.txt's torch==2.13.0;
# exporting needs no GPU and the CUDA build is gigabytes larger).
#
#   docker build -f docker/export.Dockerfile -t intrascribe/export:0.1.0 .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu \
    INTRASCRIBE_CACHE=/opt/intrascribe-cache

WORKDIR /opt/intrascribe
COPY requirements/export.txt ./requirements/export.txt
COPY scripts/ensure_env.sh ./scripts/ensure_env.sh
RUN bash scripts/ensure_env.sh export

COPY speechlib ./speechlib
COPY serving ./serving
COPY export_scripts ./export_scripts
# hashed into the diarization export's cache key (export_scripts/build.py: the artifact's `code`)
COPY tests/__init__.py tests/meetings.py tests/audio.py ./tests/
COPY model_repository ./model_repository
COPY docker/models.sh ./docker/models.sh

# the exports' content-hash cache and the downloads live in volumes (compose.yaml), not in the image
ENTRYPOINT ["bash", "docker/models.sh"]
