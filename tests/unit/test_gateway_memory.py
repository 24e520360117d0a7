"""gateway/memory.py: when the trimmer gives free heap back to the OS. Each trim costs the pages it
returned, faulted back in by the next buffers, so trims are counted per byte streamed, never per
second: the cost per GiB must not grow with the number of processes sharing a stream or with a
slower stream (bench/cluster_roles.py, four gateways against one)."""

from __future__ import annotations

import threading

from exastor.gateway.memory import TRIM_EVERY, Trimmer, trim_due


def trims_while_streaming(total: int, per_check: int, idle_checks: int = 3) -> int:
    """Trims ``trim_due`` asks for while ``total`` bytes stream at ``per_check`` bytes between two
    checks, then nothing moves for ``idle_checks`` checks."""
    moved = last = seen = 0
    trims = 0
    checks = -(-total // per_check) + idle_checks
    for _ in range(checks):
        moved = min(total, moved + per_check)
        if trim_due(moved, last, seen, TRIM_EVERY):
            last = moved
            trims += 1
        seen = moved
    return trims


def test_trims_per_byte_do_not_depend_on_the_rate() -> None:
    gib = 1 << 30
    # one process at 256 MiB a second, or one of four sharing that stream at 64 MiB a second each
    one_fast = trims_while_streaming(4 * gib, 256 << 20)
    one_of_four = trims_while_streaming(gib, 64 << 20)
    assert one_fast == 4 * gib // TRIM_EVERY  # the last trim is the one at the stop
    assert 4 * one_of_four == one_fast  # four processes, a quarter of the bytes each: the same trims
    assert trims_while_streaming(gib, 8 << 20) == one_of_four  # a slow stream: no more trims per byte


def test_a_stream_that_stops_is_trimmed_once_and_idle_never() -> None:
    assert trims_while_streaming(32 << 20, 32 << 20, idle_checks=50) == 1
    assert trims_while_streaming(0, 1, idle_checks=50) == 0  # small requests only: nothing streamed
    assert not trim_due(10, 10, 10, TRIM_EVERY)


def test_the_trimmer_thread_trims_when_due() -> None:
    moved = [0]
    trimmed = threading.Semaphore(0)

    def trim(pad: int) -> None:
        assert pad == 0
        trimmed.release()

    trimmer = Trimmer(lambda: moved[0], interval=0.01, every=100, trim=trim).start()
    try:
        moved[0] = 150
        assert trimmed.acquire(timeout=30)  # 150 >= every: due at the next check
        assert trimmer.trims >= 1
    finally:
        trimmer.stop()
