# The image of every Ray node in k8s/ (head, GPU workers, RayJob submitter): the official Ray
# image plus this project.
#   docker build -t REGISTRY/orchestrator:0.1.0 .
# Ray's version here, rayVersion in k8s/, and the `ray[tune]>=` bound in pyproject.toml must
# agree; tests/k8s/test_manifests.py checks it. Never use a floating tag such as `latest`.
FROM rayproject/ray:2.60.0-py311-gpu

# The base image runs as its non-root `ray` user (uid 1000, gid 100), which owns the Python
# environment; created by that user, the app directory is writable by the build.
USER 1000:100
RUN mkdir -p /home/ray/app
WORKDIR /home/ray/app

# Dependencies come from the lock file only: every package at one version, checked against its
# sha256 (--require-hashes), Ray at the base image's version, no dev extras. After changing
# pyproject.toml's dependencies or requirements/image.in, regenerate it from the repository root:
#   uv pip compile pyproject.toml requirements/image.in --generate-hashes --python-version 3.11 \
#     --python-platform x86_64-manylinux_2_28 -o requirements/image.lock
COPY --chown=1000:100 requirements/image.lock ./requirements/
RUN pip install --no-cache-dir --require-hashes -r requirements/image.lock

COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 orchestrator ./orchestrator
COPY --chown=1000:100 trainables ./trainables
COPY --chown=1000:100 search_spaces ./search_spaces

# The project itself, installing nothing else: no dependency resolution (--no-deps), no download
# (--no-index), and the build backend from the lock rather than a fresh, unpinned one
# (--no-build-isolation).
RUN pip install --no-cache-dir --no-deps --no-build-isolation --no-index . \
    && python -c "import orchestrator, trainables, ray; assert ray.__version__ == '2.60.0', ray.__version__"

ENV PYTHONUNBUFFERED=1

# Liveness is Kubernetes' business: KubeRay gives every Ray container its own probes.
HEALTHCHECK NONE
