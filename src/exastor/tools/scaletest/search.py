"""``--find-max``: the largest accelerator count that still meets the AU threshold, searched.

Doubling from a start until a run fails (or a limit is reached), then
bisection between the last pass and the first fail. Each probe is a real run,
so the answer is measured, never extrapolated. It assumes AU falls as the
count grows (more accelerators share the same storage), which is what a
storage-bound system does; the probes are all reported so any noise shows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class SearchOutcome:
    best: int  # largest count that passed (0: even the smallest failed)
    probes: list[tuple[int, bool, float]] = field(default_factory=list)  # (count, passed, AU)
    first_fail: int | None = None


async def find_max(
    probe: Callable[[int], Awaitable[tuple[bool, float]]],
    start: int = 1,
    limit: int = 1_000_000,
    precision: float = 0.0,
) -> SearchOutcome:
    """Search the largest n in [1, limit] with ``probe(n)`` passing.

    ``precision`` stops the bisection once the bracket is within that fraction
    of the lower end (0: exact to one accelerator).
    """
    if start < 1 or limit < 1:
        raise ValueError("start and limit must be at least 1")
    outcome = SearchOutcome(best=0)
    results: dict[int, bool] = {}

    async def check(n: int) -> bool:
        if n not in results:
            passed, au = await probe(n)
            results[n] = passed
            outcome.probes.append((n, passed, au))
        return results[n]

    n = min(start, limit)
    passed_at, failed_at = 0, None
    if await check(n):
        passed_at = n
        while passed_at < limit:
            n = min(passed_at * 2, limit)
            if await check(n):
                passed_at = n
            else:
                failed_at = n
                break
    else:
        failed_at = n
    if failed_at is not None:
        low, high = passed_at, failed_at
        while high - low > max(1, int(precision * low)):
            middle = (low + high) // 2
            if await check(middle):
                low = middle
            else:
                high = middle
        passed_at, failed_at = low, high
    outcome.best = passed_at
    outcome.first_fail = failed_at
    return outcome
