"""A short seeded slice of the fault-injection harness (tests/faults/harness.py) for CI; the long run
is `python tests/faults/harness.py --cycles 200 --seed 1` (docs/reliability.md)."""

from __future__ import annotations

import harness
import pytest


def _clean(res: harness.Results) -> None:
    assert not res.violations, res.violations
    assert res.acked_lost == 0 and res.half_visible == 0 and res.fsck_unclean_after_repair == 0


def test_every_injected_shard_corruption_is_detected_and_repaired(tmp_path):
    res = harness.Results(seed=7)
    harness.corruption_rounds(tmp_path, rounds=3, per_round=15, seed=7, res=res)
    _clean(res)
    assert res.corruptions_injected >= 40
    assert res.corruptions_detected == res.corruptions_injected
    assert res.corruptions_repaired == res.corruptions_injected
    assert res.open_replica_flips_healed == res.open_replica_flips > 0


def test_drive_loss_readonly_full_slow_and_too_few_drives(tmp_path):
    res = harness.Results(seed=3)
    harness.drive_scenarios(tmp_path, seed=3, res=res)
    _clean(res)
    assert res.drive_losses == 2 and res.drive_loss_data_lost == 0
    assert res.failure_modes["deleted drive dirs offline"] == "ok"
    assert res.failure_modes["too few drives"].startswith("503")
    assert res.failure_modes["out of space"].startswith("507")
    assert res.failure_modes["reads with too few drives to write"] == "ok"
    assert "readonly" in res.failure_modes["read-only drive"]


def test_degraded_reads_return_the_same_bytes(tmp_path):
    res = harness.Results(seed=5)
    harness.speed(tmp_path, seed=5, res=res, mb=16)
    _clean(res)
    assert res.scrub_mb_s > 0 and res.healthy_read_mb_s > 0 and res.degraded_read_mb_s > 0


def test_kill9_cycles_on_a_multi_drive_server(tmp_path):
    res = harness.Results(seed=11)
    harness.kill_cycles(tmp_path, cycles=2, seed=11, res=res, fsck_every=2)
    _clean(res)
    assert res.kill_cycles == 2 and res.acked_objects > 0


def test_power_cuts_under_load_lose_nothing_acknowledged(tmp_path):
    """kill -9 of every process, then every drive rewound to what a power cut would leave (unsynced
    bytes dropped or torn, undurable creates/renames/unlinks undone), alternately 'drop' and 'tear'."""
    res = harness.Results(seed=17)
    harness.power_cycles(tmp_path, cycles=4, seed=17, res=res, fsck_every=2)
    _clean(res)
    assert res.power_cuts == 4 and res.power_cut_modes == {"drop": 2, "tear": 2}
    assert res.acked_objects > 0
    assert res.power_entries_undone > 0, "the cuts undid something: the recording layer saw the load"


def test_power_cuts_that_take_the_metadata_database_too(tmp_path):
    """Every other cut also destroys the metadata database: fsck --restore-meta rebuilds it from the
    copies and the metadata journal the cut left on the drives, and nothing acknowledged is lost."""
    res = harness.Results(seed=19)
    harness.power_cycles(tmp_path, cycles=4, seed=19, res=res, fsck_every=2, lose_meta_every=2)
    _clean(res)
    assert res.power_cuts == 4 and res.power_meta_restores >= 1 and res.acked_objects > 0


def test_metadata_database_lost_and_restored_from_the_drives(tmp_path):
    res = harness.Results(seed=13)
    harness.meta_restore_rounds(tmp_path, rounds=2, seed=13, res=res)
    _clean(res)
    assert res.meta_restores == 2 and res.meta_restore_objects > 0
    assert res.meta_journal_replayed > 0, "the writes after the copy came back from the journal"


@pytest.mark.slow
def test_harness_long_slice(tmp_path):
    assert harness.main(["--cycles", "20", "--rounds", "10", "--seed", "2", "--work", str(tmp_path)]) == 0
