# syntax=docker/dockerfile:1
# Trainboard in one container: web process + local executor (trainer processes) + SQLite in /data.
#
# Build (BuildKit, the default builder since Docker 23 and in `docker compose`; with the old
# docker-compose 1.x set DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1):
#   docker build -t trainboard .                                  # CPU PyTorch (the default)
#   docker build --build-arg EXTRAS=onnx,ray -t trainboard:ray .  # the Ray image
# The Ray image's `ray` command runs a head or worker node (see docker-compose.yml, docs/deployment.md).
#
# Build arguments:
#   EXTRAS       the package's extras (default onnx; onnx,ray for the Ray image; add postgres for
#                PostgreSQL's driver).
#   TORCH_INDEX  where torch and torchvision come from, an extra index next to PyPI. The default,
#                https://download.pytorch.org/whl/cpu, gives the CPU build (a few hundred MB, no
#                CUDA libraries; the build fails if CUDA libraries come in anyway). For GPUs, name a
#                CUDA index, e.g. --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 (one
#                your driver supports): those wheels bring their own CUDA runtime, so the default
#                base works; the host needs the NVIDIA driver and Container Toolkit (`docker run
#                --gpus all`, or the device reservation in docker-compose.yml).
#   BASE_IMAGE   the base of both stages (default python:3.11-slim). Another Debian or Ubuntu image
#                with Python >= 3.10 as `python` and pip also works, e.g. a CUDA image that has
#                Python (a plain nvidia/cuda image has none); use it with a CUDA TORCH_INDEX:
#                  docker build --build-arg BASE_IMAGE=<cuda image with python> \
#                    --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t trainboard:cuda .
#
# Two stages: `build` (with compilers) makes wheels of every dependency and an editable wheel of
# the app; the runtime stage installs only those wheels (no compiler, no pip download). The app is
# installed editable at /app because it reads templates/, static/ and alembic/ from its source tree.
#
# Running: `trainboard serve` applies the database migrations, then serves on 0.0.0.0:8000 as the
# unprivileged user trainboard (uid 10001), which owns the /data volume (SQLite, artifacts, secret
# key). Listening beyond loopback, the server refuses to start without an account: set
# TRAINBOARD_ADMIN_PASSWORD (docker compose passes it from .env, see .env.example) to create the
# admin `admin` on first start, or create one with `docker run ... trainboard users create NAME --admin`.
# A data volume made by an older image (which ran as root) needs its owner changed once:
#   docker compose run --rm --user 0 trainboard chown -R 10001:10001 /data
# The health check asks http://127.0.0.1:$TRAINBOARD_PORT/healthz (default 8000; set the port with
# TRAINBOARD_PORT, not --port); containers running another command (a Ray node) pass it trivially.
ARG BASE_IMAGE=python:3.11-slim
ARG EXTRAS=onnx
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

FROM ${BASE_IMAGE} AS build
ARG EXTRAS
ARG TORCH_INDEX
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
# Compilers, for any dependency without a wheel for this platform; this stage is thrown away.
# Unpinned: the base image's release fixes the versions, and pins would break on security updates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
# setuptools builds the app's editable wheel below (pyproject.toml's build backend).
RUN pip install --no-cache-dir "setuptools>=68"
WORKDIR /app
# Dependencies first, from pyproject.toml alone, so that changing the code does not rebuild them.
COPY pyproject.toml README.md ./
RUN pip wheel --no-cache-dir --wheel-dir /wheels --extra-index-url "${TORCH_INDEX}" ".[${EXTRAS}]" \
 && rm /wheels/trainboard-*.whl \
 && case "${TORCH_INDEX}" in \
      */cpu) if [ -n "$(find /wheels -name 'nvidia_*.whl')" ]; then \
               echo "TORCH_INDEX=${TORCH_INDEX} but CUDA libraries were pulled in:" \
                    "$(find /wheels -name 'nvidia_*.whl')" >&2; \
               exit 1; \
             fi ;; \
    esac
COPY app ./app
COPY trainboard ./trainboard
# The app's editable wheel (PEP 660): it maps the packages app and trainboard to /app, where the
# runtime stage puts the same sources.
RUN python -c "from setuptools import build_meta; build_meta.build_editable('/editable')"

FROM ${BASE_IMAGE} AS runtime
ARG EXTRAS
ENV PYTHONUNBUFFERED=1 TRAINBOARD_DATA_DIR=/data TRAINBOARD_HOST=0.0.0.0
# tini as PID 1: forwards signals to the server and reaps the trainers' orphaned children.
# Unpinned for the same reason as build-essential above.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 trainboard \
 && useradd --system --uid 10001 --gid trainboard --create-home --home-dir /home/trainboard \
      --shell /usr/sbin/nologin trainboard \
 && mkdir -p /data \
 && chown trainboard:trainboard /data
WORKDIR /app
# Only the wheels made above: no index, no compiler. The wheels are mounted, not copied, so they
# take no room in the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --root-user-action=ignore --find-links=/wheels /wheels/*.whl
# The app's own wheel, the one wheel in /editable with no index to choose from: nothing to pin.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=build,source=/editable,target=/editable \
    pip install --no-cache-dir --no-index --root-user-action=ignore --find-links=/editable \
      "trainboard[${EXTRAS}]" \
 && pip check
# The sources stay owned by root: the server and its trainers read them, only /data is written.
COPY alembic.ini ./
COPY alembic ./alembic
COPY templates ./templates
COPY static ./static
COPY app ./app
COPY trainboard ./trainboard
RUN python -m compileall -q /app
VOLUME /data
# By number, so that Kubernetes (runAsNonRoot) can tell it is not root.
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; argv = open('/proc/1/cmdline', 'rb').read().split(b'\\0'); b'serve' not in argv or urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TRAINBOARD_PORT', '8000'), timeout=5)"]
ENTRYPOINT ["tini", "--"]
CMD ["trainboard", "serve"]
