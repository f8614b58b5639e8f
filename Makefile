# galaxy-morphology: `make run` trains end to end, `make test` runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SNAPSHOT ?= ../shared/data/gz1_sdss_dr9_curtin_3976.csv.gz
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: install run ingest train classify monitor review serve test lint format bench clean

$(BIN)/galaxy: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

install: $(BIN)/galaxy

# The main job: the training pipeline end to end (data -> tuning -> MLflow -> registry gate).
run: install
	@if [ -f "$(SNAPSHOT)" ]; then \
		echo "data source: snapshot $(SNAPSHOT)"; \
		PATH="$(abspath $(BIN)):$$PATH" $(BIN)/galaxy train --source snapshot --snapshot "$(SNAPSHOT)" $(ARGS); \
	else \
		echo "data source: SkyServer (no snapshot at $(SNAPSHOT))"; \
		PATH="$(abspath $(BIN)):$$PATH" $(BIN)/galaxy train --source skyserver $(ARGS); \
	fi
	@echo ""
	@echo "Next:"
	@echo "  Prefect UI:  $(BIN)/prefect server start        (then open http://127.0.0.1:4200)"
	@echo "  MLflow UI:   $(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000"
	@echo "               (then open http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning: the runs, not the GenAI view)"
	@echo "  Serve:       make serve                         (champion on http://127.0.0.1:5001/invocations)"

# every `galaxy` command without activating the virtualenv: make monitor ARGS="--batch data/export/test.csv"
ingest train classify monitor review serve: install
	@PATH="$(abspath $(BIN)):$$PATH" $(BIN)/galaxy $@ $(ARGS)

# provision: the Debian packages and the Docker daemon the tests use (apt as root; otherwise it
# says what to install)
test: install
	scripts/provision.sh
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/bench_training.py
	$(BIN)/python bench/bench_serving.py
	$(BIN)/python bench/bench_guard.py
	$(BIN)/python bench/adversarial_serving.py
	$(BIN)/python bench/bench_classify.py
	$(BIN)/python bench/bench_monitoring.py
	$(BIN)/python bench/bench_dask.py
	$(BIN)/python bench/bench_quality.py
	$(BIN)/python bench/bench_skyserver_ingest.py

clean:
	rm -rf mlflow.db mlartifacts data outputs reports
