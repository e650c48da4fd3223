# Intrascribe's Triton image: NVIDIA's tritonserver with the Python backend, our models' Python
# dependencies and the code they import (speechlib, serving) copied in.
#
# 24.10 ships tritonserver 2.51.0, the release the nvidia-pytriton 0.7.0 wheel bundles (the wheel's
# server answers GET /v2 with "version": "2.51.0"), so the models behave here as in the tests; its
# Python is 3.10 (Ubuntu 22.04), CUDA 12.6 with cuDNN 9, what onnxruntime-gpu 1.23 expects.
# The model repository itself (config.pbtxt, configs/gpu.pbtxt, model.py and the exported weights)
# is a volume the one-shot `models` service fills (compose.yaml).
#
#   docker build -f docker/triton.Dockerfile -t intrascribe/triton:0.1.0 .
FROM nvcr.io/nvidia/tritonserver:24.10-py3

COPY docker/triton-requirements.txt /tmp/triton-requirements.txt
RUN python3 -m pip install --no-cache-dir -r /tmp/triton-requirements.txt \
    && python3 -c "import numpy, onnxruntime, kaldi_native_fbank, yaml; assert numpy.__version__ < '2'"

COPY speechlib /opt/intrascribe/speechlib
COPY serving /opt/intrascribe/serving

# the models import speechlib and serving; MALLOC_MMAP_THRESHOLD_ keeps the Python-backend stubs'
# memory flat (serving/launcher.py sets the same for the local tritonserver)
ENV PYTHONPATH=/opt/intrascribe \
    MALLOC_MMAP_THRESHOLD_=1048576

# the image's unprivileged triton-server account (uid 1000); Triton needs no root
USER 1000
EXPOSE 8100 8101 8102
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=30 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8100/v2/health/ready', timeout=4)"]
CMD ["tritonserver", "--model-repository=/models", "--model-config-name=gpu", "--http-port=8100", "--grpc-port=8101", "--metrics-port=8102"]
