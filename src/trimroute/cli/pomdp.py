"""``trim pomdp solve``: solve TRIM-POMDP for one or more λ and save each policy folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from trimroute.cli import app
from trimroute.cli.common import console, handle_errors, numbers_option
from trimroute.errors import ConfigError

pomdp_app = typer.Typer(help="TRIM-POMDP: solve policies from a simulator preset or fitted parameters.")
app.add_typer(pomdp_app, name="pomdp")


@pomdp_app.command("solve", context_settings={"allow_extra_args": True})
def solve_cmd(
    ctx: typer.Context,
    lam: Annotated[list[float], typer.Option(help="Price of one strong token (λ); several: --lam 3e-4 1e-3")],
    out: Annotated[Path, typer.Option(help="Output folder; one sub-folder lam=L per λ.")],
    preset: Annotated[str | None, typer.Option(help="Shipped preset name (e.g. qwen1.5b-7b).")] = None,
    params: Annotated[Path | None, typer.Option(help="Parameter JSON written by trim fit.")] = None,
    token_bins: Annotated[int, typer.Option(help="Bins of the proposal's token count.")] = 4,
    ray: Annotated[
        str | None, typer.Option(help="Solve the λ values as parallel tasks on this Ray cluster (HOST:PORT or auto).")
    ] = None,
) -> None:
    """Solve the POMDP for each λ; use the result as --policy pomdp:OUT/lam=L."""
    from trimroute.policies.pomdp_model import POMDPModel
    from trimroute.policies.pomdp_solver import solve
    from trimroute.sim.presets import load_params

    with handle_errors():
        if (preset is None) == (params is None):
            raise ConfigError("give exactly one of --preset NAME or --params FILE")
        source = preset if preset is not None else str(params)
        model = POMDPModel.from_params(load_params(source), token_bins=token_bins)
        values = numbers_option("--lam", lam, ctx.args)
        for value in values:  # a bad λ fails here, before any task is sent
            if value < 0:
                raise ConfigError(f"λ must be >= 0 (price of one strong token), got {value}")
        if ray is not None:
            from trimroute.cluster import ray_map

            solutions = ray_map(solve, [(model, v) for v in values], ray)
        else:
            solutions = (solve(model, v) for v in values)
        for value, solution in zip(values, solutions, strict=True):
            folder = solution.save(out / f"lam={value:g}", {"params": source, "token_bins": token_bins})
            console.print(
                f"λ={value:g}: {solution.solve_seconds:.2f} s, value {solution.value(model.initial_belief):.4f} "
                f"→ [bold]pomdp:{folder}[/]"
            )
