"""Every operation of the metadata contract (meta/contract.py Metadata, meta/blob.py), one backend at a
time: the same assertions hold on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from metacontract import (  # noqa: F401 - backend, meta: fixtures
    backend,
    bucket,
    chunk_locations,
    fp,
    held_and_counted,
    manifest_of,
    meta,
    obj,
    run,
    vid_factory,
)

from exastor import errors
from exastor.meta import blob as bm
from exastor.meta.contract import TxCheck, add_refs, register_chunks
from exastor.meta.records import ObjectVersion, Part, Upload, User


def test_users(meta):
    meta.add_user(User("bob", "AKB", "s1", 2))
    meta.add_user(User("alice", "AKA", "s2", 1))
    with pytest.raises(errors.InvalidArgument):
        meta.add_user(User("bob", "AKX", "s3", 3))
    assert [u.name for u in meta.list_users()] == ["alice", "bob"]
    assert meta.user_by_access_key("AKB") == User("bob", "AKB", "s1", 2)
    assert meta.user_by_access_key("nope") is None
    assert meta.remove_user("bob") == [] and meta.remove_user("bob") is None  # [] buckets handed over; None: no user
    assert meta.user_by_access_key("AKB") is None


def test_user_emails(meta):
    """ACL grants by e-mail resolve through these (migrations sqlite/0004, postgres/0002)."""
    meta.add_user(User("bob", "AKB", "s1", 2))
    meta.add_user(User("eve", "AKE", "s2", 3))
    meta.set_user_email("bob", "Bob@Example.com")
    assert meta.user_by_email(" bob@example.COM ") == "bob" and meta.user_by_email("x@example.com") is None
    with pytest.raises(errors.InvalidArgument):  # one user per address
        meta.set_user_email("eve", "bob@example.com")
    with pytest.raises(errors.InvalidArgument):  # no such user
        meta.set_user_email("nobody", "n@example.com")
    meta.set_user_email("bob", "robert@example.com")  # one address per user: the old one goes
    assert meta.user_by_email("bob@example.com") is None and meta.user_by_email("robert@example.com") == "bob"
    meta.remove_user("bob")
    assert meta.user_by_email("robert@example.com") is None


def test_buckets(meta):
    run(meta.create_bucket(bucket("b2", owner="bob")))
    run(meta.create_bucket(bucket("b1")))
    with pytest.raises(errors.BucketExists) as exc:
        run(meta.create_bucket(bucket("b1")))
    assert exc.value.info["owned_by_caller"] is True
    with pytest.raises(errors.BucketExists) as exc:
        run(meta.create_bucket(bucket("b1", owner="bob")))
    assert exc.value.info["owned_by_caller"] is False
    assert [b.name for b in meta.list_buckets()] == ["b1", "b2"]
    assert [b.name for b in meta.list_buckets("bob")] == ["b2"]
    assert meta.get_bucket("b1").owner == "alice" and meta.get_bucket("zz") is None

    got = run(meta.update_bucket("b1", versioning="Enabled", attrs_patch={"tags": {"a": "1"}, "x": 1}))
    assert got.versioning == "Enabled" and got.attrs == {"tags": {"a": "1"}, "x": 1}
    run(meta.update_bucket("b1", attrs_patch={"x": None}))
    assert meta.get_bucket("b1").attrs == {"tags": {"a": "1"}}

    def refuse(b):
        raise errors.PreconditionFailed("no")

    with pytest.raises(errors.PreconditionFailed):
        run(meta.update_bucket("b1", versioning="Suspended", check=refuse))
    assert meta.get_bucket("b1").versioning == "Enabled"
    with pytest.raises(errors.BucketNotFound):
        run(meta.update_bucket("zz", versioning="Enabled"))

    run(meta.put_object(obj("b1", "k"), make_version_id=vid_factory()))
    with pytest.raises(errors.BucketNotEmpty):
        run(meta.delete_bucket("b1"))
    run(meta.delete_bucket("b2"))
    with pytest.raises(errors.BucketNotFound):
        run(meta.delete_bucket("b2"))
    assert meta.get_bucket("b2") is None


def test_put_get_unversioned_replaces_null_and_releases_refs(meta):
    run(meta.create_bucket(bucket()))
    a, b = fp(1), fp(2)
    run(meta.put_object(obj("bkt", "k", manifest_of(a, a, b)), new_chunks=chunk_locations(meta, [a, b]),
                        make_version_id=vid_factory()))
    got = meta.get_object("bkt", "k")
    assert got.version_id == "null" and got.is_latest and got.manifest == manifest_of(a, a, b)
    assert meta.lookup_chunks([a, b, fp(3)]).keys() == {a, b}
    run(meta.put_object(obj("bkt", "k", manifest_of(b)), make_version_id=vid_factory()))
    assert meta.get_object("bkt", "k").manifest == manifest_of(b)
    expected, actual = held_and_counted(meta)
    assert expected == actual == {b: 1}
    assert meta.get_object("bkt", "nope") is None


def test_versions_delete_markers_and_promotion(meta):
    run(meta.create_bucket(bucket(versioning="Enabled")))
    v1 = run(meta.put_object(obj("bkt", "k", etag="1"), make_version_id=vid_factory()))
    v2 = run(meta.put_object(obj("bkt", "k", etag="2"), make_version_id=vid_factory()))
    assert v2.seq > v1.seq
    assert meta.get_object("bkt", "k").etag == "2"
    assert meta.get_object("bkt", "k", v1.version_id).etag == "1"
    marker, created = run(meta.delete_object("bkt", "k", None, make_version_id=vid_factory(), owner="alice"))
    assert created and marker.delete_marker and meta.get_object("bkt", "k").delete_marker
    assert meta.list_latest("bkt", "", None, 10) == []
    versions = meta.list_versions("bkt", "", None, None, 10)
    assert [v.version_id for v in versions] == [marker.version_id, v2.version_id, v1.version_id]
    assert [v.is_latest for v in versions] == [True, False, False]
    # removing the marker by its id promotes v2 again
    victim, created = run(meta.delete_object("bkt", "k", marker.version_id, make_version_id=vid_factory(),
                                             owner="alice"))
    assert victim.version_id == marker.version_id and not created
    assert meta.get_object("bkt", "k").version_id == v2.version_id
    page = meta.list_versions("bkt", "", "k", v2.seq, 10)
    assert [v.version_id for v in page] == [v1.version_id]
    assert run(meta.delete_object("bkt", "k", "nope", make_version_id=vid_factory(), owner="a")) == (None, False)


def test_delete_unversioned(meta):
    run(meta.create_bucket(bucket()))
    assert run(meta.delete_object("bkt", "k", None, make_version_id=vid_factory(), owner="a")) == (None, False)
    run(meta.put_object(obj("bkt", "k"), make_version_id=vid_factory()))
    gone, created = run(meta.delete_object("bkt", "k", None, make_version_id=vid_factory(), owner="a"))
    assert gone.key == "k" and not created and meta.get_object("bkt", "k") is None


def test_conditions_run_inside_the_transaction(meta):
    run(meta.create_bucket(bucket()))

    def if_none_match(current):
        if current is not None:
            raise errors.PreconditionFailed("exists")

    run(meta.put_object(obj("bkt", "k", etag="1"), check=if_none_match, make_version_id=vid_factory()))
    with pytest.raises(errors.PreconditionFailed):
        run(meta.put_object(obj("bkt", "k", etag="2"), check=if_none_match, make_version_id=vid_factory()))
    with pytest.raises(errors.PreconditionFailed):
        meta.precheck("bkt", "k", if_none_match)
    meta.precheck("bkt", "other", if_none_match)

    class LeaseHeld(TxCheck):
        def run(self, cur: Any, current: Any) -> None:
            if bm.get_lease(cur, "bkt", "k") is not None:
                raise errors.PreconditionFailed("leased")

    run(meta.runner.write(lambda cur: bm.put_lease(cur, "bkt", "k", bm.Lease("L", -1, None, "leased", None))))
    with pytest.raises(errors.PreconditionFailed):
        run(meta.delete_object("bkt", "k", None, make_version_id=vid_factory(), owner="a", check=LeaseHeld()))
    assert meta.get_object("bkt", "k").etag == "1"


def test_update_object_attrs(meta):
    run(meta.create_bucket(bucket(versioning="Enabled")))
    v1 = run(meta.put_object(obj("bkt", "k"), make_version_id=vid_factory()))
    got = run(meta.update_object_attrs("bkt", "k", None, {"tags": {"t": "1"}}))
    assert got.attrs == {"tags": {"t": "1"}}
    run(meta.update_object_attrs("bkt", "k", v1.version_id, {"tags": None, "x": 2}))
    assert meta.get_object("bkt", "k").attrs == {"x": 2}
    with pytest.raises(errors.ObjectNotFound):
        run(meta.update_object_attrs("bkt", "nope", None, {"x": 1}))
    with pytest.raises(errors.VersionNotFound):
        run(meta.update_object_attrs("bkt", "k", "nope", {"x": 1}))
    run(meta.delete_object("bkt", "k", None, make_version_id=vid_factory(), owner="a"))
    with pytest.raises(errors.MethodNotAllowed):
        run(meta.update_object_attrs("bkt", "k", None, {"x": 1}))


def test_listing_is_bytewise_ordered(meta):
    """Keys compare as UTF-8 bytes (code points) on both backends, whatever the database's locale."""
    run(meta.create_bucket(bucket()))
    keys = ["a", "B", "b", "a/b", "a-b", "é", "z", "Z", "\u4e2d", "\U0001f600", "a b", "_", "~"]
    for k in keys:
        run(meta.put_object(obj("bkt", k), make_version_id=vid_factory()))
    listed = [o.key for o in meta.list_latest("bkt", "", None, 100)]
    assert listed == sorted(keys, key=lambda k: k.encode())
    assert [o.key for o in meta.list_latest("bkt", "a", None, 100)] == ["a", "a b", "a-b", "a/b"]
    assert [o.key for o in meta.list_latest("bkt", "a", "a b", 2)] == ["a-b", "a/b"]
    assert [o.key for o in meta.list_latest("bkt", "", "z", 100)] == ["~", "é", "\u4e2d", "\U0001f600"]
    assert all(o.manifest is None for o in meta.list_latest("bkt", "", None, 100))


