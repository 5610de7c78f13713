"""Grading answers with math-verify, safe to call from any thread.

math-verify's own timeout uses ``signal.alarm``, which only works on the main thread and cannot stop
sympy inside a worker. So its timeouts are disabled and parsing + verification run in one child
process per grader; when a grade takes longer than ``timeout_s`` the child is killed and replaced, and
the answer counts as wrong (unverifiable within the time limit, as math-verify itself decides).
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from trimroute.errors import ConfigError
from trimroute.prompts import extract_answer, extract_boxed
from trimroute.trajectories import read_trajectories
from trimroute.types import Trajectory

__all__ = ["AnswerGrader", "GradeCount", "grade_answer", "grade_trajectory", "regrade_file"]


def _verify(predicted: str, gold: str) -> bool:
    """math-verify on one pair, timeouts off (the caller enforces its own)."""
    from math_verify import parse, verify

    def parsed(answer: str) -> list[object]:
        # The boxed form makes the LaTeX extractor take the whole answer (e.g. "1/2", "\frac{1}{2}", "(3, \pi)").
        return parse(f"\\boxed{{{answer}}}", parsing_timeout=None) or parse(answer, parsing_timeout=None)

    gold_parsed, predicted_parsed = parsed(gold), parsed(predicted)
    if not gold_parsed or not predicted_parsed:
        return False
    return bool(verify(gold_parsed, predicted_parsed, timeout_seconds=None))


class AnswerGrader:
    """One grading child process (``python -m trimroute.data.grading``), shared by threads.

    A plain subprocess rather than ``multiprocessing``: no fork of a threaded parent, no re-import of the
    caller's ``__main__``. Calls are serialised by a lock; each is one JSON line in, one line out.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[str] | None = None
        self._replies: queue.Queue[str] = queue.Queue()
        self._warm = False

    def _start(self) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "trimroute.data.grading"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # math-verify logs warnings there
            text=True,
            bufsize=1,
        )
        replies: queue.Queue[str] = queue.Queue()
        # A reader thread turns the blocking pipe into a queue, which is what gives ``get`` its timeout.
        threading.Thread(target=_pump, args=(process.stdout, replies), daemon=True).start()
        self._process, self._replies, self._warm = process, replies, False
        return process

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            if self._process.stdin is not None:
                self._process.stdin.close()  # stdout belongs to the reader thread, which closes it at EOF
        self._process = None

    def verify(self, predicted: str, gold: str, timeout_s: float) -> bool:
        """True iff math-verify finds ``predicted`` equivalent to ``gold`` within ``timeout_s`` seconds."""
        with self._lock:
            process = self._process or self._start()
            assert process.stdin is not None  # set by Popen(stdin=PIPE)
            process.stdin.write(json.dumps([predicted, gold]) + "\n")
            process.stdin.flush()
            # A fresh child first pays for its start-up and imports: never count that as the grade's time.
            try:
                reply = self._replies.get(timeout=timeout_s + (0.0 if self._warm else _STARTUP_ALLOWANCE_S))
            except queue.Empty:
                self._stop()  # stuck in sympy: the only way to stop it is to end the process
                return False
            if reply == "":
                self._stop()
                raise RuntimeError("the math-verify grading process died; see `python -m trimroute.data.grading`")
            self._warm = True
            return reply == "1"

    def close(self) -> None:
        with self._lock:
            self._stop()


def _pump(stdout: IO[str], replies: queue.Queue[str]) -> None:
    with stdout:
        for line in stdout:
            replies.put(line.strip())
    replies.put("")  # EOF: the child ended


_STARTUP_ALLOWANCE_S = 60.0
_GRADER = AnswerGrader()
atexit.register(_GRADER.close)


def _normalise(answer: str) -> str:
    return "".join(answer.split()).rstrip(".").strip("$")


def grade_answer(predicted: str | None, gold: str | None, *, timeout_s: float = 5.0) -> bool | None:
    """Whether ``predicted`` matches ``gold`` (None when there is no gold answer).

    ``predicted`` may be a bare answer or a whole solution (its last ``\\boxed{}`` is used).
    """
    if timeout_s <= 0:
        raise ConfigError(f"timeout_s must be positive, got {timeout_s}")
    if gold is None:
        return None
    if predicted is None:
        return False
    answer = extract_boxed(predicted)
    if answer is None:
        answer = predicted if "\n" not in predicted.strip() else extract_answer(predicted)
    if not answer or not answer.strip():
        return False
    if _normalise(answer) == _normalise(gold):
        return True  # the common case needs no sympy at all
    return _GRADER.verify(answer, gold, timeout_s)


def grade_trajectory(trajectory: Trajectory, *, timeout_s: float = 5.0) -> Trajectory:
    """A copy of ``trajectory`` with ``correct`` set from its final answer (or its solution text)."""
    predicted = trajectory.final_answer if trajectory.final_answer is not None else trajectory.solution
    return replace(trajectory, correct=grade_answer(predicted, trajectory.problem.answer, timeout_s=timeout_s))


@dataclass(frozen=True)
class GradeCount:
    """What re-grading one trajectory file found."""

    n: int
    graded: int
    correct: int
    changed: int  # grades that differ from the ones stored before


def regrade_file(
    path: str | Path, *, timeout_s: float = 5.0, on_trajectory: Callable[[], None] | None = None
) -> GradeCount:
    """Grade every trajectory of a JSONL file again and rewrite the file atomically (no model is called).

    ``on_trajectory`` is called after each one (progress). Do not run it on a file a run is still writing.
    """
    path = Path(path)
    old = list(read_trajectories(path))
    new = []
    for t in old:
        new.append(grade_trajectory(t, timeout_s=timeout_s))
        if on_trajectory is not None:
            on_trajectory()
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(t.to_json() + "\n" for t in new)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return GradeCount(
        n=len(new),
        graded=sum(t.correct is not None for t in new),
        correct=sum(t.correct is True for t in new),
        changed=sum(a.correct != b.correct for a, b in zip(old, new, strict=True)),
    )


def _serve() -> None:
    """The child's loop: one ``[predicted, gold]`` JSON line in, ``1`` or ``0`` out, until stdin closes."""
    for line in sys.stdin:
        predicted, gold = json.loads(line)
        try:
            correct = _verify(predicted, gold)
        except Exception:  # e.g. RecursionError deep in sympy: unverifiable, as math-verify treats its own errors
            correct = False
        print("1" if correct else "0", flush=True)


if __name__ == "__main__":
    _serve()
