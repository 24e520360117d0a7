"""`exastor fsck`: verify every record and reference; repair; rebuild the index from segments."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from exastor.cliargs import add_data_argument, add_meta_argument, existing_store
from exastor.datadir.lock import DataDirLocked, exclusive
from exastor.datadir.opening import drive_dirs, open_metadata
from exastor.drives import open_drive
from exastor.engine import encryption
from exastor.engine.drives import DriveSet
from exastor.services import fsck, metabackup


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_argument(p)
    p.add_argument("--repair", action="store_true",
                   help="fix reference counts and repoint damaged chunks at valid copies (server must be stopped)")
    p.add_argument("--rebuild-index", action="store_true",
                   help="rebuild the chunk index from the segment files alone (server must be stopped)")
    p.add_argument("--restore-meta", action="store_true",
                   help="replace the metadata database with the newest copy on the drives that verifies (the old "
                        "one is kept aside), then --rebuild-index and --repair (server must be stopped)")
    p.add_argument("--drive", action="append", default=[], metavar="PATH",
                   help="with --rebuild-index or --restore-meta: a drive directory of the store, when the database "
                        "no longer lists its drives (repeat, in the order first given to `serve`)")
    add_meta_argument(p)  # with it, verification only
    p.add_argument("--json", action="store_true", help="machine-readable report")


def _segment_bytes(segments: Path) -> int:
    """Bytes of drive 0's segment files: the progress bar's total."""
    drive = open_drive(segments.parent)
    try:
        names = drive.list("segments")
    except OSError:
        return 0
    total = 0
    for name in names:
        try:
            total += drive.stat(f"segments/{name}").size
        except OSError:
            pass
    return total


def _restore_meta(data: Path, drives: list[Path], quiet: bool) -> tuple[metabackup.Backup, int] | None:
    """Install the newest verified metadata copy from ``drives`` and replay the journal after it
    (services/metabackup.py, meta/journal.py). Returns the copy and how many commits were replayed."""
    (data / "meta").mkdir(mode=0o700, parents=True, exist_ok=True)  # not a drive: scratch for checking copies
    try:
        backup, rejected = metabackup.newest_good(drives, scratch=data / "meta")
    except metabackup.NoBackup as exc:
        print(f"exastor fsck: {exc}", file=sys.stderr)
        return None
    db = data / "meta" / "exastor.sqlite"
    aside = metabackup.install(backup, db)
    chain = metabackup.replay_journal(db, drives, lambda: drive_dirs(data))
    if not quiet:
        for bad, why in rejected:
            print(f"skipped metadata copy {bad.path}: {why}")
        taken = datetime.fromtimestamp(backup.taken_ns / 1e9, UTC).isoformat(timespec="seconds")
        print(f"restored metadata copy taken {taken} from {backup.path}"
              + (f"; the database it replaced is kept in {aside}" if aside else ""))
        print(f"replayed {len(chain.records):,} journaled commits after it"
              + (f" ({chain.orphans} never committed, skipped)" if chain.orphans else "")
              + (f"; {chain.skipped_bytes:,} torn journal bytes stepped over" if chain.skipped_bytes else ""))
    return backup, len(chain.records)


def _check_postgres(args: argparse.Namespace, data: Path) -> int:
    """Verify a store whose metadata is in PostgreSQL (``--meta``): drives and drive servers come from
    the database, --data gives the master key and local drives' base. Repairs run in the gateways
    (the repairer) or against SQLite stores: refused here rather than half done."""
    if args.repair or args.rebuild_index or args.restore_meta:
        print("exastor fsck: with --meta only verification runs (--repair, --rebuild-index and --restore-meta "
              "work on SQLite stores; the gateways' repairer rebuilds bad shards and replicas)", file=sys.stderr)
        return 2
    drive0 = Path(args.drive[0]).expanduser() if args.drive else data / "drive0"
    meta = open_metadata(data, args.meta_url)
    try:
        report = fsck.check(meta, drive0 / "segments", base=data)
    finally:
        meta.close()
    _print_report(args, report)
    return 0 if report.clean else 1


def run(args: argparse.Namespace) -> int:
    data = Path(args.data)
    if args.meta_url:
        return _check_postgres(args, data)
    drives = [Path(p).expanduser() for p in args.drive] or drive_dirs(data)
    segments = drives[0] / "segments"
    if args.restore_meta:
        args.rebuild_index = args.repair = True
    else:
        existing_store(data)
    try:
        with exclusive(data) if (args.repair or args.rebuild_index) else contextlib.nullcontext():
            restored = _restore_meta(data, drives, args.json) if args.restore_meta else None
            if args.restore_meta and restored is None:
                return 2
            meta = open_metadata(data)
            locked = encryption.of(meta).locked
            if locked:  # encrypted records cannot be verified: never report locked data as damaged
                print(f"exastor fsck: the data is encrypted at rest and its keys cannot be opened: {locked}",
                      file=sys.stderr)
                if restored is not None:  # a new --data: the key lives apart from the drives
                    print("exastor fsck: the metadata copy is in place, but rebuilding the index from the "
                          "drives reads the records: put the master key back and run `exastor fsck "
                          "--restore-meta` again before `exastor serve`", file=sys.stderr)
                meta.close()
                return 2
            try:
                with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                              TimeRemainingColumn(), disable=args.json or not sys.stderr.isatty(),
                              console=None) as bar:
                    rebuilt = None
                    if args.rebuild_index:
                        # named drives are registered if the database lost them (idempotent otherwise)
                        known = DriveSet(meta, [Path(p).expanduser() for p in args.drive], adopt=True, vouch=True)
                        known.close()
                        offline = [d for d in known.all if d.state == "offline"]
                        if offline:
                            print("exastor fsck: not rebuilding the index while drives are offline (it would "
                                  "record their data as lost): " + "; ".join(
                                      f"drive {d.id} {d.path}: {d.reason}" for d in offline), file=sys.stderr)
                            return 2
                        task = bar.add_task("rebuilding index", total=_segment_bytes(segments))
                        rebuilt = fsck.rebuild_index(meta, segments, lambda n: bar.advance(task, n))
                    task = bar.add_task("verifying", total=_segment_bytes(segments))
                    report = fsck.check(meta, segments, repair=args.repair, progress=lambda n: bar.advance(task, n))
                    if rebuilt is not None:
                        report.rebuilt_layouts = rebuilt.rebuilt_layouts
                    if restored is not None:
                        report.restored_meta = str(restored[0].path)
                        report.journal_replayed = restored[1]
            finally:
                meta.close()
    except DataDirLocked:
        print("exastor fsck: the server is running on this data directory; stop it before --repair or "
              "--rebuild-index", file=sys.stderr)
        return 2
    _print_report(args, report)
    return 0 if report.clean else 1


def _print_report(args: argparse.Namespace, report: fsck.FsckReport) -> None:
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        mb = report.bytes_checked / 1e6
        print(f"checked {report.chunks_checked:,} chunks ({mb:,.1f} MB) in {report.seconds:.1f}s"
              f" ({mb / max(report.seconds, 1e-9):,.0f} MB/s)")
        # Every counter that can make the verdict "PROBLEMS FOUND" is printed, so the verdict is
        # never left without the line that explains it.
        print(f"corrupt chunks      : {len(report.corrupt_chunks)}")
        print(f"missing chunks      : {len(report.missing_chunks)}")
        print(f"refcount mismatches : {report.refcount_mismatches}")
        print(f"degraded chunks     : {report.degraded_chunks} (readable only around a bad replica or shard)")
        print(f"bad shards          : {len(report.bad_shards)}")
        for line in report.bad_shards[:20]:
            print(f"  {line}")
        if report.unavailable_chunks or report.offline_drives:
            print(f"unavailable chunks  : {report.unavailable_chunks} (on offline drives: bring them back)")
            for line in report.offline_drives:
                print(f"  offline drive {line}")
        if args.rebuild_index:
            print(f"rebuilt layouts     : {report.rebuilt_layouts}")
        if args.repair:
            print(f"repaired refcounts  : {report.repaired_refcounts}")
            print(f"relocated chunks    : {report.relocated_chunks}")
            print(f"repaired shards     : {report.repaired_shards}")
        print(f"lost chunks         : {len(report.lost_chunks)}")
        if report.damaged_objects:
            print(f"damaged objects     : {len(report.damaged_objects)}")
            for name in report.damaged_objects[:20]:
                print(f"  {name}")
            if len(report.damaged_objects) > 20:
                print(f"  ... and {len(report.damaged_objects) - 20:,} more (--json lists all)")
        print("clean" if report.clean else "PROBLEMS FOUND")
        if not report.clean and not args.repair:
            print("with the server stopped, `exastor fsck --repair` rebuilds bad replicas and shards from the good "
                  "copies and fixes reference counts (the running server's repairer does the former too)")