def test_multipart(meta):
    run(meta.create_bucket(bucket()))
    with pytest.raises(errors.BucketNotFound):
        run(meta.create_upload(Upload("u0", "nope", "k", 1, "alice", {})))
    run(meta.create_upload(Upload("u1", "bkt", "k", 1, "alice", {"ct": "x"})))
    run(meta.create_upload(Upload("u2", "bkt", "j", 2, "alice", {})))
    assert meta.get_upload("u1") == Upload("u1", "bkt", "k", 1, "alice", {"ct": "x"})
    assert [u.upload_id for u in meta.list_uploads("bkt", "", None, None, 10)] == ["u2", "u1"]
    assert [u.upload_id for u in meta.list_uploads("bkt", "", "j", "u2", 10)] == ["u1"]
    a, b, c = fp(1), fp(2), fp(3)
    locs = chunk_locations(meta, [a, b, c])
    run(meta.put_part(Part("u1", 1, 100, "p1", 1, {}, manifest_of(a)), locs))
    run(meta.put_part(Part("u1", 2, 100, "p2", 1, {}, manifest_of(c)), []))
    run(meta.put_part(Part("u1", 2, 100, "p2b", 1, {}, manifest_of(b)), []))  # replaces part 2
    run(meta.put_part(Part("u1", 3, 100, "p3", 1, {}, manifest_of(c)), []))
    with pytest.raises(errors.UploadNotFound):
        run(meta.put_part(Part("nope", 1, 1, "x", 1, {}, b""), []))
    assert [(p.part_number, p.etag) for p in meta.list_parts("u1", 0, 10)] == [(1, "p1"), (2, "p2b"), (3, "p3")]
    assert meta.list_parts("u1", 1, 1)[0].manifest is None
    assert held_and_counted(meta)[0] == held_and_counted(meta)[1] == {a: 1, b: 1, c: 1}

    def assemble(upload, parts):
        chosen = [1, 2]
        whole = b"".join(parts[n].manifest for n in chosen)
        return obj(upload.bucket, upload.key, whole, etag="mp"), chosen

    done = run(meta.complete_upload("u1", assemble, make_version_id=vid_factory()))
    assert done.etag == "mp" and meta.get_upload("u1") is None and meta.list_parts("u1", 0, 10) == []
    expected, actual = held_and_counted(meta)
    assert expected == actual == {a: 1, b: 1}  # part 3, left out, released c
    with pytest.raises(errors.UploadNotFound):
        run(meta.complete_upload("u1", assemble, make_version_id=vid_factory()))
    run(meta.abort_upload("u2"))
    with pytest.raises(errors.UploadNotFound):
        run(meta.abort_upload("u2"))


