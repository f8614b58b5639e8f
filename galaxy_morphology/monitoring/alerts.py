"""Breach events and the one notification per batch: a Prefect block, else a webhook URL."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from galaxy_morphology.monitoring.ranges import Check

BREACH_EVENT = "galaxy.monitoring.breach"


def resource_id(model_name: str) -> str:
    return f"galaxy.model.{model_name}"


def emit_breaches(
    breached: Sequence[Check], model_name: str, model_version: str, report_location: str
) -> int:
    """One ``galaxy.monitoring.breach`` event per breached metric; returns how many were emitted."""
    from prefect.events import emit_event

    emitted = 0
    for check in breached:
        event = emit_event(
            event=BREACH_EVENT,
            resource={
                "prefect.resource.id": resource_id(model_name),
                "prefect.resource.name": model_name,
                "galaxy.model.version": str(model_version),
            },
            payload={
                "metric": check.metric,
                "value": check.value,
                "range": check.range,
                "model_version": str(model_version),
                "report": report_location,
            },
        )
        emitted += event is not None
    return emitted


@dataclass(frozen=True)
class Delivery:
    channel: str  # "block:<name>" | "webhook:<ENV>" | "none"
    delivered: bool
    detail: str = ""


def load_notification_block(name: str) -> Any | None:
    """The saved notification block called ``name`` (``slug/name`` or a bare name), else None."""
    from prefect.blocks.core import Block
    from prefect.blocks.notifications import NotificationBlock

    if "/" in name:
        try:
            return Block.load(name)
        except ValueError:
            return None
    candidates: list[type] = []
    pending: list[type] = [NotificationBlock]
    while pending:
        cls = pending.pop(0)
        sub: type
        for sub in cls.__subclasses__():
            pending.append(sub)
            if not getattr(sub, "__abstractmethods__", None):
                candidates.append(sub)
    for cls in candidates:
        try:
            return cls.load(name)  # type: ignore[attr-defined]
        except (ValueError, KeyError):
            continue
    return None


def send_notification(
    subject: str,
    body: str,
    payload: dict[str, Any],
    block_name: str | None,
    webhook_env: str,
    logger: logging.Logger | logging.LoggerAdapter,
) -> Delivery:
    """Notify through the Prefect block, else POST JSON to the URL in ``$webhook_env``."""
    if block_name:
        block = load_notification_block(block_name)
        if block is not None:
            block.notify(body=body, subject=subject)
            logger.info("breach notification sent through Prefect block %r", block_name)
            return Delivery(f"block:{block_name}", True)
        logger.info("no Prefect notification block named %r; trying $%s", block_name, webhook_env)
    url = os.environ.get(webhook_env)
    if url:
        response = httpx.post(url, json={"subject": subject, "body": body, **payload}, timeout=10)
        response.raise_for_status()
        logger.info("breach notification posted to the webhook in $%s", webhook_env)
        return Delivery(f"webhook:{webhook_env}", True)
    logger.warning(
        "monitoring breach NOT notified: no Prefect block %r and $%s is unset. %s",
        block_name,
        webhook_env,
        subject,
    )
    return Delivery("none", False, "no notification channel configured")
