"""The worker processes of a Ray Serve deployment's replicas on this machine, to kill one as a crash
would (tests and ``bench/serve_ray.py``)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["replica_pids"]


def replica_pids(cluster_dir: Path, app: str = "trim", deployment: str = "TrimReplica") -> list[int]:
    """Pids of the processes titled ``ray::ServeReplica:<app>:<deployment>`` that belong to the cluster
    living under ``cluster_dir`` (their open logs are under it)."""
    title = f"ray::ServeReplica:{app}:{deployment}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or not (entry / "cmdline").read_bytes().startswith(title):
                continue
            if any(str(cluster_dir) in os.readlink(fd) for fd in (entry / "fd").iterdir()):
                pids.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return sorted(pids)
