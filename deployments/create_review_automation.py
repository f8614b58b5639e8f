"""Create (or update) the automation that runs the retraining review on a monitoring breach.

    prefect deploy --all                             # the galaxy-review deployment must exist
    python deployments/create_review_automation.py   # against $PREFECT_API_URL

Trigger: any ``galaxy.monitoring.breach`` event (emitted by the monitoring flow, one per
breached metric). Action: run the ``galaxy-review/galaxy-review`` deployment with its
default parameters; the review reads the breaches itself, and the deployment's concurrency
limit of 1 plus the "breach since the last review" rule keep one breach from starting
several reviews. Running the script again updates the automation in place.
"""

from __future__ import annotations

import sys
from uuid import UUID

from prefect import get_client
from prefect.automations import Automation
from prefect.events.actions import RunDeployment
from prefect.events.schemas.automations import EventTrigger, Posture

AUTOMATION = "galaxy-review-on-breach"
BREACH_EVENT = "galaxy.monitoring.breach"
DEPLOYMENT = "galaxy-review/galaxy-review"


def build_automation(deployment_id: UUID) -> Automation:
    return Automation(
        name=AUTOMATION,
        description=f"Run {DEPLOYMENT} when monitoring reports a breach ({BREACH_EVENT}).",
        enabled=True,
        trigger=EventTrigger(
            expect={BREACH_EVENT},
            match={"prefect.resource.id": "*"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[RunDeployment(source="selected", deployment_id=deployment_id)],
    )


def ensure_review_automation() -> tuple[Automation, bool]:
    """The automation and whether it was created (False: an existing one was updated)."""
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    wanted = build_automation(deployment.id)
    try:
        existing = Automation.read(name=AUTOMATION)
    except ValueError:
        return wanted.create(), True
    wanted.id = existing.id
    wanted.update()
    return wanted, False


def main() -> int:
    automation, created = ensure_review_automation()
    print(f"automation {AUTOMATION!r} ({automation.id}): {'created' if created else 'updated'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
