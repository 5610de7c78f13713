"""``trim serve``: a bad config or flag fails in one line before uvicorn (or Ray) starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from trimroute.cli import app


@pytest.mark.parametrize(
    ("config", "args", "needle"),
    [
        (None, [], "cannot read config file"),
        ("serve: {max_pendng: 3}\n", [], "unknown config key 'serve.max_pendng'"),
        ("policy: thr:0.5\nserve: {routers: {trim-x: 'nope:1'}}\n", [], "router 'trim-x': unknown policy 'nope'"),
        ("policy: weak\n", ["--workers", "0"], "--workers must be >= 1"),
        ("policy: weak\n", ["--replicas", "2"], "--replicas and --autoscale need --ray"),
        # --ray: checked before Ray is reached
        (None, ["--ray", "auto"], "cannot read config file"),
        ("policy: weak\n", ["--ray", "auto", "--workers", "2"], "--workers is for uvicorn"),
        ("policy: weak\n", ["--ray", "auto", "--replicas", "0"], "--replicas must be >= 1"),
        ("policy: weak\n", ["--ray", "auto", "--autoscale", "4"], "--autoscale takes MIN:MAX"),
        ("policy: weak\n", ["--ray", "auto", "--autoscale", "3:1"], "needs 0 <= MIN <= MAX"),
        ("policy: weak\n", ["--ray", "auto", "--replicas", "2", "--autoscale", "1:2"], "not both"),
        ("policy: thr:0.5\nserve: {routers: {trim-x: 'nope:1'}}\n", ["--ray", "auto"], "unknown policy 'nope'"),
    ],
)
def test_bad_config_is_one_line_and_exit_1(tmp_path: Path, config: str | None, args: list[str], needle: str) -> None:
    path = tmp_path / "serve.yaml"
    if config is not None:
        path.write_text(config)
    result = CliRunner().invoke(app, ["serve", "--config", str(path), *args])
    assert result.exit_code == 1
    assert needle in result.output and "Traceback" not in result.output
