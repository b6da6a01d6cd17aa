# syntax=docker/dockerfile:1
# jupyter-mcp as a daemon in a container (SPEC §9): MCP Streamable HTTP on port 3000, state in
# the /data volume, notebooks under /notebooks.
#   docker build -t jupyter-mcp .
#   docker run -p 127.0.0.1:3000:3000 -v jmcp-data:/data -e JUPYTER_MCP_TOKEN=... jupyter-mcp
# Stage 1 builds the Python wheel that carries the binary (pyproject.toml; thin LTO through
# the `dist` profile); stage 2 installs that wheel, with ipykernel and dill, into a venv:
# the same commands a pip user runs (tests/e2e/test_packaging.py runs them outside a container).

ARG RUST_VERSION=1.95
ARG PYTHON_VERSION=3.11

FROM rust:${RUST_VERSION}-slim-bookworm AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/maturin \
 && /opt/maturin/bin/pip install --no-cache-dir maturin==1.16.0
WORKDIR /src
COPY Cargo.toml Cargo.lock pyproject.toml README.md ./
COPY crates ./crates
COPY src ./src
RUN /opt/maturin/bin/maturin build --profile dist --locked --out /wheels

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
# Non-root; /data and /notebooks belong to it (a Kubernetes volume gets fsGroup 10001 instead).
RUN groupadd --gid 10001 jmcp \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/jmcp --shell /usr/sbin/nologin jmcp \
 && mkdir -p /data /notebooks \
 && chown jmcp:jmcp /data /notebooks
# The wheel pulls ipykernel and dill; pinned here as the project tests them (requirements.txt).
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/jupyter-mcp \
 && /opt/jupyter-mcp/bin/pip install --no-cache-dir /wheels/jupyter_mcp-*.whl ipykernel==7.4.0 dill==0.4.1
ENV PATH=/opt/jupyter-mcp/bin:$PATH \
    JUPYTER_MCP_DATA_DIR=/data \
    JUPYTER_MCP_ROOT=/notebooks \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /notebooks
VOLUME ["/data"]
EXPOSE 3000
# /health/live needs no token. python is in the image; curl is not.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:3000/health/live', timeout=4)"]
# Inside the container the daemon listens on every interface (the port is published by the
# runtime); the token comes from JUPYTER_MCP_TOKEN (a secret), else /data/token is generated.
# Pre-flight (doctor's checks) runs at start: no shell entrypoint.
ENTRYPOINT ["jupyter-mcp"]
CMD ["serve", "--transport", "http", "--bind", "0.0.0.0:3000"]
