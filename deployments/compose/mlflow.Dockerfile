# MLflow tracking server and model registry for the compose stack (../compose.yaml):
# PostgreSQL backend store (psycopg 3), artifacts served by the server itself from /mlartifacts
# (--serve-artifacts), so clients need only http://mlflow:5000. The command, with the database
# URL, is set in compose.yaml; the CMD below only documents the defaults.
#
#   docker build -f deployments/compose/mlflow.Dockerfile -t galaxy-mlflow deployments/compose

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# mlflow, SQLAlchemy and psycopg pinned to the project's versions (requirements.lock), the set
# tests/deployments/test_shared_servers.py runs against PostgreSQL: SQLAlchemy 2.1 maps
# postgresql:// to psycopg 3. A named volume mounted on /mlartifacts starts with this folder's
# owner, so the server can write. Flask-WTF (with WTForms) is what `--app-name basic-auth` needs
# (mlflow's "auth" extra; ../compose.auth.yaml turns it on); its users live on /mlflow-auth.
RUN pip install mlflow==3.17.2 SQLAlchemy==2.1.9 "psycopg[binary]==3.3.9" Flask-WTF==1.3.0 WTForms==3.3.2 \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin mlflow \
    && mkdir /mlartifacts /mlflow-auth \
    && chown mlflow:mlflow /mlartifacts /mlflow-auth

USER 10001
WORKDIR /home/mlflow
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4).status != 200)"]

CMD ["mlflow", "server", "--serve-artifacts", "--artifacts-destination", "/mlartifacts", "--host", "0.0.0.0", "--port", "5000"]
