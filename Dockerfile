# syntax=docker/dockerfile:1
# AVCaption: one image for every component; the command picks it:
#   docker run IMAGE serve --target gateway        (all, gateway, upload, media, media-worker,
#                                                    stats, webhooks, webhooks-worker)
# Dependencies come from requirements.lock with their hashes (runtime part only, see
# deploy/docker/runtime_requirements.py); ffmpeg is the static build inside the imageio-ffmpeg
# wheel, so the image needs no apt at all. See docs/operations.md.
# --- build: wheels of the workspace, the runtime virtualenv -----------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements.lock deploy/docker/runtime_requirements.py ./
# Binary wheels only (--only-binary): nothing is compiled, so no compiler is needed anywhere.
RUN python runtime_requirements.py requirements.lock --with dumb-init > runtime.lock \
 && python runtime_requirements.py requirements.lock --only hatchling --only editables > build.lock \
 && python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps --only-binary=:all: -r build.lock \
 && python -m venv /opt/avcaption \
 && /opt/avcaption/bin/pip install --require-hashes --no-deps --only-binary=:all: -r runtime.lock
COPY pyproject.toml README.md ./
COPY src ./src
COPY libs/common ./libs/common
COPY services ./services
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels \
      . ./libs/common ./services/gateway ./services/upload ./services/media \
      ./services/stats ./services/webhooks \
 && /opt/avcaption/bin/pip install --no-deps --no-index /wheels/*.whl \
 && /opt/avcaption/bin/avcaption version

# --- runtime: the virtualenv on a slim Python, as an unprivileged user ------------------------
FROM python:3.11-slim-bookworm
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="avcaption" \
      org.opencontainers.image.description="AVCaption: a self-hostable video platform API (gateway, upload, media, stats, webhooks)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Proprietary" \
      org.opencontainers.image.vendor="AVCaption"
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can check it, volumes can be chowned to it.
RUN groupadd --system --gid 10001 avcaption \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/avcaption --no-create-home \
      --shell /usr/sbin/nologin avcaption \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/avcaption /var/lib/avcaption/scratch
COPY --from=build /opt/avcaption /opt/avcaption
ENV PATH=/opt/avcaption/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AVC_HOST=0.0.0.0 \
    AVC_PORT=8080 \
    AVC_DATA_DIR=/var/lib/avcaption \
    AVC_MEDIA_WORK_DIR=/var/lib/avcaption/scratch
WORKDIR /var/lib/avcaption
USER 10001:10001
EXPOSE 8080
# Alive = /healthz answers (readiness is the orchestrator's /readyz probe). Python, not curl:
# the slim image has no curl and gets no apt.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AVC_PORT', '8080'), timeout=4)"]
# dumb-init (from the lock, a static binary in its wheel) is PID 1: it forwards SIGTERM to
# avcaption, which drains (uvicorn's graceful shutdown, 25 s) and stops its consumers, and it
# reaps orphaned children (ffmpeg). --single-child: the signal goes to avcaption only, which
# ends its own ffmpeg processes, instead of to the whole process group at once.
ENTRYPOINT ["dumb-init", "--single-child", "--", "avcaption"]
CMD ["serve", "--target", "all"]
