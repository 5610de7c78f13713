"""The run directory of ``trim eval``: what is where, and the checks that make resuming safe.

::

    RUN/
      config.json            dataset, problem ids, model/scorer/engine config, prices, package version, notes
      points.json            every point of every method: name, method (curve), trajectory file
      calls.json             cache hits and misses per method, summed over every invocation
      trajectories/*.jsonl   one file per point (TrajectoryWriter: resumable)
      metrics.json           DESIGN.md §6 metrics per point and per curve
      report.md              the same as Markdown tables
      accuracy_cost.png/svg  the accuracy–cost plot

Rerunning ``trim eval`` with the same ``--out`` resumes: finished problems are kept, and methods
missing from the directory are added. The dataset and model setup must match what the run started with.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trimroute.errors import ConfigError, DataError
from trimroute.trajectories import read_trajectories
from trimroute.types import Trajectory

__all__ = ["PointEntry", "RunDir", "write_json"]

# Keys of config.json that must not change when a run resumes.
FIXED_KEYS = ("dataset", "problem_ids", "setup")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a killed run never leaves half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{str(path)!r} is missing; is {str(path.parent)!r} a trim eval run directory?") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{str(path)!r} is not valid JSON: {e}") from None


@dataclass(frozen=True)
class PointEntry:
    """One point of a method's curve and the file holding its trajectories."""

    name: str
    method: str
    file: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "method": self.method, "file": self.file}


def _file_name(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("_")
    if safe != name.replace(":", "_"):
        # paths and odd characters (pomdp:/a/b) could collide once flattened: keep them apart
        safe = f"{safe[-60:]}-{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"
    return f"trajectories/{safe}.jsonl"


class RunDir:
    """A run directory; ``points`` is read from and saved to ``points.json``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.points: list[PointEntry] = []
        if (self.path / "points.json").exists():
            self.points = [PointEntry(**p) for p in read_json(self.path / "points.json")]

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    def exists(self) -> bool:
        return self.config_path.exists()

    def config(self) -> dict[str, Any]:
        return read_json(self.config_path)

    def start(self, config: Mapping[str, Any]) -> None:
        """Create the directory, or check that ``config`` matches the run being resumed."""
        if self.exists():
            old = self.config()
            for key in FIXED_KEYS:
                if old.get(key) != config.get(key):
                    raise ConfigError(
                        f"{str(self.path)!r} holds a run with another {key}; resume it with the same "
                        "dataset and models, or pass a new --out"
                    )
            config = {**old, **config, "methods": _union(old.get("methods", []), config.get("methods", []))}
        else:
            self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config_path, dict(config))

    def note(self, key: str, value: Any) -> None:
        """Record something a method derived while running (e.g. quantile thresholds) under ``notes``."""
        config = self.config()
        config.setdefault("notes", {})[key] = value
        write_json(self.config_path, config)

    def entry(self, name: str, method: str) -> PointEntry:
        """The point's entry, registered or not (a pilot run keeps its file without joining a curve)."""
        for p in self.points:
            if p.name == name and p.method == method:
                return p
        entry = PointEntry(name, method, _file_name(name))
        if entry.file in {p.file for p in self.points if p.name != name}:
            raise ConfigError(f"point {name!r} would share a trajectory file with another point; rename it")
        return entry

    def add_point(self, name: str, method: str) -> PointEntry:
        entry = self.entry(name, method)
        if entry not in self.points:
            self.points.append(entry)
            self._save_points()
        return entry

    def drop_points(self, method: str, keep: Sequence[str]) -> None:
        """Unregister the points of ``method`` not named in ``keep`` (a derived curve whose thresholds moved)."""
        kept = [p for p in self.points if p.method != method or p.name in keep]
        if kept != self.points:
            self.points = kept
            self._save_points()

    def _save_points(self) -> None:
        write_json(self.path / "points.json", [p.to_dict() for p in self.points])

    def file(self, entry: PointEntry) -> Path:
        return self.path / entry.file

    def trajectories(self, entry: PointEntry) -> list[Trajectory]:
        path = self.file(entry)
        return list(read_trajectories(path)) if path.exists() else []

    def calls(self) -> dict[str, dict[str, dict[str, int]]]:
        path = self.path / "calls.json"
        return read_json(path) if path.exists() else {}

    def add_calls(self, method: str, stats: Mapping[str, Mapping[str, int]]) -> None:
        """Add one invocation's cache counters of ``method`` to ``calls.json``."""
        calls = self.calls()
        mine = calls.setdefault(method, {})
        for role, counts in stats.items():
            total = mine.setdefault(role, {})
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
        write_json(self.path / "calls.json", calls)


def _union(a: Sequence[str], b: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*a, *b]))
