# syntax=docker/dockerfile:1.7
# Two images from one file:
#   --target serving   (the default, the last stage): the KServe predictor alone, `python -m predictor`
#                      as the ENTRYPOINT (KServe appends --model_name/--model_dir/… as args). Its
#                      packages are requirements/serving.txt only (at requirements/lock.txt's
#                      versions and hashes), installed without dependencies:
#                      no training libraries, no Kubernetes client, no MLflow.
#   --target training  everything else: `python -m training` (the training Job), `housing rollout …`,
#                      `mlflow server` and boto3 (the chart's dev-stack MLflow and bucket Job); the
#                      `housing` CLI is its ENTRYPOINT.
# Both run as UID 10001 and work with a read-only root filesystem (only /tmp writable).

ARG PYTHON_VERSION=3.11
# The base of every stage: the official image by default; the local test cluster passes its own
# (scripts/images/build.sh: --build-arg BASE_IMAGE=localhost/housing-base:bookworm-py311).
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim

# -- build-base: a compiler for the predictor's C fast path ----------------------------------------
FROM ${BASE_IMAGE} AS build-base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
# uv: the platform's CA store (builds mount the host's bundle there), no cache in the layers, and
# byte-compiled packages as pip makes them (a read-only pod could not write the .pyc files: every
# start would compile every module it imports)
ENV PATH=/opt/venv/bin:$PATH VIRTUAL_ENV=/opt/venv UV_SYSTEM_CERTS=1 UV_NO_CACHE=1 UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
WORKDIR /src
# uv, the installer of the one lock (requirements/lock.txt): its own pinned, hashed entry there,
# installed with pip --require-hashes into /opt/uv (not into /opt/venv, which the images copy)
COPY requirements/lock.txt ./requirements/lock.txt
COPY scripts/lock/pick.py ./scripts/lock/pick.py
RUN python scripts/lock/pick.py uv < requirements/lock.txt > /tmp/uv.txt \
 && python -m venv /opt/uv && /opt/uv/bin/pip install -q --no-deps --require-hashes -r /tmp/uv.txt \
 && ln -s /opt/uv/bin/uv /usr/local/bin/uv

# -- training-build: every dependency of the project, then the code -------------------------------
FROM build-base AS training-build
# dependencies first (cached while only the code changes): the project's own requirements
# (pyproject.toml, without the dev extra) at the versions and hashes of the lock
COPY pyproject.toml ./
RUN uv pip install --require-hashes -r pyproject.toml -c requirements/lock.txt
COPY pyproject.toml setup.py README.md* ./
COPY common ./common
COPY housing ./housing
COPY bundle ./bundle
COPY registry ./registry
COPY predictor ./predictor
COPY training ./training
COPY monitor ./monitor
COPY rollout ./rollout
# the code in /opt/app, apart from the dependencies' venv: a code change is one small image layer
# byte-compiled here (hash-checked, so the layer stays reproducible): with a read-only root
# filesystem nothing could write the .pyc files, and every start would compile the code again
RUN pip install --no-deps --no-compile --target /opt/app . \
 && python -m compileall -q --invalidation-mode unchecked-hash /opt/app \
 && cd / && PYTHONPATH=/opt/app python -c "import bundle._ubjson, predictor.codec._codec, predictor.core._fastpath, predictor.core._ranges, predictor.core._treeshap, training, rollout"

# -- serving-build: the predictor's packages without their dependencies, then its code ------------
FROM build-base AS serving-build
COPY requirements/serving.txt ./requirements/serving.txt
# the names of requirements/serving.txt, each with the lock's version and hashes (pick.py); `pip
# check` may only miss what requirements/serving.txt names on its `# omit:` lines
RUN python scripts/lock/pick.py $(sed 's/#.*//' requirements/serving.txt) < requirements/lock.txt > /tmp/serving.lock \
 && uv pip install --no-deps --require-hashes -r /tmp/serving.lock \
 && omitted="$(sed -n 's/^# omit: \([^ ]*\).*/\1/p' requirements/serving.txt | paste -sd'|')" \
 && { pip check > /tmp/pip-check.txt || true; } \
 && if grep -v -E "requires (${omitted}), which is not installed\.$" /tmp/pip-check.txt; then \
      echo "serving: pip check found more than requirements/serving.txt omits (above)" >&2; exit 1; fi
COPY pyproject.toml setup.py README.md* ./
COPY common ./common
COPY bundle ./bundle
COPY registry ./registry
COPY predictor ./predictor
# only common, bundle, registry and predictor: the predictor imports nothing else (tests/test_layers.py)
RUN pip install --no-deps --no-compile --target /opt/app . && rm -r /opt/app/bin \
 && python -m compileall -q --invalidation-mode unchecked-hash /opt/app \
 && cd / && PYTHONPATH=/opt/app python -c "import bundle._ubjson, predictor.codec._codec, predictor.core._fastpath, predictor.core._ranges, predictor.core._treeshap"

# -- runtime-base: no compiler, non-root, read-only root filesystem friendly -----------------------
FROM ${BASE_IMAGE} AS runtime-base
ENV PATH=/opt/app/bin:/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HOUSING_HOME=/tmp/housing
# the standard library byte-compiled: base images delete its .pyc files to save space, and with a
# read-only root filesystem each start compiled what it imports again (~1 CPU s of a predictor's
# start: 2.2 → 1.1 CPU s in the serving image, with our code compiled too — see *-build above)
RUN groupadd --system --gid 10001 housing \
 && useradd --system --uid 10001 --gid housing --home-dir /tmp --shell /usr/sbin/nologin housing \
 && python -m compileall -q -x '/(test|tests|idlelib|lib2to3)/' --invalidation-mode unchecked-hash \
      "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
WORKDIR /tmp

# -- training: the training Job, rollouts, the dev stack's MLflow ----------------------------------
FROM runtime-base AS training
LABEL org.opencontainers.image.title="housing-training" \
      org.opencontainers.image.description="Training, rollouts and the housing CLI for housing-price models"
ENV MPLCONFIGDIR=/tmp/matplotlib
COPY --from=training-build /opt/venv /opt/venv
COPY --from=training-build /opt/app /opt/app
USER 10001:10001
ENTRYPOINT ["housing"]
CMD ["--help"]

# -- serving: the KServe predictor (the default target) -------------------------------------------
FROM runtime-base AS serving
LABEL org.opencontainers.image.title="housing-serving" \
      org.opencontainers.image.description="KServe predictor for housing-price models"
COPY --from=serving-build /opt/venv /opt/venv
COPY --from=serving-build /opt/app /opt/app
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "predictor"]
CMD []
