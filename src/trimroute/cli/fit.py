"""``trim fit``: estimate simulator/POMDP parameters for your own model pair and scorer."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.errors import ConfigError

if TYPE_CHECKING:
    from trimroute.sim.presets import SimParams


@app.command("fit")
def fit_cmd(
    out: Annotated[Path, typer.Option(help="Output parameter JSON (use with --sim FILE, trim pomdp solve --params).")],
    run: Annotated[
        Path | None, typer.Option(help="A trim eval run directory with points thr:0 and strong (replaces the next 3).")
    ] = None,
    weak: Annotated[Path | None, typer.Option(help="Graded weak-only trajectories (JSONL).")] = None,
    strong: Annotated[Path | None, typer.Option(help="Graded strong-only trajectories (JSONL), same problems.")] = None,
    labels: Annotated[
        Path | None, typer.Option(help="Step-labelled JSONL: {scores: [...], first_wrong: i or -1}.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name stored in the file (default: the file's stem).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Steps per solution (default: the run's, else 30).")] = None,
    error_threshold: Annotated[
        float, typer.Option(help="With --run: a wrong solution's first step scored below this is its first error.")
    ] = 0.5,
    holdout: Annotated[
        float, typer.Option(help="With --run: share of problems left out of the fit and compared with it.")
    ] = 0.0,
) -> None:
    """Fit p_w, p_s, the length hazards and token distributions, and P(o | state) (reflected KDE).

    With --run, also writes OUT's stem + .labels.jsonl (the labelled steps derived from the run, what
    --labels takes) and, with --holdout, OUT's stem + .holdout.json (simulated vs measured on the problems
    left out).
    """
    with handle_errors():
        if (run is None) == (weak is None and strong is None and labels is None) or (
            run is None and None in (weak, strong, labels)
        ):
            raise ConfigError("pass either --run RUN_DIR or all of --weak, --strong and --labels")
        name = name or out.stem
        out.parent.mkdir(parents=True, exist_ok=True)
        if run is None:
            from trimroute.learn.fit import fit_params

            assert weak is not None and strong is not None and labels is not None
            params = fit_params(weak, strong, labels, name=name, max_steps=max_steps or 30)
        else:
            params = _fit_run(run, out, name, max_steps, error_threshold, holdout)
        params.save(out)
        console.print(
            f"p_w={params.weak.next_step_accuracy:.4f}  p_s={params.strong.next_step_accuracy:.4f}  "
            f"tokens/step weak {params.weak.mean_tokens:.1f}, strong {params.strong.mean_tokens:.1f}  "
            f"wrong-step factor {params.wrong_token_factor:.2f}  → {out}"
        )


def _fit_run(
    run: Path, out: Path, name: str, max_steps: int | None, error_threshold: float, holdout: float
) -> SimParams:
    """Fit to a run directory; write the labelled steps and, with a holdout, the held-out comparison."""
    from trimroute.learn.fit_run import compare, fit_run, read_run

    if not 0.0 <= holdout < 1.0:
        raise ConfigError(f"--holdout is a share of the problems in [0, 1), got {holdout}")
    data = read_run(run)
    if max_steps is not None:
        data = replace(data, max_steps=max_steps)
    fit_part, held = data.split(holdout) if holdout else (data, None)
    params, records = fit_run(fit_part, name=name, error_threshold=error_threshold)
    labels_out = out.with_name(out.stem + ".labels.jsonl")
    labels_out.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    console.print(f"labelled steps of {len(records)} weak-only solutions → {labels_out}")
    if held is not None:
        if not held.weak or not held.strong:
            raise ConfigError(f"--holdout {holdout} leaves no problem out of {len(data.weak)}; raise it")
        rows = compare(params, held)
        table = Table(title=f"held out: {len(held.weak)} problems (fitted on {len(fit_part.weak)})")
        for col in ("k", "sim acc", "measured acc", "sim strong tok", "measured", "sim weak tok", "measured"):
            table.add_column(col, justify="right")
        for sim, got in rows:
            table.add_row(
                f"{sim.k:g}", f"{sim.accuracy:.1%}", f"{got.accuracy:.1%}", f"{sim.strong_tokens:.1f}",
                f"{got.strong_tokens:.1f}", f"{sim.weak_tokens:.1f}", f"{got.weak_tokens:.1f}",
            )  # fmt: skip
        console.print(table)
        report = {
            "fit_problems": len(fit_part.weak),
            "heldout_problems": len(held.weak),
            "points": [{"k": s.k, "sim": asdict(s), "measured": asdict(m)} for s, m in rows],
        }
        path = out.with_name(out.stem + ".holdout.json")
        path.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return params
