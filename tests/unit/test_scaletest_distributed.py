"""Splitting accelerators over hosts, and noticing an MPI launch."""

import pytest

from exastor.tools.scaletest import distributed


@pytest.mark.parametrize("total,hosts", [(10, 3), (2000, 7), (3, 5), (1, 1)])
def test_split_covers_every_accelerator_once(total, hosts):
    shares = [distributed.split(total, hosts, h) for h in range(hosts)]
    assert sum(count for count, _ in shares) == total
    ranks = [r for count, offset in shares for r in range(offset, offset + count)]
    assert ranks == list(range(total))
    counts = [count for count, _ in shares]
    assert max(counts) - min(counts) <= 1


def test_split_rejects_bad_hosts():
    with pytest.raises(ValueError):
        distributed.split(10, 2, 2)


def test_mpi_detection(monkeypatch):
    for name in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched_under_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    assert not distributed.launched_under_mpi()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.launched_under_mpi()
