"""Named crash points for fault injection (tests/faults); a no-op unless ``EXASTOR_CRASH_POINTS`` is set.

When ``EXASTOR_CRASH_POINTS`` names a file holding e.g. ``seal.committed=0.2,put.before_commit=1``,
``crash_point(name)`` SIGKILLs the whole process group (every worker and the parent) with that
probability, appending the name to the file ``EXASTOR_CRASH_LOG`` first, so the harness can kill -9
exactly between two steps of an ordering rule. It works from any thread: the metadata writer thread
(inside a group-commit transaction), the sealer thread, the event loop.

The points (docs/reliability.md):

- ``<op>.before_commit`` for ``put`` (PUT, copy, Put Blob), ``delete``, ``part`` (UploadPart),
  ``multipart`` (complete), ``block`` (Put Block, Put Block From URL), ``blocklist`` (Put Block List),
  ``append`` (Append Block), ``props`` (Set Blob Metadata / Properties / Tier, Seal Blob, a
  snapshot's properties), ``snapshot`` (Snapshot Blob), ``blobdelete`` (Delete Blob, soft or hard)
  and ``undelete`` (Undelete Blob): inside the operation's metadata transaction, after its
  statements ran and after the data it points at was made durable, before COMMIT
  (``Metadata.commit``);
- ``<op>.committed`` for the same operations: the transaction is durable, the client has not been
  answered;
- ``seal.shards_written``, ``seal.committed``, ``repair.written``, ``repair.moved``, ``gc.copied``,
  ``gc.committed``: between the steps of sealing, repair and compaction (``seal.committed`` also
  where a 1+0 segment is sealed as it is, its replica cut back); ``stripe.shards_written`` and
  ``stripe.committed``: a full stripe written directly (``SegmentLog.write_stripe``), its shards
  fsynced before and after the transaction that records it sealed;
- ``segment.created``: a new open segment's files made (header and directory entry fsynced), before
  any record; ``meta.copies_retired``: at start, after the metadata copies and journal generations
  that a fresh copy superseded (secrets in the clear, or under an old master key) were removed
  (tests/faults/test_power_cut_points.py cuts the power at each).

It lives outside the engine and metadata packages so that both can call it.
"""

from __future__ import annotations

import os
import random
import signal
import threading


class _CrashPoints:
    """Crash points named in the file ``EXASTOR_CRASH_POINTS`` (re-read when it changes)."""

    def __init__(self) -> None:
        self.path = os.environ.get("EXASTOR_CRASH_POINTS")
        self.rng = random.Random(int(os.environ.get("EXASTOR_CRASH_SEED", "0")) * 1_000_003 + os.getpid())
        self._mtime = -1.0
        self._lock = threading.Lock()
        self.spec: dict[str, float] = {}

    def probability(self, name: str) -> float:
        if not self.path:
            return 0.0
        try:
            mtime = os.stat(self.path).st_mtime
            if mtime != self._mtime:
                with open(self.path) as f:
                    text = f.read()
                spec = {}
                for item in text.replace("\n", ",").split(","):
                    key, _, p = item.partition("=")
                    if key.strip():
                        spec[key.strip()] = float(p or 1)
                self.spec, self._mtime = spec, mtime  # one assignment: other threads see old or new, never half
        except (OSError, ValueError):
            return 0.0
        return self.spec.get(name, 0.0)

    def hit(self, name: str) -> bool:
        p = self.probability(name)
        if not p:
            return False
        with self._lock:  # the workers' threads share one generator
            return self.rng.random() < p


_CRASH = _CrashPoints()


def crash_point(name: str) -> None:
    """Fault injection only: kill -9 this whole process group here, with the configured probability."""
    if _CRASH.path and _CRASH.hit(name):
        log_path = os.environ.get("EXASTOR_CRASH_LOG")
        if log_path:
            with open(log_path, "a") as f:
                f.write(name + "\n")
        os.killpg(os.getpgid(0), signal.SIGKILL)
