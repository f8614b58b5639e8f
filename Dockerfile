# Serving image for one registered version of galaxy-morphology: the same app as `galaxy serve`
# (MLflow's scoring app behind the project's request guard and fast path, on uvicorn), with
# only the model's runtime dependencies.
#
# The model is baked in, so the image needs no tracking server at run time and is
# immutable per model version. Build from the repository root:
#
#   MLFLOW_TRACKING_URI=sqlite:///mlflow.db \
#     mlflow artifacts download -u models:/galaxy-morphology@champion -d build/model
#   docker build -t galaxy-morphology-serving .
#   docker run --rm -p 8080:8080 galaxy-morphology-serving
#   (request limits: -e GALAXY_SCORING_APP_CONFIG='{"model_folder": "/model", "limits":
#    {"max_request_bytes": 8388608, "max_records": 10000, "body_timeout_seconds": 10}}')
#   curl -s localhost:8080/invocations -H 'Content-Type: application/json' \
#     -d @build/model/serving_input_example.json
#
# The model folder holds model_code.py, which names the installed project's pyfunc class,
# the skops pipeline and requirements.txt. So the image installs the model's requirements and
# then the project itself without its dependencies (the pyfunc needs nothing more): build it
# from the checkout that registered the model. At start-up each worker checks the folder
# against the installed project (io.model_files): the trusted types and the code file come
# from the project, never from the folder. mlflow-skinny replaces mlflow (no UI, SQL store
# or server extras) and matplotlib, used only for training plots, is left out.
# Alternative without this file: `mlflow models build-docker -m models:/galaxy-morphology@champion`
# (bigger image: full mlflow, Java-free but with the whole conda/virtualenv tooling).

FROM python:3.11-slim

ARG MODEL_DIR=build/model
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT=60 \
    GALAXY_SCORING_APP_CONFIG='{"model_folder": "/model"}' \
    WORKERS=2 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin serve

COPY --chown=serve:serve ${MODEL_DIR}/requirements.txt /tmp/requirements.txt
# the model's pinned requirements, with mlflow swapped for mlflow-skinny of the same version
RUN mlflow_version="$(sed -n 's/^mlflow==//p' /tmp/requirements.txt)" \
    && test -n "$mlflow_version" \
    && grep -vE '^(mlflow|matplotlib)([=<>!~ ]|$)' /tmp/requirements.txt > /tmp/runtime.txt \
    && pip install "mlflow-skinny==${mlflow_version}" -r /tmp/runtime.txt \
    && rm /tmp/requirements.txt /tmp/runtime.txt

# the project, whose pyfunc class the model's code file imports; its own dependencies are the
# training stack's, so none are installed
COPY pyproject.toml README.md /tmp/project/
COPY galaxy_morphology/ /tmp/project/galaxy_morphology/
RUN pip install --no-deps /tmp/project \
    && rm -rf /tmp/project

COPY --chown=serve:serve ${MODEL_DIR} /model

USER 10001
WORKDIR /home/serve
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/ping', timeout=4).status != 200)"]

# sh -c only to read $WORKERS; exec hands PID 1 to uvicorn
CMD ["sh", "-c", "exec uvicorn --factory galaxy_morphology.serving.app:create_app --host 0.0.0.0 --port 8080 --workers \"$WORKERS\""]
