# syntax=docker/dockerfile:1
# Triton 2.51 (NGC 24.10, the server version the tests run from the nvidia-pytriton wheel) plus
# exactly what the Python-backend steps import: numpy<2, tokenizers, onnxruntime, and the
# tritonhf package itself (its observability helpers), installed without its dependencies.
# The model repository is not baked in: compose and Kubernetes mount it read-only at /models.

FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tritonhf ./tritonhf
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# tritonhf's request guard (tritonhf/server/request_guard/): without it, one request for the
# classification extension on a text output (a classifier's LABEL), a large form-encoded body
# or a deeply nested JSON body kills Triton 2.51, one with a shape whose size overflows kills a
# Python-backend stub, the HTTP frontend drops responses under load
# and answers a malformed request with 500. Its glibc symbols go up to 2.34; the NGC base (Ubuntu 22.04) has 2.35.
FROM gcc:12-bookworm AS guard
COPY tritonhf/server/request_guard/ /src/request_guard/
RUN cc -shared -fPIC -O2 -o /src/libtritonhf_request_guard.so /src/request_guard/*.c -ldl

FROM nvcr.io/nvidia/tritonserver:24.10-py3
# The version in pyproject.toml (tests/deploy checks they agree).
ARG TRITONHF_VERSION=0.1.0
# true: also torch + transformers, for models exported with --runtime python-torch (a CUDA 12.6
# build of torch, like the base image: docker/requirements-triton-torch.txt says why).
ARG WITH_TORCH=false

LABEL org.opencontainers.image.title="tritonhf-triton" \
      org.opencontainers.image.description="Triton 2.51 with the tritonhf Python-backend dependencies" \
      org.opencontainers.image.source="https://github.com/tritonhf/tritonhf" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY docker/requirements-triton.txt docker/requirements-triton-torch.txt /opt/tritonhf/
# The stub runs the image's /usr/bin/python3 (3.10); install into it, without a pip cache.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    python3 -m pip install --no-cache-dir -r /opt/tritonhf/requirements-triton.txt \
 && python3 -m pip install --no-cache-dir --no-deps --no-index --find-links /wheels \
      "tritonhf==${TRITONHF_VERSION}" \
 && if [ "${WITH_TORCH}" = "true" ]; then \
      python3 -m pip install --no-cache-dir -r /opt/tritonhf/requirements-triton.txt \
        -r /opt/tritonhf/requirements-triton-torch.txt \
      && python3 -c "import torch, transformers; assert torch.version.cuda.startswith('12.')"; \
    fi \
 && python3 -c "import numpy, tokenizers, onnxruntime, tritonhf.server.entrypoint; assert numpy.__version__ < '2'"

COPY --from=guard /src/libtritonhf_request_guard.so /opt/tritonhf/
# Preloaded into tritonserver (and inert in the image's other processes).
ENV LD_PRELOAD=/opt/tritonhf/libtritonhf_request_guard.so
# ONNX Runtime sends usage telemetry to Microsoft unless this is set (tritonhf/telemetry.py).
ENV ORT_DISABLE_TELEMETRY=1

# The NGC image ships the non-root user triton-server with uid 1000; run as it.
USER 1000:1000
WORKDIR /opt/tritonserver

EXPOSE 8000 8001 8002
# python3 is in the image (curl may not be); ready means every loaded model is ready.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=5 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2)"]

# The entrypoint runs tritonserver as its child with the CMD's flags and, on SIGTERM/SIGINT,
# drains it as `tritonhf serve` does (ensembles unloaded first, so no request fails between two
# steps) before it stops; as PID 1 it forwards signals and reaps orphans (tritonhf/server/
# entrypoint.py, standard library only). Pass flags as the command, never "tritonserver".
# Explicit model control with every model loaded at start: the same flags `tritonhf serve` uses
# (tritonhf/server/launcher.py), so `tritonhf deploy` can hot-reload versions in the container.
# With TRITONHF_ADMIN_KEY in the environment (never baked in: compose passes the host's, the
# Kubernetes manifests a Secret) it adds the flags that restrict the repository, shared-memory,
# trace and logging APIs to requests carrying the key; unset, it warns that they are open.
# NGC's own entrypoint first (its banner, the CUDA forward-compatibility and driver checks of
# /opt/nvidia/entrypoint.d); it ends with `exec "$@"`, so the draining entrypoint is PID 1.
ENTRYPOINT ["/opt/nvidia/nvidia_entrypoint.sh", "python3", "-m", "tritonhf.server.entrypoint"]
CMD ["--model-repository=/models", \
     "--model-control-mode=explicit", \
     "--load-model=*", \
     "--http-port=8000", \
     "--grpc-port=8001", \
     "--metrics-port=8002", \
     "--allow-metrics=true", \
     "--metrics-config=summary_latencies=true", \
     "--strict-readiness=false", \
     "--exit-timeout-secs=30", \
     "--log-verbose=0", \
     "--log-format=ISO8601"]
