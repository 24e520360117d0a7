"""MLPerf Storage workload parameters, and how a user's overrides apply to them.

Every number here comes from the MLPerf Storage benchmark's DLIO workload
configurations (github.com/mlcommons/storage, ``configs/dlio/workload/``;
the same files ship in argonne-lcf/dlio_benchmark, ``configs/workload/``):

=========  ===========================  ========  ======  =====  =========  ========  =====
workload   sample bytes (mean / stdev)  samples/  format  batch  compute s  compute s  AU
                                        file                     H100       A100      pass
=========  ===========================  ========  ======  =====  =========  ========  =====
unet3d     146,600,628 / 68,341,808     1         npz     7      0.323      0.636     0.90
resnet50   114,660.07 / 0               1251      tfrec.  400    0.224      0.435     0.90
cosmoflow  2,828,486 / 71,311           1         tfrec.  1      0.00350    0.00551   0.70
=========  ===========================  ========  ======  =====  =========  ========  =====

Read threads per accelerator: unet3d 4, resnet50 8, cosmoflow 4. Prefetch is
the PyTorch DataLoader default (``prefetch_factor=2`` batches per worker).

Checkpointing follows MLPerf Storage v2.0's Llama 3 shapes
(``llama3_8b.yaml``, ``llama3_70b.yaml``): fp16 weights (2 bytes/parameter)
plus fp32 Adam state (master weights, first and second moments: 12
bytes/parameter), 14 bytes per parameter in all, written by 8 ranks (8B) and
64 ranks (70B) at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypedDict

ACCELERATORS = ("h100", "a100")

# How a sample is fetched from its file: a whole-object GET when a file holds
# one sample, a ranged GET of one record inside a multi-sample file otherwise
# (TFRecord shards: the reader walks records, not whole files).
READ_WHOLE = "whole"
READ_RANGED = "ranged"


@dataclass(frozen=True)
class TrainingWorkload:
    """One MLPerf Storage training workload, resolved for one accelerator type."""

    name: str
    record_length: int  # mean bytes per sample
    record_length_stdev: int  # sample size spread (normal, clipped)
    samples_per_file: int
    file_format: str  # npz / tfrecord: names the objects, data stays opaque
    batch_size: int  # samples per accelerator per step
    compute_time: float  # seconds an accelerator spends on one batch
    read_threads: int  # data-loader workers per accelerator
    prefetch: int  # batches each worker may run ahead (PyTorch prefetch_factor)
    au_threshold: float  # pass mark for accelerator utilisation
    num_files: int  # MLPerf's default file count (our generator may scale it)
    read_pattern: str = READ_WHOLE
    shuffle: bool = True  # MLPerf: file_shuffle and sample_shuffle = seed

    @property
    def batch_bytes(self) -> int:
        return self.batch_size * self.record_length

    @property
    def bytes_per_second_needed(self) -> float:
        """What one accelerator must be fed to stay 100% busy."""
        return self.batch_bytes / self.compute_time

    @property
    def file_size(self) -> int:
        return self.record_length * self.samples_per_file

    def with_overrides(self, **overrides: Any) -> TrainingWorkload:
        """A copy with the given fields replaced; None means 'keep MLPerf's value'."""
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown workload parameters: {sorted(unknown)}")
        result = dataclasses.replace(self, **given)
        result.validate()
        return result

    def validate(self) -> None:
        if self.record_length <= 0 or self.samples_per_file <= 0 or self.batch_size <= 0:
            raise ValueError("record length, samples per file and batch size must be positive")
        if self.compute_time < 0 or self.read_threads <= 0 or self.prefetch <= 0:
            raise ValueError("compute time must be >= 0; read threads and prefetch must be positive")
        if not 0 < self.au_threshold <= 1:
            raise ValueError("AU threshold must be in (0, 1]")
        if self.read_pattern not in (READ_WHOLE, READ_RANGED):
            raise ValueError(f"read pattern must be {READ_WHOLE!r} or {READ_RANGED!r}")


# Per-batch compute times by accelerator (MLPerf Storage configs, see above).
_COMPUTE_TIME = {
    "unet3d": {"h100": 0.323, "a100": 0.636},
    "resnet50": {"h100": 0.224, "a100": 0.435},
    "cosmoflow": {"h100": 0.00350, "a100": 0.00551},
}

class _Parameters(TypedDict):
    """A training workload's MLPerf parameters that do not depend on the accelerator (its name and
    compute time do): TrainingWorkload's other fields."""
    record_length: int
    record_length_stdev: int
    samples_per_file: int
    file_format: str
    batch_size: int
    read_threads: int
    prefetch: int
    au_threshold: float
    num_files: int
    read_pattern: str


_BASE: dict[str, _Parameters] = {
    "unet3d": _Parameters(
        record_length=146_600_628, record_length_stdev=68_341_808, samples_per_file=1,
        file_format="npz", batch_size=7, read_threads=4, prefetch=2, au_threshold=0.90,
        num_files=168, read_pattern=READ_WHOLE,
    ),
    "resnet50": _Parameters(
        record_length=114_660, record_length_stdev=0, samples_per_file=1251,
        file_format="tfrecord", batch_size=400, read_threads=8, prefetch=2, au_threshold=0.90,
        num_files=1024, read_pattern=READ_RANGED,
    ),
    "cosmoflow": _Parameters(
        record_length=2_828_486, record_length_stdev=71_311, samples_per_file=1,
        file_format="tfrecord", batch_size=1, read_threads=4, prefetch=2, au_threshold=0.70,
        num_files=524_288, read_pattern=READ_WHOLE,
    ),
}

TRAINING_WORKLOADS = tuple(_BASE)


def training_workload(name: str, accelerator: str) -> TrainingWorkload:
    """MLPerf's parameters for ``name`` on ``accelerator`` (h100 or a100)."""
    if name not in _BASE:
        raise ValueError(f"unknown training workload {name!r}; choose from {TRAINING_WORKLOADS}")
    if accelerator not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {accelerator!r}; choose from {ACCELERATORS}")
    workload = TrainingWorkload(name=name, compute_time=_COMPUTE_TIME[name][accelerator], **_BASE[name])
    workload.validate()
    return workload


@dataclass(frozen=True)
class CheckpointModel:
    """A large-model checkpoint shape: every rank writes one shard at once."""

    name: str
    parameters: int
    ranks: int  # MLPerf Storage v2.0's process count for this model
    bytes_per_parameter: int = 14  # fp16 weights (2) + fp32 Adam master/m/v (12)

    @property
    def total_bytes(self) -> int:
        return self.parameters * self.bytes_per_parameter


# Parameter counts: Llama 3 8B = 8.03e9, Llama 3 70B = 70.6e9 (Meta's model cards).
CHECKPOINT_MODELS = {
    "llama3-8b": CheckpointModel("llama3-8b", parameters=8_030_000_000, ranks=8),
    "llama3-70b": CheckpointModel("llama3-70b", parameters=70_600_000_000, ranks=64),
}


def shard_sizes(total_bytes: int, ranks: int) -> list[int]:
    """Split a checkpoint evenly over ranks; the first ``total % ranks`` get one byte more."""
    if ranks <= 0:
        raise ValueError("ranks must be positive")
    base, extra = divmod(total_bytes, ranks)
    return [base + (1 if r < extra else 0) for r in range(ranks)]
