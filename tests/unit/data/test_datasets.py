from __future__ import annotations

import json
from pathlib import Path

import pytest

from trimroute.data.datasets import DATASETS, load_dataset
from trimroute.errors import ConfigError, DataError

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.mark.parametrize(
    ("name", "count", "first_id", "first_answer"),
    [
        ("gsm8k_test.jsonl", 1319, "0", "18"),  # answer after ####
        ("math500.jsonl", 500, "test/precalculus/807.json", r"\left( 3, \frac{\pi}{2} \right)"),
        ("aime_test.jsonl", 482, "1983-1", "60"),  # the integer in "solution"
        ("aime_train.jsonl", 451, "1984-1", "93"),
        ("minerva_math.jsonl", 272, "0", "1.6"),  # the \boxed{} inside "solution"
        ("olympiadbench.jsonl", 675, "1606", "2"),  # final_answer is a list
    ],
)
def test_shared_benchmarks_load_with_answers(name: str, count: int, first_id: str, first_answer: str) -> None:
    problems = load_dataset(str(SHARED_DATA / name))
    assert len(problems) == count
    assert (problems[0].id, problems[0].answer) == (first_id, first_answer)
    assert all(p.text and p.answer for p in problems)
    assert len({p.id for p in problems}) == count


def test_math500_keeps_short_fields_as_meta() -> None:
    problem = load_dataset(str(SHARED_DATA / "math500.jsonl"), limit=1)[0]
    assert problem.meta == {"subject": "Precalculus", "level": 2, "dataset": "math500"}


def _write(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_user_jsonl_with_field_mapping(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mine.jsonl",
        json.dumps({"key": "a", "q": " What is 2+3? ", "gold": "5"}),
        "",
        json.dumps({"key": "b", "q": "What is 2*3?", "gold": "Thus \\boxed{6}."}),
    )
    problems = load_dataset(str(path), problem_field="q", answer_field="gold", id_field="key")
    assert [(p.id, p.text, p.answer) for p in problems] == [("a", "What is 2+3?", "5"), ("b", "What is 2*3?", "6")]


def test_ids_default_to_record_position_and_missing_answer_is_none(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.jsonl", json.dumps({"question": "Q1"}), json.dumps({"question": "Q2"}))
    problems = load_dataset(str(path))
    assert [(p.id, p.answer) for p in problems] == [("1", None), ("2", None)]


def test_worked_solution_without_final_answer_is_ungraded(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.jsonl", json.dumps({"problem": "P", "solution": "First...\nThen 4."}))
    assert load_dataset(str(path))[0].answer is None


def test_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.jsonl", json.dumps({"question": "ok"}), '{"question": "broken"')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not valid JSON .*fix or delete that line"):
        load_dataset(str(path))


def test_non_object_line_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "list.jsonl", "[1, 2]")
    with pytest.raises(DataError, match=r"list\.jsonl:1: expected a JSON object per line, got list"):
        load_dataset(str(path))


def test_empty_problem_text_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.jsonl", json.dumps({"question": "fine"}), json.dumps({"question": "  "}))
    with pytest.raises(DataError, match=r"empty\.jsonl:2: the problem text in field 'question' is empty"):
        load_dataset(str(path))


def test_missing_problem_field_lists_fields_and_the_option(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", json.dumps({"prompt": "Q", "target": "1"}))
    with pytest.raises(
        DataError, match=r"x\.jsonl:1: no problem field .*fields present: prompt, target.*--problem-field"
    ):
        load_dataset(str(path))
    with pytest.raises(DataError, match=r"no field 'gold' \(the answer field you passed\)"):
        load_dataset(str(path), problem_field="prompt", answer_field="gold")


def test_duplicate_ids_are_rejected(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "dup.jsonl", json.dumps({"id": 1, "question": "a"}), json.dumps({"id": 1, "question": "b"})
    )
    with pytest.raises(DataError, match=r"dup\.jsonl:2: problem id '1' already used at .*dup\.jsonl:1"):
        load_dataset(str(path))


def test_empty_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no problems found"):
        load_dataset(str(_write(tmp_path / "none.jsonl", "")))


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no dataset file at"):
        load_dataset(str(tmp_path / "absent.jsonl"))
    with pytest.raises(ConfigError, match="unknown dataset 'gsm9k'; valid: aime, gsm8k, gsm8k-offline"):
        load_dataset("gsm9k")


def test_limit_shuffle_and_seed() -> None:
    path = str(SHARED_DATA / "gsm8k_test.jsonl")
    assert [p.id for p in load_dataset(path, limit=3)] == ["0", "1", "2"]
    first = [p.id for p in load_dataset(path, limit=5, shuffle=True, seed=1)]
    assert first == [p.id for p in load_dataset(path, limit=5, shuffle=True, seed=1)]
    assert first != [p.id for p in load_dataset(path, limit=5, shuffle=True, seed=2)]
    assert first != ["0", "1", "2", "3", "4"]
    with pytest.raises(DataError, match="limit must be a positive number"):
        load_dataset(path, limit=0)


def test_gsm8k_offline_has_the_100_original_problems() -> None:
    problems = load_dataset("gsm8k-offline")
    assert len(problems) == 100
    benny = next(p for p in problems if p.id == "473")  # id = index in the GSM8K test split
    assert benny.answer == "10" and benny.text.startswith("Benny saw a 10-foot shark")
    assert all(p.answer for p in problems)


def test_gsm8k_offline_ids_are_gsm8k_test_indices() -> None:
    shared = {p.id: p for p in load_dataset(str(SHARED_DATA / "gsm8k_test.jsonl"))}
    offline = load_dataset("gsm8k-offline")
    # GSM-Symbolic lightly edited the texts; four edits changed the numbers and so the answer.
    changed = sorted(p.id for p in offline if shared[p.id].answer != p.answer)
    assert changed == ["1189", "1247", "20", "410"]


def test_reasoning_gym_is_seeded() -> None:
    a = load_dataset("reasoning-gym:gsm_symbolic", limit=4, seed=7)
    assert len(a) == 4 and all(p.text and p.answer for p in a)
    assert [p.text for p in a] == [p.text for p in load_dataset("reasoning-gym:gsm_symbolic", limit=4, seed=7)]
    assert [p.text for p in a] != [p.text for p in load_dataset("reasoning-gym:gsm_symbolic", limit=4, seed=8)]
    with pytest.raises(DataError, match="needs a task name"):
        load_dataset("reasoning-gym")
    with pytest.raises(DataError, match="reasoning-gym has no task 'no_such_task'"):
        load_dataset("reasoning-gym:no_such_task", limit=1)


def test_hub_names_offline_say_to_pass_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whether or not `datasets` is installed, offline the error must point to a local file.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="offline, pass a local JSONL file"):
        load_dataset("math500")
    with pytest.raises(DataError, match="field mappings apply to JSONL files only"):
        load_dataset("math500", problem_field="q")


def test_registry_lists_every_named_dataset() -> None:
    assert set(DATASETS) == {"aime", "gsm8k", "gsm8k-offline", "math500", "minerva", "olympiadbench", "reasoning-gym"}
