"""Links from Prefect artifacts to the MLflow UI: runs, their artifacts, and model versions.

The MLflow UI's address is ``mlflow.ui_url`` when set, else the tracking URI when it is an
http(s) server. A local store (``sqlite:///mlflow.db``) has no UI of its own, so without
``mlflow.ui_url`` a link falls back to the id in code font.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from galaxy_morphology.core.settings import Settings


def links_for(settings: Settings) -> MlflowLinks:
    """Links to the UI of the settings' tracking store."""
    return MlflowLinks(ui_base(settings.tracking_uri(), settings.mlflow.ui_url))


def ui_base(tracking_uri: str, ui_url: str | None) -> str | None:
    """The MLflow UI's address, or None when there is none to link to."""
    if ui_url:
        return ui_url.rstrip("/")
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


@dataclass(frozen=True)
class MlflowLinks:
    base: str | None

    def _link(self, label: str, route: str) -> str:
        return f"`{label}`" if self.base is None else f"[{label}]({self.base}/#/{route})"

    def run(self, run_id: str, label: str | None = None) -> str:
        """The run's page (MLflow finds its experiment)."""
        return self._link(label or f"run {run_id}", f"runs/{run_id}")

    def artifact(self, experiment_id: str, run_id: str, path: str, label: str | None = None) -> str:
        """One artifact of a run, opened in the run's artifact viewer."""
        return self._link(
            label or path, f"experiments/{experiment_id}/runs/{run_id}/artifactPath/{quote(path)}"
        )

    def version(self, name: str, version: str, label: str | None = None) -> str:
        return self._link(label or f"{name} v{version}", f"models/{quote(name)}/versions/{version}")
