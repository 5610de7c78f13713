"""``trim fit``: estimate simulator/POMDP parameters for your own model pair and scorer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors


@app.command("fit")
def fit_cmd(
    weak: Annotated[Path, typer.Option(help="Graded weak-only trajectories (JSONL).")],
    strong: Annotated[Path, typer.Option(help="Graded strong-only trajectories (JSONL), same problems if possible.")],
    labels: Annotated[Path, typer.Option(help="Step-labelled JSONL: {scores: [...], first_wrong: i or -1}.")],
    out: Annotated[Path, typer.Option(help="Output parameter JSON (use with --sim FILE, trim pomdp solve --params).")],
    name: Annotated[str | None, typer.Option(help="Name stored in the file (default: the file's stem).")] = None,
    max_steps: Annotated[int, typer.Option(help="Steps per solution.")] = 30,
) -> None:
    """Fit p_w, p_s, the length hazard and token distributions, and P(o | state) (reflected KDE)."""
    from trimroute.learn.fit import fit_params

    with handle_errors():
        params = fit_params(weak, strong, labels, name=name or out.stem, max_steps=max_steps)
        out.parent.mkdir(parents=True, exist_ok=True)
        params.save(out)
        console.print(
            f"p_w={params.weak.next_step_accuracy:.4f}  p_s={params.strong.next_step_accuracy:.4f}  "
            f"tokens/step weak {params.weak.mean_tokens:.1f}, strong {params.strong.mean_tokens:.1f}  → {out}"
        )
