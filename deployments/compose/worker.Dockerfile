# Prefect process worker for galaxy-morphology (pool galaxy-process), with this repository's
# code and the exact library versions of requirements.lock. Also the image of the Dask
# scheduler and workers in ../compose.yaml, so the cluster unpickles the flows' estimators
# with the same scikit-learn and the same galaxy_morphology package.
#
# Build context: the repository root (compose.yaml says `context: ..`):
#
#   docker build -f deployments/compose/worker.Dockerfile -t galaxy-morphology-worker .
#
# The COPY lines name every file the image needs, and the root .dockerignore admits exactly
# those (and the serving image's build/model/), so any builder gives the same image.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GALAXY_HOME=/app

WORKDIR /app

# dependencies first: this layer is rebuilt only when the lock file changes
COPY requirements.lock ./
RUN pip install -r requirements.lock

COPY pyproject.toml README.md settings.yaml prefect.yaml ./
COPY galaxy_morphology/ galaxy_morphology/
COPY deployments/ deployments/
# the project itself, editable as on a developer's machine: flows run from /app ($GALAXY_HOME,
# prefect.yaml's pull step) and import galaxy_morphology from the same files; data, outputs
# and reports are the run-time folders (named volumes in compose.yaml) the user must write to
RUN pip install --no-deps -e . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin galaxy \
    && mkdir -p data outputs reports \
    && chown galaxy:galaxy data outputs reports

USER 10001
# the worker's health endpoint (--with-healthcheck): http://127.0.0.1:8080/health
EXPOSE 8080
CMD ["prefect", "worker", "start", "--pool", "galaxy-process", "--with-healthcheck"]
