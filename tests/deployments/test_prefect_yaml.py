"""prefect.yaml: valid for `prefect deploy`, every entry point imports, parameters match the flows."""

from __future__ import annotations

import inspect
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cronsim import CronSim
from prefect.cli.deploy._models import PrefectYamlModel
from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
from prefect.client.schemas.schedules import CronSchedule
from prefect.flows import load_flow_from_entrypoint
from prefect.utilities.callables import parameter_schema
from prefect.utilities.templating import apply_values

REPO = Path(__file__).resolve().parents[2]
POOL = "galaxy-process"
EXPECTED = {
    "galaxy-data": "galaxy_morphology/flows/data.py:data_flow",
    "galaxy-training": "galaxy_morphology/flows/training.py:training_flow",
    "galaxy-monitoring": "galaxy_morphology/flows/monitoring.py:monitoring_flow",
    "galaxy-classify": "galaxy_morphology/flows/classify.py:classify_flow",
    "galaxy-review": "galaxy_morphology/flows/review.py:review_flow",
}


def raw() -> dict[str, Any]:
    return yaml.safe_load((REPO / "prefect.yaml").read_text())


def deployments() -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in raw()["deployments"]}


def test_prefect_yaml_is_valid_for_prefect_deploy() -> None:
    model = PrefectYamlModel.model_validate(raw())
    assert {d.name: d.entrypoint for d in model.deployments} == EXPECTED
    for deployment in model.deployments:
        assert deployment.work_pool is not None
        assert deployment.work_pool.name == POOL


def test_pull_step_runs_the_flows_from_the_repository_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = raw()["pull"]
    assert [next(iter(step)) for step in steps] == ["prefect.deployments.steps.set_working_directory"]
    monkeypatch.setenv("GALAXY_HOME", str(REPO))
    resolved = apply_values(steps, dict(os.environ), remove_notset=False)
    directory = Path(resolved[0]["prefect.deployments.steps.set_working_directory"]["directory"])
    assert (directory / "prefect.yaml").exists()
    assert (directory / "settings.yaml").exists()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_entrypoint_exists_imports_and_parameters_match_the_flow(name: str) -> None:
    deployment = deployments()[name]
    path, _, function = deployment["entrypoint"].partition(":")
    assert (REPO / path).is_file(), f"{path} is missing"
    flow = load_flow_from_entrypoint(str(REPO / path) + ":" + function)
    assert flow.name == name
    signature = inspect.signature(flow.fn)
    given = dict(deployment.get("parameters") or {})
    for schedule in deployment.get("schedules") or []:
        given.update(schedule.get("parameters") or {})
    unknown = set(given) - set(signature.parameters)
    assert not unknown, f"{name}: parameters {unknown} are not arguments of {function}"
    for parameter, value in given.items():
        default = signature.parameters[parameter].default
        if default is not inspect.Parameter.empty and default is not None:
            assert isinstance(value, type(default)), f"{name}.{parameter}: {value!r}"


def flow_schema(name: str) -> dict[str, Any]:
    """The parameter schema ``prefect deploy`` sends for a deployment (what the UI's form shows)."""
    flow = load_flow_from_entrypoint(str(REPO / deployments()[name]["entrypoint"]))
    return parameter_schema(flow).model_dump()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_parameter_has_a_description_and_a_type(name: str) -> None:
    schema = flow_schema(name)
    for parameter, spec in schema["properties"].items():
        assert len(spec.get("description", "")) > 20, f"{name}.{parameter}: no description"
        assert "anyOf" not in spec, f"{name}.{parameter}: a type or None shows as 'type None' in the UI"
        assert "type" in spec or "enum" in spec or "allOf" in spec or "$ref" in spec, f"{name}.{parameter}"


@pytest.mark.parametrize("name", ["galaxy-data", "galaxy-training", "galaxy-review"])
def test_source_is_a_dropdown_of_its_values(name: str) -> None:
    schema = flow_schema(name)
    source = schema["properties"]["source"]
    found = source.get("enum") or schema["definitions"][source["$ref"].rsplit("/", 1)[1]]["enum"]
    assert found == ["settings", "snapshot", "skyserver"]


def test_training_families_and_review_budget_are_choices() -> None:
    families = flow_schema("galaxy-training")["properties"]["families"]
    assert families["type"] == "array" and set(families["items"]["enum"]) >= {"knn", "logistic"}
    budget = flow_schema("galaxy-review")["properties"]["budget"]
    assert budget["enum"] == ["champion", "full", "quick"] and budget["default"] == "champion"


def test_quick_run_starts_without_a_form_except_where_a_file_is_needed() -> None:
    """The UI's Quick run opens the run form when a parameter is required, else runs the defaults."""
    required = {name: flow_schema(name).get("required", []) for name in EXPECTED}
    assert required["galaxy-classify"] == ["input_path", "output_path"]
    assert all(not required[name] for name in EXPECTED if name != "galaxy-classify")


def test_on_demand_deployments_and_the_monitoring_example_schedule_is_off() -> None:
    found = deployments()
    for name in ("galaxy-data", "galaxy-training", "galaxy-classify"):
        assert not found[name].get("schedules")
    monitoring = found["galaxy-monitoring"]["schedules"]
    assert monitoring and all(schedule["active"] is False for schedule in monitoring)
    for schedule in monitoring:
        assert _schedule_config_to_deployment_schedule(schedule)["active"] is False
        assert schedule["slug"].startswith("example")


def test_review_runs_once_a_year() -> None:
    (schedule,) = deployments()["galaxy-review"]["schedules"]
    assert schedule.get("active", True) is True
    built = _schedule_config_to_deployment_schedule(schedule)["schedule"]
    assert isinstance(built, CronSchedule)
    assert built.timezone in ("UTC", "Europe/London")
    minute, hour, day, month, weekday = schedule["cron"].split()
    assert all(field.isdigit() for field in (minute, hour, day, month)) and weekday == "*"
    runs = CronSim(schedule["cron"], datetime(2026, 3, 1))
    first, second, third = next(runs), next(runs), next(runs)
    assert (second.year - first.year, third.year - second.year) == (1, 1)
    assert (first.month, first.day) == (second.month, second.day)
