"""namespace/listing.py over both backends: the delimiter listing reads a few rows after each
common prefix it seeks past (not a full page) and still returns exactly what a brute-force roll-up
of the keys says, page after page, for every page size."""

from __future__ import annotations

from typing import Any

from metacontract import backend, bucket, meta, run  # noqa: F401 - backend, meta: fixtures

from exastor.namespace import listing

KEYS = sorted(
    [f"a/{d:02d}/{n}" for d in range(30) for n in range(3)]   # 30 prefixes under a/
    + [f"a/x{n:04d}" for n in range(70)]                      # plain keys between and after them
    + [f"b{n:03d}" for n in range(25)] + ["a/", "c/d/e"])


def _fill(meta: Any) -> None:
    run(meta.create_bucket(bucket()))
    rows = [("bkt", k, n + 1) for n, k in enumerate(KEYS)]
    meta.runner.write_sync(lambda cur: cur.executemany(
        "INSERT INTO objects (bucket, key, version_id, seq, is_latest, delete_marker, size, etag, mtime_ns, owner, "
        "attrs, manifest) VALUES (?, ?, 'null', ?, 1, 0, 0, 'e', 1, 'alice', '{}', ?)",
        [(*r, b"") for r in rows]))


def _expected(prefix: str, delimiter: str) -> list[str]:
    out: list[str] = []
    for key in KEYS:
        if not key.startswith(prefix):
            continue
        i = key.find(delimiter, len(prefix)) if delimiter else -1
        entry = key[: i + len(delimiter)] if i >= 0 else key
        if not out or out[-1] != entry:
            out.append(entry)
    return out


def test_delimiter_listing_pages_match_brute_force(meta, monkeypatch):
    _fill(meta)
    read: list[int] = []
    real = meta.list_latest

    def counting(bucket: str, prefix: str, after: str | None, limit: int) -> Any:
        rows = real(bucket, prefix, after, limit)
        read.append(len(rows))
        return rows

    monkeypatch.setattr(meta, "list_latest", counting)
    for prefix, delimiter in (("", "/"), ("a/", "/"), ("a/", ""), ("", ""), ("a/0", "/"), ("zz", "/")):
        for max_keys in (1, 2, 7, 31, 1000):
            got: list[str] = []
            cursor = None
            for _ in range(1000):
                page = listing.list_objects(meta, "bkt", prefix=prefix, delimiter=delimiter, cursor=cursor,
                                            max_keys=max_keys)
                entries = sorted([o.key for o in page.objects] + page.prefixes)
                assert len(entries) <= max_keys
                got += entries
                if not page.truncated:
                    break
                cursor = page.next_cursor
            assert got == _expected(prefix, delimiter), (prefix, delimiter, max_keys)
    read.clear()
    whole = listing.list_objects(meta, "bkt", prefix="a/", delimiter="/", max_keys=1000)
    assert len(whole.prefixes) == 30
    # 30 seeks past a prefix: a few rows each, not a full page each (that was 30 x 100+ rows here)
    assert sum(read) < 30 * 8 + 2 * len(KEYS), read