def test_delete_bucket_releases_pending_uploads(meta):
    run(meta.create_bucket(bucket()))
    a = fp(7)
    run(meta.create_upload(Upload("u", "bkt", "k", 1, "alice", {})))
    run(meta.put_part(Part("u", 1, 100, "p", 1, {}, manifest_of(a)), chunk_locations(meta, [a])))
    run(meta.delete_bucket("bkt"))
    assert meta.get_upload("u") is None
    expected, actual = held_and_counted(meta)
    assert expected == actual == {}


def test_chunks_and_segments(meta):
    seg = meta.new_segment_sync()
    seg2 = meta.new_segment_sync()
    assert seg2 > seg
    meta.set_segment_state_sync(seg, "sealed", 1234)
    states = {s: (st, size) for s, st, size in meta.segments()}
    assert states[seg] == ("sealed", 1234) and states[seg2][0] == "open"
    many = [fp(i) for i in range(1200)]  # more than one IN (...) batch
    from exastor.meta.records import ChunkLocation
    locs = [ChunkLocation(f, seg2, i, 1, 1, 0) for i, f in enumerate(many)]
    meta.runner.write_sync(lambda cur: register_chunks(cur, locs))
    found = meta.lookup_chunks(many + [fp(99999)])
    assert len(found) == 1200 and found[many[5]].offset == 5
    meta.set_segment_state_sync(seg2, "deleted", 0)
    with pytest.raises(errors.Unavailable):  # compacted meanwhile: the write must be retried
        meta.runner.write_sync(lambda cur: register_chunks(cur, [ChunkLocation(fp(5000), seg2, 0, 1, 1, 0)]))
    from collections import Counter
    with pytest.raises(errors.Unavailable):  # a referenced chunk reclaimed concurrently
        meta.runner.write_sync(lambda cur: add_refs(cur, Counter({fp(424242): 1})))


