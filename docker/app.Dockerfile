# Intrascribe's api / worker / agent image: the runtime part of the serving environment (no
# tritonserver, no torch: these processes reach the models through Triton's gRPC) and this
# repository's code. One image, three commands (compose.yaml):
#   api     python -m api                  (uvicorn on API_HOST:API_PORT)
#   worker  python -m api.worker           (durable background jobs)
#   agent   python -m agent start          (LiveKit agent)
#   migrate python -m api.db.migrate upgrade
#
#   docker build -f docker/app.Dockerfile -t intrascribe/backend:0.1.0 .
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY docker/app-requirements.txt /tmp/app-requirements.txt
RUN pip install --no-cache-dir -r /tmp/app-requirements.txt \
    && useradd --system --uid 10001 --create-home --home-dir /home/intrascribe intrascribe \
    && mkdir -p /data \
    && chown intrascribe /data

WORKDIR /app
COPY alembic.ini ./
COPY config ./config
COPY speechlib ./speechlib
COPY inference_client ./inference_client
COPY api ./api
COPY agent ./agent
ENV PYTHONPATH=/app \
    DATA_DIR=/data

USER 10001
EXPOSE 8000
CMD ["python", "-m", "api"]
