# syntax=docker/dockerfile:1.7
# One image for the housing predictor (default), training and rollouts.
#   predictor (KServe custom container): the ENTRYPOINT; KServe appends --model_name/--model_dir/… as args
#   training Job:   command: ["python", "-m", "training"]
#   rollouts:       command: ["housing", "rollout", …]

ARG PYTHON_VERSION=3.11
# The base of both stages: the official image by default; the local test cluster passes its own
# (scripts/images/build.sh: --build-arg BASE_IMAGE=localhost/housing-base:bookworm-py311).
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim

# -- build: compile the predictor's C fast path and install everything into a venv ------------
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# dependencies first (cached while only the code changes)
COPY pyproject.toml setup.py README.md* ./
RUN mkdir -p housing bundle predictor training rollout \
 && touch housing/__init__.py bundle/__init__.py predictor/__init__.py training/__init__.py rollout/__init__.py \
 && pip install . && pip uninstall -y housing
COPY housing ./housing
COPY bundle ./bundle
COPY predictor ./predictor
COPY training ./training
COPY rollout ./rollout
RUN pip install --no-deps . \
 && cd / && python -c "import predictor._fastpath, predictor._treeshap"  # the compiled evaluator and explainer

# -- runtime: no compiler, non-root, read-only root filesystem friendly --------------------------
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="housing" \
      org.opencontainers.image.description="KServe predictor, training and rollouts for housing-price models"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    HOUSING_HOME=/tmp/housing \
    MPLCONFIGDIR=/tmp/matplotlib
RUN groupadd --system --gid 10001 housing \
 && useradd --system --uid 10001 --gid housing --home-dir /tmp --shell /usr/sbin/nologin housing
COPY --from=build /opt/venv /opt/venv
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "predictor"]
CMD []