def test_blob_blocks_snapshots_deleted_settings(meta):
    run(meta.create_bucket(bucket("ctr")))
    a, b = fp(11), fp(12)
    locs = chunk_locations(meta, [a, b])

    def write(fn):
        return meta.runner.write_sync(fn)

    write(lambda cur: bm.put_block(cur, "ctr", "k", bm.Block("QQ==", 100, "m", 1, manifest_of(a)), locs))
    write(lambda cur: bm.put_block(cur, "ctr", "k", bm.Block("Qg==", 100, "m", 2, manifest_of(b)), []))
    write(lambda cur: bm.put_block(cur, "ctr", "k", bm.Block("Qg==", 100, "m", 3, manifest_of(a)), []))
    blocks = meta.runner.read(lambda cur: bm.blocks(cur, "ctr", "k"))
    assert [(x.block_id, x.manifest) for x in blocks] == [("QQ==", None), ("Qg==", None)]
    assert meta.runner.read(lambda cur: bm.keys_with_blocks(cur, "ctr", "")) == [("k", 2, 3)]
    assert held_and_counted(meta) == ({a: 2}, {a: 2})
    write(lambda cur: bm.drop_blocks(cur, "ctr", "k"))
    assert meta.runner.read(lambda cur: bm.blocks(cur, "ctr", "k")) == []
    write(lambda cur: bm.put_block(cur, "ctr", "old", bm.Block("QQ==", 1, "m", 5, manifest_of(a)), []))
    assert write(lambda cur: bm.purge_blocks_before(cur, 6)) == 1

    run(meta.put_object(obj("ctr", "k", manifest_of(a)), make_version_id=vid_factory()))
    live = meta.runner.read(lambda cur: bm.latest(cur, "ctr", "k"))
    snap = bm.Snapshot("ctr", "k", "2026-01-01T00:00:00.0000000Z", 0, "e", 1, {"m": 1}, live.manifest)
    write(lambda cur: bm.add_snapshot(cur, snap))
    assert meta.runner.read(lambda cur: bm.get_snapshot(cur, "ctr", "k", snap.snapshot)) == snap
    assert [s.snapshot for s in meta.runner.read(lambda cur: bm.snapshots(cur, "ctr", prefix="k"))] == [snap.snapshot]
    snap.attrs = {"m": 2}
    write(lambda cur: bm.update_snapshot_attrs(cur, snap))
    assert meta.runner.read(lambda cur: bm.snapshots(cur, "ctr", "k"))[0].attrs == {"m": 2}
    assert held_and_counted(meta) == ({a: 2}, {a: 2})

    # soft-delete the blob: its references move to blob_deleted unchanged
    def soft(cur):
        cur_obj = bm.latest(cur, "ctr", "k")
        bm.remove_latest(cur, cur_obj, keep_refs=True)
        bm.soft_delete(cur, bm.Snapshot("ctr", "k", "", cur_obj.size, cur_obj.etag, cur_obj.mtime_ns,
                                        cur_obj.attrs, cur_obj.manifest), 10, 100)
    write(soft)
    assert meta.get_object("ctr", "k") is None
    gone = meta.runner.read(lambda cur: bm.deleted(cur, "ctr", "k", with_manifest=True))
    assert [(s.snapshot, t) for s, t in gone] == [("", 10)] and gone[0][0].manifest == manifest_of(a)
    assert held_and_counted(meta) == ({a: 2}, {a: 2})
    write(lambda cur: bm.forget_deleted(cur, "ctr", "k", "", keep_refs=False))
    write(lambda cur: bm.remove_snapshot(cur, snap))
    assert held_and_counted(meta) == ({}, {})
    write(lambda cur: bm.soft_delete(cur, bm.Snapshot("ctr", "z", "", 0, "e", 1, {}, manifest_of(b)), 1, 5))
    add = meta.runner.write_sync(lambda cur: add_refs(cur, __import__("collections").Counter({b: 1})))
    assert add is None
    assert write(lambda cur: bm.purge_deleted_before(cur, 6)) == 1
    assert held_and_counted(meta) == ({}, {})

    write(lambda cur: bm.put_setting(cur, "props", "<x/>"))
    write(lambda cur: bm.put_setting(cur, "props", "<y/>"))
    assert meta.runner.read(lambda cur: bm.get_setting(cur, "props")) == "<y/>"
    assert meta.runner.read(lambda cur: bm.get_setting(cur, "none")) is None


