"""Links from Prefect artifacts to the MLflow UI."""

from __future__ import annotations

from galaxy_morphology.core.links import MlflowLinks, ui_base


def test_the_ui_is_the_setting_else_an_http_tracking_server_else_none() -> None:
    assert ui_base("sqlite:///mlflow.db", None) is None
    assert ui_base("file:///srv/mlruns", None) is None
    assert ui_base("http://mlflow.example.org:5000/", None) == "http://mlflow.example.org:5000"
    assert ui_base("https://mlflow.example.org", None) == "https://mlflow.example.org"
    assert ui_base("sqlite:///mlflow.db", "http://127.0.0.1:5000/") == "http://127.0.0.1:5000"


def test_links_to_runs_artifacts_and_versions() -> None:
    links = MlflowLinks("http://127.0.0.1:5000")
    assert links.run("abc") == "[run abc](http://127.0.0.1:5000/#/runs/abc)"
    assert links.version("galaxy-morphology", "3") == (
        "[galaxy-morphology v3](http://127.0.0.1:5000/#/models/galaxy-morphology/versions/3)"
    )
    assert links.artifact("7", "abc", "report/evidently report.html", "Evidently") == (
        "[Evidently](http://127.0.0.1:5000/#/experiments/7/runs/abc/artifactPath/report/evidently%20report.html)"
    )


def test_without_a_ui_the_ids_are_named() -> None:
    links = MlflowLinks(None)
    assert links.run("abc") == "`run abc`"
    assert links.version("galaxy-morphology", "3", "v3") == "`v3`"
