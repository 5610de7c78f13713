"""The local Ray cluster of the tests (``trimroute.testing.ray_cluster``): real nodes, loopback, private."""

from __future__ import annotations

import logging

import ray

from trimroute.testing.ray_cluster import NODE_IP, LocalRayCluster


@ray.remote(num_cpus=1)
def _node_of_task() -> str:
    return str(ray.get_runtime_context().get_node_id())


def test_cluster_has_a_head_and_a_worker_and_runs_tasks_on_both(ray_cluster: LocalRayCluster) -> None:
    ray.init(address=ray_cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        assert len(nodes) == 2 and all(n["NodeManagerAddress"] == NODE_IP for n in nodes)
        assert all(n["Resources"]["CPU"] == 1 for n in nodes)
        # two tasks of one CPU each at once: one on each node
        ran_on = set(ray.get([_node_of_task.remote() for _ in range(2)]))
        assert ran_on <= {n["NodeID"] for n in nodes} and ran_on
    finally:
        ray.shutdown()
    assert str(ray_cluster.temp_dir).startswith("/tmp/trimray-")