def test_blob_named_operations(meta):
    """The Blob writes of meta/blob.py (each one transaction): blocks, block list, append, seal,
    properties, snapshots, soft delete and undelete, Delete Container; the references every manifest
    holds stay what fsck recomputes after each."""
    run(meta.create_bucket(bucket("ctr")))
    a, b, c = fp(21), fp(22), fp(23)
    locs = chunk_locations(meta, [a, b, c])
    vid = vid_factory()
    M1, M2, M3 = "aa" * 16, "bb" * 16, "cc" * 16  # the blocks' MD5s (hex)

    run(bm.stage_block(meta, "ctr", "k", bm.Block("QQ==", 100, M1, 1, manifest_of(a)), locs[:1], None))
    run(bm.stage_block(meta, "ctr", "k", bm.Block("Qg==", 100, M2, 2, manifest_of(b)), locs[1:2], None,
                       bucket_must_exist=False))
    with pytest.raises(errors.BucketNotFound):
        run(bm.stage_block(meta, "nope", "k", bm.Block("QQ==", 0, "m", 1, b""), [], None))
    with pytest.raises(bm.BlobStateError) as refused:
        run(bm.commit_block_list(meta, "ctr", "k", [("Uncommitted", "Qw==")], {}, "alice", None, vid))
    assert refused.value.info["code"] == "InvalidBlockList"
    blob = run(bm.commit_block_list(meta, "ctr", "k", [("Latest", "Qg=="), ("Uncommitted", "QQ==")],
                                    {"blob-type": "BlockBlob"}, "alice", None, vid))
    assert blob.size == 200 and blob.etag.endswith("-2") and blob.owner == "alice"
    assert bm.committed_blocks(blob) == [("Qg==", 100, M2), ("QQ==", 100, M1)]
    assert meta.runner.read(lambda cur: bm.blocks(cur, "ctr", "k")) == []  # the uncommitted list is discarded
    assert held_and_counted(meta) == ({a: 1, b: 1}, {a: 1, b: 1})

    # a check runs inside the transaction, on the blob it then changes
    def refuse(current):
        raise errors.PreconditionFailed("no")
    with pytest.raises(errors.PreconditionFailed):
        run(bm.patch_blob_attrs(meta, "ctr", "k", {"x": 1}, refuse, lambda o: None))
    patched = run(bm.patch_blob_attrs(meta, "ctr", "k", {"meta": {"a": "1"}}, None, lambda o: "md5!"))
    assert patched.attrs["meta"] == {"a": "1"} and patched.attrs["content-md5"] == "md5!"
    assert patched.etag != blob.etag and patched.etag.endswith("-2")
    assert meta.get_object("ctr", "k").attrs["meta"] == {"a": "1"}

    snap = run(bm.take_snapshot(meta, "ctr", "k", {"s": "1"}, None))
    assert snap.attrs["meta"] == {"s": "1"} and snap.manifest == patched.manifest
    assert run(bm.patch_snapshot_attrs(meta, "ctr", "k", snap.snapshot, {"meta": None})).attrs.get("meta") is None
    with pytest.raises(errors.ObjectNotFound):
        run(bm.patch_snapshot_attrs(meta, "ctr", "k", "2000-01-01T00:00:00.0000000Z", {}))
    assert held_and_counted(meta) == ({a: 2, b: 2}, {a: 2, b: 2})

    # soft delete with the snapshots, then undelete: references move, never drop
    with pytest.raises(bm.BlobStateError) as refused:
        run(bm.delete_blob(meta, "ctr", "k", snapshot=None, snapshots_mode=None, soft_until_ns=None,
                           now_ns=10, check=None))
    assert refused.value.info["code"] == "SnapshotsPresent"
    run(bm.delete_blob(meta, "ctr", "k", snapshot=None, snapshots_mode="include", soft_until_ns=10**18,
                       now_ns=10, check=None))
    assert meta.get_object("ctr", "k") is None
    assert sorted(s.snapshot for s, _ in bm.list_deleted(meta, "ctr", "")) == ["", snap.snapshot]
    assert held_and_counted(meta) == ({a: 2, b: 2}, {a: 2, b: 2})
    run(bm.undelete_blob(meta, "ctr", "k", "alice", vid))
    assert meta.get_object("ctr", "k").etag == patched.etag and bm.list_deleted(meta, "ctr", "") == []
    assert [s.snapshot for s in bm.list_snapshots(meta, "ctr", "")] == [snap.snapshot]
    run(bm.delete_blob(meta, "ctr", "k", snapshot=snap.snapshot, snapshots_mode=None, soft_until_ns=None,
                       now_ns=11, check=None))
    assert held_and_counted(meta) == ({a: 1, b: 1}, {a: 1, b: 1})

    # append blobs
    run(meta.put_object(ObjectVersion("ctr", "ap", "", 0, True, False, 0, "e0", 1, "alice",
                                      {"blob-type": "AppendBlob"}, b""), make_version_id=vid))
    appended, at = run(bm.append_block(meta, "ctr", "ap", M3, 100, manifest_of(c), locs[2:], append_pos=0,
                                       max_size=None, check=None, make_version_id=vid))
    assert (appended.size, at, appended.attrs["committed_blocks"]) == (100, 0, 1)
    with pytest.raises(bm.BlobStateError) as refused:
        run(bm.append_block(meta, "ctr", "ap", M3, 100, manifest_of(c), [], append_pos=0, max_size=None,
                            check=None, make_version_id=vid))
    assert refused.value.info["code"] == "AppendPositionConditionNotMet"
    sealed = run(bm.seal_append_blob(meta, "ctr", "ap", None))
    assert sealed.attrs["sealed"] and sealed.etag == appended.etag
    with pytest.raises(bm.BlobStateError) as refused:
        run(bm.seal_append_blob(meta, "ctr", "k", None))
    assert refused.value.info["code"] == "InvalidBlobType"
    assert held_and_counted(meta) == ({a: 1, b: 1, c: 1}, {a: 1, b: 1, c: 1})

    # the hard delete drops the blob's references, its blocks and its lease
    run(bm.stage_block(meta, "ctr", "k", bm.Block("QQ==", 100, M1, 5, manifest_of(a)), [], None))
    run(bm.change_lease(meta, "ctr", "k", "acquire", lease_id=None, proposed_id="L", duration=-1,
                        break_period=None, condition=None))
    run(bm.delete_blob(meta, "ctr", "k", snapshot=None, snapshots_mode=None, soft_until_ns=None, now_ns=12,
                       check=None))
    assert bm.read_lease(meta, "ctr", "k") is None and bm.list_keys_with_blocks(meta, "ctr", "") == []
    assert held_and_counted(meta) == ({c: 1}, {c: 1})

    with pytest.raises(errors.PreconditionFailed):
        run(bm.remove_container(meta, "ctr", refuse))
    run(bm.remove_container(meta, "ctr", None))
    assert meta.runner.read(lambda cur: bm.get_bucket(cur, "ctr")) is None
    assert held_and_counted(meta) == ({}, {})


