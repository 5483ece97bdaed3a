# syntax=docker/dockerfile:1
# One image for every fedleak service of docker-compose.yml: Flower's SuperLink, SuperNodes and
# SuperExecs (flwr 1.41.0's own entry points, pinned by pyproject.toml), fedleak's ServerApp and
# ClientApps, and the Ray attack cluster — so all of them run the same fedleak, torch, flwr and Ray.
#
#   docker build -t fedleak:0.1.0 .                                      # CPU torch (default)
#   docker build -t fedleak-cuda:0.1.0 --build-arg TORCH_INDEX_URL=https://pypi.org/simple .
#
# PyPI's Linux x86-64 torch wheels carry CUDA; the CPU index's do not (a much smaller image).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/fedleak
ENV PATH=/opt/fedleak/bin:$PATH
# The same torch pair as CI (README: other versions break torchvision).
RUN pip install --index-url "${TORCH_INDEX_URL}" torch==2.14.1 torchvision==0.29.1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY fedleak ./fedleak
RUN pip install .

FROM ${PYTHON_IMAGE} AS runtime
# Flower's own images run as the user app (uid 49999); mounted certificates and state expect it.
# Runs land in /fedleak/runs (the compose file's runs volume): a relative out-dir is resolved
# against FEDLEAK_OUT_BASE.
RUN useradd --uid 49999 --user-group --create-home --home-dir /home/app app \
    && mkdir -p /state /fedleak/runs /data /certs \
    && chown app:app /state /fedleak /fedleak/runs
COPY --from=build /opt/fedleak /opt/fedleak
ENV PATH=/opt/fedleak/bin:$PATH PYTHONUNBUFFERED=1 FEDLEAK_OUT_BASE=/fedleak
WORKDIR /home/app
USER 49999:49999
CMD ["fedleak", "--help"]
