"""Create the ``galaxy-process`` work pool (type ``process``) unless it already exists.

    python deployments/create_work_pool.py          # against $PREFECT_API_URL

Same as ``prefect work-pool create galaxy-process --type process``, but safe to run again.
"""

from __future__ import annotations

import sys

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound

POOL = "galaxy-process"
POOL_TYPE = "process"


def ensure_work_pool(name: str = POOL, pool_type: str = POOL_TYPE) -> bool:
    """True when the pool was created, False when it was already there (with the same type)."""
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type=pool_type))
            return True
    if existing.type != pool_type:
        raise RuntimeError(f"work pool {name!r} exists with type {existing.type!r}, not {pool_type!r}")
    return False


def main() -> int:
    created = ensure_work_pool()
    print(f"work pool {POOL!r} ({POOL_TYPE}): {'created' if created else 'already present'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