def test_blob_lease_state_machine(meta):
    """Lease Blob / Lease Container's actions through meta/blob.py's change_lease."""
    run(meta.create_bucket(bucket("ctr")))
    run(meta.put_object(obj("ctr", "k"), make_version_id=vid_factory()))

    def act(action, key="k", **kw):
        args = {"lease_id": None, "proposed_id": None, "duration": -1, "break_period": None, "condition": None}
        return run(bm.change_lease(meta, "ctr", key, action, **{**args, **kw}))

    def refused(action, code, key="k", **kw):
        with pytest.raises(bm.BlobStateError) as exc:
            act(action, key, **kw)
        assert exc.value.info["code"] == code

    with pytest.raises(errors.ObjectNotFound):
        act("acquire", "missing")
    refused("break", "LeaseNotPresentWithLeaseOperation")
    refused("renew", "LeaseNotPresentWithLeaseOperation", lease_id="X")
    got = act("acquire", duration=15)
    assert got.lease_id and got.break_seconds is None
    assert bm.lease_state(bm.read_lease(meta, "ctr", "k")) == "leased"
    refused("acquire", "LeaseAlreadyPresent", proposed_id="other")
    assert act("acquire", proposed_id=got.lease_id, duration=15).lease_id == got.lease_id  # the same id: renewed
    refused("renew", "LeaseIdMismatchWithLeaseOperation", lease_id="X")
    assert act("renew", lease_id=got.lease_id).lease_id == got.lease_id
    assert act("change", lease_id=got.lease_id, proposed_id="P").lease_id == "P"
    assert act("break", break_period=10).break_seconds == 10
    assert bm.lease_state(bm.read_lease(meta, "ctr", "k")) == "breaking"
    refused("acquire", "LeaseIsBreakingAndCannotBeAcquired")
    refused("change", "LeaseIsBreakingAndCannotBeChanged", lease_id="P", proposed_id="Q")
    refused("renew", "LeaseIsBrokenAndCannotBeRenewed", lease_id="P")
    assert act("break", break_period=0).break_seconds == 0
    assert bm.lease_state(bm.read_lease(meta, "ctr", "k")) == "broken"
    assert act("release", lease_id="P") == bm.LeaseChange()
    assert bm.read_lease(meta, "ctr", "k") is None

    def no_container(current):
        raise errors.PreconditionFailed("dates")
    with pytest.raises(errors.PreconditionFailed):
        act("acquire", "", condition=no_container)
    assert act("acquire", "", proposed_id="C").lease_id == "C"
    assert bm.read_container_leases(meta) == {"ctr": bm.read_lease(meta, "ctr", "")}
    with pytest.raises(ValueError):
        act("steal")


