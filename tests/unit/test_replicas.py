"""The replica pool's rules with a fake clock: least outstanding, problem affinity, taking out and probing back."""

from __future__ import annotations

from trimroute.replicas import Replicas, affinity_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pool(n: int = 2, **kw: object) -> tuple[Replicas, Clock]:
    clock = Clock()
    return Replicas([f"http://r{i}/v1" for i in range(n)], clock=clock, **kw), clock  # type: ignore[arg-type]


def test_an_idle_pool_alternates_and_a_busy_replica_is_avoided() -> None:
    replicas, _ = pool(3)
    assert [replicas.pick().base_url for _ in range(4)] == [
        "http://r0/v1",
        "http://r1/v1",
        "http://r2/v1",
        "http://r0/v1",
    ]
    a, b, c = replicas.all
    with replicas.serving(a), replicas.serving(a), replicas.serving(b):
        assert (a.outstanding, b.outstanding, c.outstanding) == (2, 1, 0)
        assert replicas.pick() is c
    assert a.outstanding == b.outstanding == 0  # released when the request ends


def test_a_key_stays_on_its_replica_even_when_another_is_less_busy() -> None:
    replicas, _ = pool(2)
    a, b = replicas.all
    first = replicas.pick("problem-1")
    with replicas.serving(first), replicas.serving(first):
        assert replicas.pick("problem-1") is first
        assert replicas.pick("problem-2") is not first  # a new problem goes to the least loaded
    assert {replicas.pick("problem-1") for _ in range(5)} == {first}
    assert replicas.pick("problem-2") is ({a, b} - {first}).pop()


def test_without_affinity_every_request_goes_to_the_least_outstanding() -> None:
    replicas, _ = pool(2, affinity=False)
    a, b = replicas.all
    assert replicas.pick("problem-1") is a
    with replicas.serving(a):
        assert replicas.pick("problem-1") is b


def test_a_failed_replica_is_out_until_a_probe_is_due_and_its_keys_move_for_good() -> None:
    replicas, clock = pool(2, backoff_s=1.0, max_backoff_s=3.0)
    a, b = replicas.all
    assert replicas.pick("p") is a
    replicas.failed(a)
    assert not a.healthy and replicas.healthy() == [b]
    assert replicas.pick("p") is b  # re-pinned
    assert replicas.due() == []
    clock.now += 1.0
    assert replicas.due() == [a] and a.probing
    assert replicas.due() == []  # one probe at a time
    replicas.failed(a)  # the probe failed: the backoff doubles, up to max_backoff_s
    a.probing = False
    assert a.down_until == clock.now + 2.0
    replicas.failed(a)
    assert a.down_until == clock.now + 3.0
    replicas.succeeded(a)
    assert a.healthy and a.failures == 0
    assert replicas.pick("p") is b  # its cache is warm there now
    assert replicas.pick("q") is a  # new problems fill the one that came back


def test_with_every_replica_out_the_one_due_soonest_is_tried() -> None:
    replicas, clock = pool(2, backoff_s=1.0)
    a, b = replicas.all
    replicas.failed(b)
    clock.now += 0.5
    replicas.failed(a)
    assert replicas.pick("p") is b
    single, _ = pool(1)
    single.failed(single.all[0])
    assert single.pick("p") is single.all[0]  # one replica: simply retried


def test_the_affinity_table_forgets_the_least_recently_used_keys() -> None:
    replicas, _ = pool(2, max_keys=2)
    a, b = replicas.all
    assert replicas.pick("p1") is a and replicas.pick("p2") is b
    replicas.pick("p1")  # p1 is used again: p2 is now the oldest
    assert replicas.pick("p3") is b
    assert replicas.pick("p2") is a  # forgotten: placed afresh, by load alone


def test_affinity_keys_are_short_and_separate_their_parts() -> None:
    assert affinity_key("ab", "c") != affinity_key("a", "bc")
    assert affinity_key("x" * 10_000) == affinity_key("x" * 10_000) and len(affinity_key("x")) == 32
