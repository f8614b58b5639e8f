from __future__ import annotations

import pytest

from galaxy_morphology.core.gate import CHALLENGER, decide

IN_SERVICE = "champion"


def test_first_model_takes_the_in_service_alias() -> None:
    decision = decide(0.80, None, None, margin=0.0, alias=IN_SERVICE)
    assert decision.alias == IN_SERVICE
    assert decision.reason == "no model holds 'champion' yet"
    assert decision.tags()["gate.champion_f1_macro"] == ""


def test_worse_model_is_challenger_and_champion_kept() -> None:
    decision = decide(0.90, 0.93, "3", margin=0.0, alias=IN_SERVICE)
    assert decision.alias == CHALLENGER
    assert "champion kept" in decision.reason
    assert decision.tags()["gate.champion_version"] == "3"


def test_equal_model_does_not_take_over() -> None:
    assert decide(0.93, 0.93, "3", margin=0.0, alias=IN_SERVICE).alias == CHALLENGER


@pytest.mark.parametrize("alias", ["champion", "staging"])
def test_better_model_takes_the_configured_alias(alias: str) -> None:
    decision = decide(0.95, 0.93, "3", margin=0.0, alias=alias)
    assert decision.alias == alias
    assert decision.tags()["gate.decision"] == alias
    assert decision.tags()["gate.new_f1_macro"] == "0.950000"
    assert decision.tags()["gate.champion_f1_macro"] == "0.930000"


def test_margin_must_be_reached() -> None:
    assert decide(0.935, 0.93, "3", margin=0.01, alias=IN_SERVICE).alias == CHALLENGER
    assert decide(0.945, 0.93, "3", margin=0.01, alias=IN_SERVICE).alias == IN_SERVICE
