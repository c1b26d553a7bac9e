# syntax=docker/dockerfile:1
# The client side: the tritonhf package with its `ui` extra (Gradio demo on 7860 with /metrics,
# Streamlit console on 8501) and the `tritonhf` CLI. No torch, transformers or onnx: the client
# never imports the export code. Runs as a non-root user.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tritonhf ./tritonhf
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="tritonhf-app" \
      org.opencontainers.image.description="tritonhf client, CLI, Gradio demo and Streamlit console" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_ANALYTICS_ENABLED=False \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /home/app --create-home app
# constraints.txt pins every version the test suite ran with.
COPY constraints.txt /tmp/constraints.txt
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    for wheel in /wheels/tritonhf-*.whl; do \
      python -m pip install --no-cache-dir -c /tmp/constraints.txt "${wheel}[ui]"; \
    done \
 && rm /tmp/constraints.txt

USER 10001:10001
WORKDIR /home/app
EXPOSE 7860 8501
# Healthy when the command the container runs answers: `ui` on /metrics (port 7860), `console`
# on /_stcore/health (8501), or on its --port. PID 1's argv names the command, also under
# `docker run --init` (docker-init's argv holds it after "--"); any other command counts as ui.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; a = open('/proc/1/cmdline').read().split(chr(0)); command = next((x for x in a if x in ('ui', 'console')), 'ui'); port = ([v for k, v in zip(a, a[1:]) if k == '--port'] + [x[7:] for x in a if x.startswith('--port=')] + ['8501' if command == 'console' else '7860'])[0]; urllib.request.urlopen('http://127.0.0.1:' + port + ('/_stcore/health' if command == 'console' else '/metrics'), timeout=2)"]
ENTRYPOINT ["tritonhf"]
CMD ["ui", "--host", "0.0.0.0", "--port", "7860", "--grpc-url", "triton:8001", "--http-url", "triton:8000"]
