"""Trajectory files: JSONL, one trajectory per line, appended as each problem finishes.

Writes are flushed and fsynced line by line, so a killed run loses at most the line being written;
readers drop a torn last line, and ``TrajectoryWriter`` truncates it before appending, which makes
rerunning the same command resume where it stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from trimroute.errors import DataError
from trimroute.types import Trajectory


def read_trajectories(path: str | Path) -> Iterator[Trajectory]:
    """Trajectories in ``path``; a torn (unterminated) last line is skipped, any other bad line raises."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no trajectory file at {str(path)!r}")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.endswith("\n"):
                return  # torn by a kill mid-write; the writer truncates it on resume
            if line.strip():
                try:
                    yield Trajectory.from_json(line)
                except DataError as e:
                    raise DataError(f"{path}:{n}: {e}") from None


class TrajectoryWriter:
    """Appends trajectories to a JSONL file, durably; ``done`` holds the problem ids already there."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: set[str] = set()
        if self.path.exists():
            good = 0
            with self.path.open("rb") as f:
                for raw in f:
                    if not raw.endswith(b"\n"):
                        break
                    good += len(raw)
            with self.path.open("r+b") as f:
                f.truncate(good)
            self.done = {t.problem.id for t in read_trajectories(self.path)}
        self._file = self.path.open("a", encoding="utf-8")

    def write(self, trajectory: Trajectory) -> None:
        self._file.write(trajectory.to_json() + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self.done.add(trajectory.problem.id)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TrajectoryWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
