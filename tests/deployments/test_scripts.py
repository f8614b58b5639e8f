"""The idempotent setup scripts in deployments/, against the session's temporary Prefect server."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from prefect import get_client

REPO = Path(__file__).resolve().parents[2]


def script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"galaxy_setup_{name}", REPO / "deployments" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_work_pool_is_created_once(prefect_harness: None) -> None:
    pools = script("create_work_pool")
    assert pools.ensure_work_pool() is True
    assert pools.ensure_work_pool() is False
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool("galaxy-process")
    assert pool.type == "process"


def test_review_automation_runs_the_review_deployment_on_a_breach(prefect_harness: None) -> None:
    pools = script("create_work_pool")
    automations = script("create_review_automation")
    pools.ensure_work_pool()
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("galaxy-review")
        deployment_id = client.create_deployment(
            flow_id=flow_id,
            name="galaxy-review",
            entrypoint="galaxy_morphology/flows/review.py:review_flow",
            work_pool_name="galaxy-process",
        )

    first, created = automations.ensure_review_automation()
    second, created_again = automations.ensure_review_automation()
    assert (created, created_again) == (True, False)
    assert first.id == second.id

    with get_client(sync_client=True) as client:
        found = client.read_automations_by_name("galaxy-review-on-breach")
    assert len(found) == 1
    automation = found[0]
    assert automation.enabled
    assert automation.trigger.expect == {"galaxy.monitoring.breach"}
    (action,) = automation.actions
    assert action.type == "run-deployment"
    assert action.deployment_id == deployment_id
