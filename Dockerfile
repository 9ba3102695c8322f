# hubbub's container image (docs/operations.md#containers).
#
#   docker build -t hubbub .
#   openssl rand -hex 32 > hubbub-secret
#   docker run -p 8080:8080 -v "$PWD/hubbub-secret:/run/secrets/hubbub_secret:ro" hubbub
#
# Two stages: the first builds a virtualenv holding the hub and its Redis
# engine; the second copies only that virtualenv onto a fresh base, so no
# compiler, build tool or pip cache ships. The hub runs as an unprivileged
# user, listens on every address of the container, and requires
# authentication: its HS256 secret is read from /run/secrets/hubbub_secret
# (where `docker run -v` or compose `secrets:` put it), never from the image.
# Every setting is a HUBBUB_* variable (docs/configuration.md).
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python3 -m venv /opt/hubbub
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN /opt/hubbub/bin/pip install --no-cache-dir --disable-pip-version-check '.[redis]'

FROM ${PYTHON_IMAGE}
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/hubbub --create-home hubbub
COPY --from=build /opt/hubbub /opt/hubbub
ENV PATH=/opt/hubbub/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HUBBUB_HOST=0.0.0.0 \
    HUBBUB_PORT=8080 \
    HUBBUB_STORE=sqlite:////var/lib/hubbub/hub.db \
    HUBBUB_AUTH__SECRET_FILE=/run/secrets/hubbub_secret
USER hubbub
WORKDIR /var/lib/hubbub
VOLUME ["/var/lib/hubbub"]
EXPOSE 8080
# Liveness: the process serves. (Route traffic on /readyz: it also says whether
# the store answers and the node is not draining.)
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HUBBUB_PORT', '8080'), timeout=2)"]
# SIGTERM drains (docs/operations.md#shutting-down-the-drain); give it the time.
STOPSIGNAL SIGTERM
CMD ["hubbub", "serve"]