def test_blob_leases_and_delete_container(meta):
    run(meta.create_bucket(bucket("ctr")))
    lease = bm.Lease("L1", 15, 10**18, "leased", None)
    meta.runner.write_sync(lambda cur: bm.put_lease(cur, "ctr", "", lease))
    meta.runner.write_sync(lambda cur: bm.put_lease(cur, "ctr", "a", lease))
    meta.runner.write_sync(lambda cur: bm.put_lease(cur, "ctr", "c", bm.Lease("L2", -1, None, "broken", 5)))
    assert meta.runner.read(lambda cur: bm.get_lease(cur, "ctr", "a")) == lease
    assert set(meta.runner.read(lambda cur: bm.leases_between(cur, "ctr", "a", "b"))) == {"a"}
    assert meta.runner.read(lambda cur: bm.container_leases(cur)) == {"ctr": lease}
    meta.runner.write_sync(lambda cur: bm.delete_lease(cur, "ctr", "a"))
    assert meta.runner.read(lambda cur: bm.get_lease(cur, "ctr", "a")) is None
    assert meta.runner.read(lambda cur: bm.bucket_exists(cur, "ctr"))

    a = fp(21)
    run(meta.put_object(obj("ctr", "k", manifest_of(a)), new_chunks=chunk_locations(meta, [a]),
                        make_version_id=vid_factory()))
    run(meta.create_upload(Upload("u", "ctr", "k2", 1, "alice", {})))
    run(meta.put_part(Part("u", 1, 1, "p", 1, {}, manifest_of(a)), []))
    meta.runner.write_sync(lambda cur: bm.put_block(cur, "ctr", "k3", bm.Block("QQ==", 1, "m", 1, manifest_of(a)), []))
    meta.runner.write_sync(lambda cur: bm.delete_container(cur, "ctr"))
    assert meta.get_bucket("ctr") is None and meta.get_upload("u") is None
    assert meta.runner.read(lambda cur: bm.get_lease(cur, "ctr", "c")) is None
    assert held_and_counted(meta) == ({}, {})


def test_update_latest_keeps_bytes(meta):
    run(meta.create_bucket(bucket()))
    run(meta.put_object(obj("bkt", "k", etag="1"), make_version_id=vid_factory()))
    current = meta.runner.read(lambda cur: bm.latest(cur, "bkt", "k"))
    current.attrs, current.etag, current.mtime_ns = {"md": "x"}, "2", 9
    meta.runner.write_sync(lambda cur: bm.update_latest(cur, current))
    got = meta.get_object("bkt", "k")
    assert (got.attrs, got.etag, got.mtime_ns) == ({"md": "x"}, "2", 9)
    assert meta.runner.read(lambda cur: bm.get_bucket(cur, "bkt")).name == "bkt"
