#!/usr/bin/env bash
# The `models` service (compose.yaml): fill the model repository volume with the real models.
#   /models     the Triton model repository (volume `model-repository`, mounted read-only by triton,
#               api and worker)
#   /downloads  the hub downloads (volume `model-downloads`)
#   /cache      the exports, by content hash (volume `model-cache`): a rerun with the same sources,
#               exporters and requirements is a copy, not an export
# Extra arguments go to export_scripts.download (e.g. --force). HF_TOKEN: see .env.example.
set -euo pipefail
cd /opt/intrascribe
py=.envs/export/bin/python
"$py" -m export_scripts.download --all --dest /downloads "$@"
# the repository's model code and configs (config.pbtxt, configs/gpu.pbtxt, 1/model.py) of this
# image's version, then the exported weights beside them
cp -R model_repository/. /models/
"$py" -m export_scripts.build real --repo-dir /models --models-dir /downloads --cache-dir /cache/models
echo "models: /models is ready"
