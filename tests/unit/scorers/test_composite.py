import json
from pathlib import Path

import numpy as np
import pytest

from trimroute.config import ScorerConfig
from trimroute.errors import ArtifactError, ConfigError
from trimroute.scorers import SCORERS
from trimroute.scorers.arithmetic import ArithmeticScorer
from trimroute.scorers.composite import CompositeScorer, LogisticModel, fit_logistic
from trimroute.scorers.confidence import ConfidenceScorer
from trimroute.types import Problem, Step

PROBLEM = Problem("p", "Half of 48?")
NAMES = ("arith_checked", "arith_wrong", "conf_mean", "conf_min")


def weak(text: str, logprobs: tuple[float, ...]) -> Step:
    return Step(text=text, role="weak", generated_tokens=len(logprobs), token_logprobs=logprobs)


def fitted() -> LogisticModel:
    """Wrong steps have an arithmetic error or a low-confidence token, on synthetic labelled steps."""
    rng = np.random.default_rng(0)
    rows, correct = [], []
    for _ in range(400):
        ok = bool(rng.random() < 0.7)
        checked = float(rng.integers(0, 3))
        wrong = float(checked > 0 and not ok)
        conf_mean = float(rng.normal(-0.2 if ok else -0.6, 0.3))
        rows.append((checked, wrong, conf_mean, conf_mean * 3))
        correct.append(ok)
    return fit_logistic(("arithmetic", "confidence"), NAMES, rows, correct, meta={"data": "synthetic"})


async def test_composite_ranks_wrong_steps_low() -> None:
    scorer = CompositeScorer((ArithmeticScorer(), ConfidenceScorer()), fitted())
    steps = [
        weak("48/2 = 24", (-0.05, -0.1)),
        weak("48/2 = 25", (-0.05, -0.1)),  # sure of itself, but the division is wrong
        weak("So half of them are left.", (-0.9, -1.5)),  # nothing to check, but hesitant
    ]
    right, bad_arith, unsure = (await scorer.score(PROBLEM, steps)).values
    assert right > 0.5 > max(bad_arith, unsure)


def test_artifact_round_trip(tmp_path: Path) -> None:
    model = fitted()
    path = model.save(tmp_path / "composite.json")
    data = json.loads(path.read_text())
    assert data["format"] == "trimroute.composite/1" and data["trimroute_version"]
    loaded = LogisticModel.load(path)
    assert loaded == model
    rows = [(1.0, 0.0, -0.1, -0.3), (1.0, 1.0, -0.5, -1.5)]
    assert loaded.predict(rows) == pytest.approx(model.predict(rows))


def test_registry_builds_components_from_the_artifact(tmp_path: Path) -> None:
    path = fitted().save(tmp_path / "c.json")
    scorer = SCORERS.create("composite", ScorerConfig(kind="composite", options={"artifact": str(path)}))
    assert isinstance(scorer, CompositeScorer)
    assert [c.name for c in scorer.components] == ["arithmetic", "confidence"]


def test_bad_artifacts_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="cannot read"):
        LogisticModel.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(ArtifactError, match="not a composite scorer artifact"):
        LogisticModel.load(tmp_path / "other.json")
    with pytest.raises(ArtifactError, match="fitted on features"):
        CompositeScorer((ArithmeticScorer(),), fitted())
    with pytest.raises(ConfigError, match="artifact"):
        SCORERS.create("composite", ScorerConfig(kind="composite"))
    (tmp_path / "bad.json").write_text(json.dumps({**json.loads(fitted().save(tmp_path / "ok.json").read_text()),
                                                   "components": ["arithmetic", "confidence:mean"]}))  # fmt: skip
    with pytest.raises(ConfigError, match="key=value"):
        SCORERS.create("composite", ScorerConfig(kind="composite", options={"artifact": str(tmp_path / "bad.json")}))


def test_fit_needs_both_labels() -> None:
    with pytest.raises(ConfigError, match="both correct and wrong"):
        fit_logistic(("arithmetic",), NAMES[:2], [(1.0, 0.0), (2.0, 0.0)], [True, True])
