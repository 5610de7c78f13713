"""``trim report``, ``trim calibrate``: work on finished runs without calling a model.

After ``trim grade RUN`` (re-grading), ``trim report RUN`` rebuilds the run's metrics, table and plot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors
from trimroute.errors import ConfigError
from trimroute.eval.metrics import ConfidenceInterval, Price
from trimroute.eval.report import calibrate as calibrate_run
from trimroute.eval.report import merge_runs, write_policy_config
from trimroute.eval.results import CPT_TARGETS, PLOT_NAME, calls_line, compute_metrics, number, percent, write_results
from trimroute.eval.rundir import RunDir


def summary_tables(results: Mapping[str, Any], title: str) -> list[Table]:
    """The report's tables narrowed to an 80-column terminal (report.md has every column)."""
    ref, n = results["references"], results["n_problems"]
    caption = f"{n} problems"
    if n < 100:
        caption += f": a small sample (one problem moves accuracy by {100 / n:.1f} points)"
    points = Table(title=f"{title}\n{caption}", title_justify="left")
    for col in ("point", "accuracy", "PGR", "strong tok", "share", "esc/prob", "p50 s"):
        points.add_column(col, justify="left" if col == "point" else "right", overflow="fold")
    for name, p in results["points"].items():
        points.add_row(
            Text(name), percent(p["accuracy"]), percent(p["pgr"], 0), number(p["mean_strong_tokens"]),
            percent(p["strong_share"]), number(p["escalations_per_problem"], 2), number(p.get("wall_p50_s"), 1),
        )  # fmt: skip
    points.caption = (
        f"strong tok = strong tokens per problem; share = of strong-only's {number(ref['c_strong'])}; "
        "esc/prob = regenerated steps per problem; p50 s = median wall time per problem"
    )
    if not results["curves"]:
        return [points]
    curves = Table(title="curves: CPT as share of strong-only tokens", title_justify="left")
    for col in ("method", *(f"CPT{int(100 * x)}" for x in CPT_TARGETS), "ΔIBC", "APGR", "reach"):
        curves.add_column(col, justify="left" if col == "method" else "right", overflow="fold")
    for method, c in results["curves"].items():
        cells = [percent(v["share"]) if v["tokens"] is not None else "–" for v in c["cpt"].values()]
        curves.add_row(Text(method), *cells, number(c["delta_ibc"], 2), percent(c["apgr"]), percent(c["reach"], 0))
    return [points, curves]


def print_results(results: Mapping[str, Any], title: str, notes: Mapping[str, Any] | None = None) -> None:
    for table in summary_tables(results, title):
        console.print(table)
    for key, search in ((notes or {}).get("budget_matches") or {}).items():
        thr = search.get("thr", key)  # keyed by the thr point alone before random:matched:keep-final
        if search["random"] in results["points"] and thr in results["points"]:
            console.print(Text(f"budget of {thr}: {search['describe']}"))
    for family, training in (results.get("baseline_training") or {}).items():
        console.print(Text(f"{family}: {training}"))
    line = calls_line(results)
    if line is not None:
        console.print(Text(line))


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="Run directories of trim eval (weak/strong from the first).")],
    out: Annotated[
        Path | None, typer.Option(help="Write metrics.json, report.md and the plot here (default: the run, if one).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for confidence intervals.")] = 1000,
) -> None:
    """Merge runs into one table and one accuracy–cost plot."""
    with handle_errors():
        if bootstrap < 1:
            raise ConfigError("--bootstrap must be >= 1")
        points = merge_runs(runs)
        first = RunDir(runs[0])
        prices = {r: Price(*v) for r, v in first.config().get("prices", {}).items()}
        calls = {f"{Path(r).name}/{k}": v for r in runs for k, v in RunDir(r).calls().items()}
        notes = first.config().get("notes") if len(runs) == 1 else None
        results = compute_metrics(points, prices=prices or None, cache_calls=calls, n_resamples=bootstrap, notes=notes)
        title = "trim report · " + ", ".join(Path(r).name for r in runs)
        if len(runs) == 1:
            title = f"trim eval · {Path(first.config()['dataset']['spec']).name}"
        print_results(results, title, first.config().get("notes"))
        out = out or (runs[0] if len(runs) == 1 else None)
        if out is not None:
            write_results(out, results, title)
            console.print(Text(f"written: {out / 'report.md'}, {out / PLOT_NAME}.png/.svg"))


def _ci(ci: ConfidenceInterval, fmt: str) -> str:
    low = "–" if ci.low is None else format(ci.low, fmt)
    high = "–" if ci.high is None else format(ci.high, fmt)
    return f"[{low}, {high}] ({ci.level:.0%} CI)"


@app.command()
def calibrate(
    run: Annotated[Path, typer.Argument(help="Calibration run directory of trim eval.")],
    target_share: Annotated[float | None, typer.Option(help="Max share of strong-only tokens, e.g. 0.2.")] = None,
    target_budget: Annotated[float | None, typer.Option(help="Max mean strong tokens per problem.")] = None,
    target_pgr: Annotated[float | None, typer.Option(help="Min performance gap recovered, e.g. 0.8.")] = None,
    method: Annotated[str | None, typer.Option(help="Curve to pick from (default thr).")] = None,
    write_config: Annotated[Path | None, typer.Option(help="Write the chosen policy into this YAML config.")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for confidence intervals.")] = 1000,
) -> None:
    """Pick the threshold (or λ, or policy artifact) meeting a target; print the accuracy and cost to expect."""
    with handle_errors():
        if bootstrap < 1:
            raise ConfigError("--bootstrap must be >= 1")
        rundir = RunDir(run)
        c = calibrate_run(
            rundir, target_share=target_share, target_budget=target_budget, target_pgr=target_pgr, method=method,
            n_resamples=bootstrap,
        )  # fmt: skip
        table = Table(title=f"trim calibrate · {c.target} · {c.n_problems} problems", show_header=False)
        table.add_row("policy", f"[bold]{c.policy}[/]")
        table.add_row("expected accuracy", f"{c.accuracy:.1%} {_ci(c.accuracy_ci, '.1%')}")
        table.add_row("mean strong tokens", f"{c.mean_strong_tokens:.1f} {_ci(c.tokens_ci, '.1f')}")
        table.add_row("share of strong-only tokens", f"{c.share:.1%}")
        table.add_row("PGR", "–" if c.pgr is None else f"{c.pgr:.1%}")
        console.print(table)
        if write_config is not None:
            path = write_policy_config(rundir, c.policy, write_config)
            console.print(f"wrote policy {c.policy!r} into {path}; use it with: trim run --config {path}")
