"""--find-max searches; it never guesses."""

import asyncio

import pytest

from exastor.tools.scaletest.search import find_max


def _search(capacity: int, **kwargs):
    probed = []

    async def probe(n):
        probed.append(n)
        return n <= capacity, 1.0 if n <= capacity else 0.5

    return asyncio.run(find_max(probe, **kwargs)), probed


@pytest.mark.parametrize("capacity", [1, 2, 3, 37, 64, 100, 1999])
def test_finds_the_exact_largest_passing_count(capacity):
    outcome, probed = _search(capacity, limit=5000)
    assert outcome.best == capacity
    assert outcome.first_fail == capacity + 1
    assert len(probed) == len(set(probed))  # no count run twice
    assert len(probed) <= 2 * capacity.bit_length() + 2  # doubling then bisection


def test_nothing_passes():
    outcome, probed = _search(0, start=4)
    assert outcome.best == 0 and probed[0] == 4 and 1 in probed


def test_stops_at_the_limit():
    outcome, _ = _search(10_000, limit=100)
    assert outcome.best == 100 and outcome.first_fail is None


def test_precision_trades_probes_for_a_bracket():
    outcome, probed = _search(1000, limit=5000, precision=0.1)
    assert 900 <= outcome.best <= 1000
    assert outcome.first_fail - outcome.best <= 0.1 * outcome.best + 1
    exact, exact_probes = _search(1000, limit=5000)
    assert len(probed) < len(exact_probes)
