"""Composite step scorer: a logistic calibration of the PRM-free scorers' features.

The features of several feature scorers (arithmetic, confidence, likelihood) are standardised and
combined by a logistic regression fitted on labelled steps; its output is a calibrated probability that
the step is correct, which is what TRIM's threshold and POMDP policies expect of a score (TRIM §3).
The fit is saved as one small JSON artifact (no pickles) naming its components and features.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trimroute.errors import ArtifactError, ConfigError
from trimroute.scorers.features import Features, FeatureScorer
from trimroute.types import Problem, Scores, Step

if TYPE_CHECKING:
    from trimroute.config import ScorerConfig

__all__ = ["CompositeScorer", "LogisticModel", "composite_scorer", "fit_logistic"]

ARTIFACT_FORMAT = "trimroute.composite/1"


@dataclass(frozen=True)
class LogisticModel:
    """p(step correct) = sigmoid(intercept + coef · (x - mean) / scale) over named features."""

    components: tuple[str, ...]
    feature_names: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    meta: dict[str, Any]

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        x = (np.asarray(rows, dtype=float).reshape(len(rows), -1) - self.mean) / np.asarray(self.scale)
        z = x @ np.asarray(self.coef) + self.intercept
        return [1.0 / (1.0 + math.exp(-v)) for v in np.clip(z, -50.0, 50.0)]

    def save(self, path: str | Path) -> Path:
        from trimroute._version import __version__

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"format": ARTIFACT_FORMAT, "trimroute_version": __version__, **asdict(self)}
        path.write_text(json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> LogisticModel:
        try:
            data = json.loads(Path(path).read_text())
        except OSError as e:
            raise ArtifactError(f"cannot read composite scorer {str(path)!r}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise ArtifactError(f"composite scorer {str(path)!r} is not JSON: {e}") from None
        if not isinstance(data, dict) or data.get("format") != ARTIFACT_FORMAT:
            raise ArtifactError(f"{str(path)!r} is not a composite scorer artifact ({ARTIFACT_FORMAT})")
        try:
            model = cls(
                components=tuple(data["components"]),
                feature_names=tuple(data["feature_names"]),
                coef=tuple(float(v) for v in data["coef"]),
                intercept=float(data["intercept"]),
                mean=tuple(float(v) for v in data["mean"]),
                scale=tuple(float(v) for v in data["scale"]),
                meta=dict(data.get("meta") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ArtifactError(f"composite scorer {str(path)!r} is incomplete ({e!r}); refit it") from None
        if not len(model.feature_names) == len(model.coef) == len(model.mean) == len(model.scale):
            raise ArtifactError(f"composite scorer {str(path)!r}: feature, coef, mean and scale lengths differ")
        return model


def fit_logistic(
    components: Sequence[str],
    feature_names: Sequence[str],
    rows: Sequence[Sequence[float]],
    correct: Sequence[bool],
    *,
    c: float = 1.0,
    meta: dict[str, Any] | None = None,
) -> LogisticModel:
    """Fit p(correct | features) with L2-regularised logistic regression (scikit-learn) on standardised features."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise ConfigError("fitting a composite scorer needs scikit-learn: pip install 'trimroute[router]'") from None
    x = np.asarray(rows, dtype=float)
    y = np.asarray(correct, dtype=int)
    if x.ndim != 2 or x.shape != (len(y), len(feature_names)):
        raise ConfigError(f"expected {len(y)} rows of {len(feature_names)} features, got shape {x.shape}")
    if len(set(y.tolist())) < 2:
        raise ConfigError("fitting a composite scorer needs both correct and wrong labelled steps")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    clf = LogisticRegression(C=c, class_weight="balanced").fit((x - mean) / scale, y)
    return LogisticModel(
        components=tuple(components),
        feature_names=tuple(feature_names),
        coef=tuple(float(v) for v in clf.coef_[0]),
        intercept=float(clf.intercept_[0]),
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        meta=dict(meta or {}),
    )


@dataclass
class CompositeScorer:
    """Runs its component feature scorers and maps their features through a fitted ``LogisticModel``."""

    components: tuple[FeatureScorer, ...]
    model: LogisticModel
    name: str = "composite"

    def __post_init__(self) -> None:
        names = [n for c in self.components for n in c.feature_names]
        missing = [n for n in self.model.feature_names if n not in names]
        if missing:
            raise ArtifactError(
                f"composite scorer was fitted on features {missing[:4]} that its components do not give "
                f"({names[:6]}{'…' if len(names) > 6 else ''})"
            )
        self._columns = [names.index(n) for n in self.model.feature_names]  # the fit may use a subset

    async def features(self, problem: Problem, steps: Sequence[Step]) -> Features:
        parts = await asyncio.gather(*(c.features(problem, steps) for c in self.components))
        every = [[v for part in parts for v in part.rows[i]] for i in range(len(steps))]
        rows = tuple(tuple(row[j] for j in self._columns) for row in every)
        return Features(
            self.model.feature_names,
            rows,
            prompt_tokens=sum(p.prompt_tokens for p in parts),
            calls=sum(p.calls for p in parts),
        )

    async def score(self, problem: Problem, steps: Sequence[Step]) -> Scores:
        feats = await self.features(problem, steps)
        return feats.to_scores(self.model.predict(feats.rows))

    async def aclose(self) -> None:
        for c in self.components:
            await c.aclose()


MODEL_OPTIONS = ("n_ctx", "n_threads")  # the composite's options that go to its model-loading component


def component_config(spec: str, model: str, model_options: dict[str, Any]) -> ScorerConfig:
    """A component as the artifact names it: ``kind`` or ``kind:key=value,...`` (``likelihood:hidden=mean``);
    ``model`` and ``model_options`` go to the likelihood scorer, the one component that loads a model."""
    from trimroute.config import ScorerConfig

    kind, _, rest = spec.partition(":")
    items = rest.split(",") if rest else []
    if not all("=" in item for item in items):
        raise ConfigError(f"component {spec!r}: options are key=value pairs, e.g. likelihood:hidden=mean")
    options: dict[str, Any] = dict(item.split("=", 1) for item in items)
    if kind != "likelihood":
        return ScorerConfig(kind=kind, options=options)
    return ScorerConfig(kind=kind, model=model, options={**model_options, **options})


def composite_scorer(config: ScorerConfig) -> CompositeScorer:
    """Registry factory (``kind: composite``, ``options: {artifact: PATH, n_ctx, n_threads}``); ``model``
    and the last two go to the components that load one (the likelihood scorer)."""
    from trimroute.scorers import SCORERS

    options = dict(config.options)
    artifact = options.pop("artifact", None)
    model_options = {k: options.pop(k) for k in MODEL_OPTIONS if k in options}
    if artifact is None or options:
        raise ConfigError("scorer 'composite' options are artifact: PATH (a fitted JSON file), n_ctx, n_threads")
    model = LogisticModel.load(artifact)
    components = []
    for spec in model.components:
        part = component_config(spec, config.model, model_options)
        scorer = SCORERS.create(part.kind, part)
        if not isinstance(scorer, FeatureScorer):
            raise ArtifactError(f"composite component {spec!r} exposes no features; refit without it")
        components.append(scorer)
    return CompositeScorer(tuple(components), model)
