"""A real local Ray cluster for tests and benchmarks: a head and N worker nodes, each a ``ray start`` process.

Every node listens on 127.0.0.1 only and lives under a private temp dir, so the cluster never joins or
stops anyone else's: ``ray stop`` is global (it kills every Ray process of the user), so this module never
calls it. Each node runs ``ray start --block`` in its own process group; stopping the cluster terminates those
groups, then kills whatever process still names the cluster's temp dir on its command line (a worker
orphaned by a killed node). ``kill_worker`` SIGKILLs one worker node, as a crashed machine would go.

The workers import trimroute from the same place as the caller (``PYTHONPATH``), so a source checkout
tests its own code, not an installed copy.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trimroute
from trimroute.cluster import require_ray
from trimroute.testing.llama_server import free_port

__all__ = ["NODE_IP", "LocalRayCluster", "local_ray_cluster"]

STARTED = "Ray runtime started"
OBJECT_STORE_BYTES = 256 * 1024**2
# a loopback address Ray keeps: it replaces 127.0.0.1 (and localhost) by the machine's outward address
NODE_IP = "127.0.0.2"


def _ray_command() -> str:
    # the ``ray`` script of the interpreter running us, not whichever one PATH finds first
    script = Path(sys.executable).with_name("ray")
    return str(script) if script.exists() else "ray"


class _Node:
    def __init__(self, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [_ray_command(), "start", "--block", *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
            )  # fmt: skip

    def wait_started(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if STARTED in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n{self.tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"ray start did not come up in {timeout_s:.0f} s:\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # start_new_session: the group id is the ray start pid
        except ProcessLookupError:
            pass

    def stop(self, grace_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # ray start --block stops its own processes on SIGTERM
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        self.signal_group(signal.SIGKILL)
        self.proc.wait()


class LocalRayCluster:
    """A head node and ``workers`` worker nodes on this machine; ``address`` is what ``ray.init`` takes.

    ``head_cpus`` defaults to ``cpus_per_node``; 0 keeps tasks and actors off the head (only workers run them).
    """

    def __init__(self, workers: int = 1, cpus_per_node: int = 1, head_cpus: int | None = None) -> None:
        require_ray()
        self.cpus_per_node = cpus_per_node
        self.head_cpus = cpus_per_node if head_cpus is None else head_cpus
        # short: Ray puts unix sockets under it, and their paths may not exceed 107 bytes
        self.temp_dir = Path(tempfile.mkdtemp(prefix="trimray-", dir="/tmp"))
        self.port = free_port()
        self.address = f"{NODE_IP}:{self.port}"
        source = str(Path(trimroute.__file__).resolve().parents[1])
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p),
            "RAY_USAGE_STATS_ENABLED": "0",
            # Ray >= 2.5x turns token auth on when ~/.ray/auth_token exists (any local ray.init writes one),
            # and the nodes of one cluster can then disagree; loopback only, so no token
            "RAY_AUTH_MODE": "disabled",
        }
        self.head: _Node | None = None
        self.workers: list[_Node | None] = []
        self._initial_workers = workers

    def _ports(self) -> list[str]:
        # fixed defaults (10001, 8265, 52365) would collide with another cluster on this machine; a small
        # object store: these clusters move trajectories, not tensors, and share the machine's memory
        return ["--node-ip-address", NODE_IP, "--dashboard-agent-listen-port", str(free_port()),
                "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats"]  # fmt: skip

    def start(self, timeout_s: float = 120.0) -> LocalRayCluster:
        head_args = [
            "--head", "--port", str(self.port), "--num-cpus", str(self.head_cpus), "--include-dashboard=false",
            "--temp-dir", str(self.temp_dir), "--ray-client-server-port", str(free_port()),
            "--dashboard-port", str(free_port()), *self._ports(),
        ]  # fmt: skip
        self.head = _Node(head_args, self.temp_dir / "head.log", self.env)
        try:
            self.head.wait_started(timeout_s)
            for _ in range(self._initial_workers):
                self.add_worker(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, timeout_s: float = 120.0) -> int:
        """Start one more worker node; return its index (for ``kill_worker``)."""
        index = len(self.workers)
        args = ["--address", self.address, "--num-cpus", str(self.cpus_per_node), *self._ports()]
        node = _Node(args, self.temp_dir / f"worker-{index}.log", self.env)
        self.workers.append(node)
        node.wait_started(timeout_s)
        return index

    def kill_worker(self, index: int) -> None:
        """SIGKILL worker node ``index`` and every process of its group (raylet, its workers)."""
        node = self.workers[index]
        if node is None:
            return
        node.signal_group(signal.SIGKILL)
        node.proc.wait()
        self.workers[index] = None

    def stop(self) -> None:
        """Stop every node of this cluster, then kill any straggler that names its temp dir; remove the dir."""
        for node in [*self.workers, self.head]:
            if node is not None:
                node.stop()
        self.workers, self.head = [], None
        _kill_naming(str(self.temp_dir))
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_naming(marker: str) -> None:
    """SIGKILL this user's processes whose command line contains ``marker`` (a path only our cluster uses)."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if marker.encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue  # gone already, or not ours to read


@contextmanager
def local_ray_cluster(
    workers: int = 1, cpus_per_node: int = 1, head_cpus: int | None = None
) -> Iterator[LocalRayCluster]:
    """``with local_ray_cluster(workers=1) as cluster: ray.init(address=cluster.address)``."""
    with LocalRayCluster(workers, cpus_per_node, head_cpus) as cluster:
        yield cluster
