from __future__ import annotations

from pathlib import Path

import pytest

from trimroute.errors import DataError
from trimroute.eval.plots import plot_curves

CURVES = {
    "TRIM-Thr": [(0.0, 0.4), (40.0, 0.55), (90.0, 0.7), (60.0, 0.5), (200.0, 0.78)],
    "AutoMix-PRM": [(120.0, 0.5), (300.0, 0.7)],
    "strong": [(400.0, 0.8)],
}


def test_plot_writes_png_and_svg(tmp_path: Path) -> None:
    paths = plot_curves(
        CURVES,
        tmp_path / "plots" / "accuracy_vs_cost",
        r_weak=0.4,
        r_strong=0.8,
        c_strong=400.0,
        oracle=[(0.0, 0.4), (150.0, 0.88)],
        title="GSM8K, 20 problems",
    )
    assert [p.name for p in paths] == ["accuracy_vs_cost.png", "accuracy_vs_cost.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and paths[0].stat().st_size > 10_000
    svg = paths[1].read_text(encoding="utf-8")
    for label in ("TRIM-Thr", "AutoMix-PRM", "oracle query router", "weak only (40.0%)", "strong only (80.0%)"):
        assert label in svg


def test_plot_from_points_alone(tmp_path: Path) -> None:
    paths = plot_curves({"weak": [(0.0, 0.3)]}, tmp_path / "p")
    assert all(p.stat().st_size > 0 for p in paths)


def test_plot_rejects_empty_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothing to plot"):
        plot_curves({}, tmp_path / "p")
    with pytest.raises(DataError, match="method 'x' has no points"):
        plot_curves({"x": []}, tmp_path / "p")
