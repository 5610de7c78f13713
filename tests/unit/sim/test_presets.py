from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from trimroute.errors import ArtifactError, ConfigError
from trimroute.learn.fit import calibration_components
from trimroute.sim.presets import load_params, preset_names

CALIBRATION = Path(__file__).parents[3] / ".." / "shared" / "calibration"
PRESETS = Path(__file__).parents[3] / "src" / "trimroute" / "presets"


@pytest.mark.skipif(not CALIBRATION.exists(), reason="needs ../shared/calibration")
def test_shipped_presets_are_the_fit_of_the_calibration_files() -> None:
    for name, doc in calibration_components(CALIBRATION).items():
        assert json.loads((PRESETS / name).read_text()) == json.loads(json.dumps(doc)), name


def test_presets_load_with_cited_sources_and_calibrated_numbers() -> None:
    assert {"qwen1.5b-7b", "qwen1.5b-7b-processbench", "qwen1.5b-7b-omni"} == set(preset_names())
    p = load_params("qwen1.5b-7b-processbench")
    assert p.weak.next_step_accuracy == pytest.approx(0.8660, abs=1e-4)
    assert p.strong.next_step_accuracy == pytest.approx(0.9704, abs=1e-4)
    assert p.strong.mean_tokens == pytest.approx(494.84 / 8.018, rel=1e-6)
    assert p.hazard[-1] == 1.0 and np.all((p.hazard >= 0) & (p.hazard <= 1))
    assert all(p.sources[k] for k in ("weak", "strong", "observation", "token_corr"))


def test_params_round_trip_through_a_json_file(tmp_path: Path) -> None:
    p = load_params("qwen1.5b-7b")
    p.save(tmp_path / "mine.json")
    q = load_params(tmp_path / "mine.json")
    assert q.weak == p.weak and q.length_pmf == pytest.approx(p.length_pmf)
    assert q.strong_length_pmf == pytest.approx(p.strong_length_pmf)
    assert (q.difficulty_sd, q.wrong_token_factor, q.recovery) == (p.difficulty_sd, p.wrong_token_factor, p.recovery)
    assert np.allclose(q.observation.probs, p.observation.probs)


def test_unknown_preset_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="qwen1.5b-7b"):
        load_params("qwen-nope")
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    with pytest.raises(ArtifactError, match="missing or bad field"):
        load_params(tmp_path / "bad.json")
