"""evaluate-model says when the C³ accuracy labels are nearly constant (issue 15 item 5: base
rates 0.96-0.998 on a static scene, where ECE 0.003 meant nothing at AUROC 0.54)."""

from __future__ import annotations

from world_monitor.training.evaluate import label_base_rates


def _report(rates: dict[str, float]) -> dict:
    per = {e: {"base_rate": r, "ece": 0.01} for e, r in rates.items()}
    return {"splits": {"in_distribution": {"per_eps": per}}}


def test_informative_labels_get_the_rates_and_no_warning() -> None:
    line, warnings = label_base_rates(_report({"0.1": 0.2, "0.5": 0.6, "1.0": 0.9}))
    assert line == "C3 label base rate per eps (in_distribution): 0.1: 0.200, 0.5: 0.600, 1: 0.900"
    assert warnings == []


def test_nearly_constant_labels_are_flagged() -> None:
    rates = {"0.1": 0.96, "0.2": 0.98, "0.5": 0.997, "1.0": 0.998, "0.05": 0.6}
    _, warnings = label_base_rates(_report(rates))
    assert len(warnings) == 1 and "nearly constant at 4 of 5 eps values" in warnings[0]


def test_a_split_without_windows_says_so() -> None:
    line, warnings = label_base_rates({"splits": {"in_distribution": {"n_windows": 0}}})
    assert "none (no windows)" in line and warnings == []
