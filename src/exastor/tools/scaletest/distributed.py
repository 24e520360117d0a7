"""Spreading one scale test over several client hosts, and adding their results up.

Local mode (one process) is the default and needs nothing here. When one
client host cannot drive enough accelerators, the same command runs on an
engine that already exists on the cluster:

* MPI: ``mpirun -np HOSTS exastor scaletest ...`` (needs ``mpi4py``). Each
  process drives its share of the accelerators; rank 0 makes the data set,
  everybody starts after a barrier, rank 0 gathers and aggregates.
* Ray: ``exastor scaletest --distributed ray --hosts K ...`` on a node of a
  running Ray cluster (needs ``ray``): K remote tasks, one per host, each
  driving its share; the caller aggregates.
* By hand: run shares anywhere with ``--rank-offset/--total-accelerators
  --json``, then ``exastor scaletest --aggregate a.json b.json ...``.

Neither mpi4py nor Ray is imported unless asked for.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from exastor.tools.scaletest.results import RunResult, aggregate

_MPI_SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS")


def split(total: int, hosts: int, host: int) -> tuple[int, int]:
    """(count, first global rank) of host ``host``'s share of ``total`` accelerators."""
    if hosts <= 0 or not 0 <= host < hosts:
        raise ValueError("host must be in [0, hosts)")
    base, extra = divmod(total, hosts)
    count = base + (1 if host < extra else 0)
    offset = host * base + min(host, extra)
    return count, offset


def launched_under_mpi() -> bool:
    return any(int(os.environ.get(name, "1") or 1) > 1 for name in _MPI_SIZE_VARIABLES)


class MpiGroup:
    """The MPI world, through mpi4py (imported only here)."""

    def __init__(self) -> None:
        try:
            from mpi4py import MPI  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - depends on the host
            raise RuntimeError("MPI mode needs mpi4py: pip install mpi4py") from exc
        self.comm = MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        self.comm.Barrier()

    def gather_results(self, result: RunResult) -> RunResult | None:
        """Aggregate every host's result on rank 0 (None elsewhere)."""
        gathered = self.comm.gather(result.to_dict(), root=0)
        if not self.is_root:
            return None
        return aggregate([RunResult.from_dict(d) for d in gathered])

    def broadcast(self, value: Any) -> Any:
        return self.comm.bcast(value, root=0)


def run_on_ray(hosts: int, share: Callable[[int, int], dict[str, Any]], total: int) -> RunResult:
    """Run ``share(count, offset)`` on ``hosts`` Ray workers (one per node) and aggregate."""
    try:
        import ray  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the host
        raise RuntimeError("Ray mode needs ray: pip install ray") from exc
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
    remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(share)
    futures = [remote.remote(*split(total, hosts, host)) for host in range(hosts)]
    return aggregate([RunResult.from_dict(d) for d in ray.get(futures)])


def aggregate_files(paths: list[str]) -> RunResult:
    """Aggregate the ``--json`` outputs of a run spread over hosts by hand."""
    results = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        results.append(RunResult.from_dict(data.get("result", data)))
    return aggregate(results)
