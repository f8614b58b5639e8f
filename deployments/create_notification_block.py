"""Create or update the Prefect notification block used by the monitoring flow's alerts.

The webhook URL is read from the environment variable named by
``settings.monitoring.webhook_url_env`` (default ``GALAXY_ALERT_WEBHOOK_URL``), so no secret
lives in the repository. Running it again updates the block in place (idempotent).

    GALAXY_ALERT_WEBHOOK_URL=https://hooks.example/... python deployments/create_notification_block.py
"""

from __future__ import annotations

import os
import sys

from prefect.blocks.notifications import CustomWebhookNotificationBlock

from galaxy_morphology.core.settings import load_settings

# what the receiving end gets: one JSON object per breach notification
JSON_TEMPLATE = {"subject": "{{subject}}", "body": "{{body}}", "source": "{{name}}"}


def create_block(url: str, name: str) -> CustomWebhookNotificationBlock:
    """Save (overwrite) a CustomWebhookNotificationBlock posting JSON to ``url`` under ``name``."""
    block = CustomWebhookNotificationBlock(name=name, url=url, method="POST", json_data=JSON_TEMPLATE)
    block.save(name, overwrite=True)
    return block


def main() -> int:
    settings = load_settings()
    name = settings.monitoring.notification_block
    env = settings.monitoring.webhook_url_env
    if not name:
        print("settings.monitoring.notification_block is empty: nothing to create", file=sys.stderr)
        return 2
    url = os.environ.get(env)
    if not url:
        print(f"set ${env} to the webhook URL first", file=sys.stderr)
        return 2
    create_block(url, name)
    print(f"notification block custom-webhook/{name} saved (URL from ${env})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
