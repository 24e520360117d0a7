"""Leases and blob index tags as Azure answers them, with azure-storage-blob against the real server:
lease ids in every GUID form Azure reads, break periods (``breaking``, then ``broken``), x-ms-if-tags
on every operation Azure takes it on, and Find Blobs by Tags' expression rules."""

from __future__ import annotations

import time
import uuid

import pytest
from _blob_target import unique
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobBlock, BlobLeaseClient, BlobServiceClient

from api.test_blob_sdk import raw


@pytest.fixture(scope="module")
def svc(exastor_server) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(exastor_server.connection_string, retry_total=0)


@pytest.fixture
def cc(svc):
    client = svc.create_container(unique())
    yield client
    for blob in client.list_blobs():
        try:
            BlobLeaseClient(client.get_blob_client(blob.name)).break_lease(0)
        except HttpResponseError:
            pass
    client.delete_container()


def error_of(fn) -> tuple[int, str | None]:
    with pytest.raises(HttpResponseError) as ei:
        fn()
    return ei.value.status_code, ei.value.error_code


@pytest.mark.parametrize("form", ["N", "D", "B", "P", "upper"])
def test_lease_ids_in_every_guid_form(cc, form):
    guid = uuid.uuid4()
    given = {"N": guid.hex, "D": str(guid), "B": f"{{{guid}}}", "P": f"({guid})",
             "upper": str(guid).upper()}[form]
    blob = cc.upload_blob("leased", b"v1")
    lease = blob.acquire_lease(lease_duration=-1, lease_id=given)
    assert lease.id == str(guid)  # kept and answered hyphenated, as .NET's Guid prints it
    # The same id in another form is the same lease.
    blob.upload_blob(b"v2", overwrite=True, lease=guid.hex.upper())
    blob.set_blob_metadata({"k": "v"}, lease=f"{{{guid}}}")
    assert error_of(lambda: blob.upload_blob(b"v3", overwrite=True)) == (412, "LeaseIdMissing")
    BlobLeaseClient(blob, lease_id=given).release()
    blob.upload_blob(b"v4", overwrite=True)


def test_lease_id_that_is_no_guid_is_refused(cc):
    blob = cc.upload_blob("b", b"x")
    for bad in ("not-a-guid", uuid.uuid4().hex[:31], f"{{{uuid.uuid4()})", f"urn:uuid:{uuid.uuid4()}"):
        assert error_of(lambda bad=bad: blob.acquire_lease(lease_id=bad)) == (400, "InvalidHeaderValue")
    blob.acquire_lease(lease_duration=15)
    assert error_of(lambda: blob.upload_blob(b"y", overwrite=True, lease="nope")) == (400, "InvalidHeaderValue")


def test_container_lease_guid_forms(svc):
    cc = svc.create_container(unique())
    guid = uuid.uuid4()
    lease = cc.acquire_lease(lease_duration=-1, lease_id=guid.hex)
    assert lease.id == str(guid)
    assert error_of(cc.delete_container) == (412, "LeaseIdMissing")
    cc.delete_container(lease=f"{{{guid}}}")


def test_break_reports_breaking_then_broken(cc):
    blob = cc.upload_blob("b", b"x")
    lease = blob.acquire_lease(lease_duration=-1)
    assert lease.break_lease(lease_break_period=2) == 2
    props = blob.get_blob_properties().lease
    assert (props.state, props.status) == ("breaking", "locked")
    # While breaking, the blob is still locked: writes need the lease id, a new lease is refused.
    assert error_of(lambda: blob.upload_blob(b"y", overwrite=True)) == (412, "LeaseIdMissing")
    blob.upload_blob(b"y", overwrite=True, lease=lease)
    assert error_of(lambda: blob.acquire_lease(lease_duration=15)) == (409, "LeaseIsBreakingAndCannotBeAcquired")
    assert error_of(lease.renew) == (409, "LeaseIsBrokenAndCannotBeRenewed")
    # Breaking again with a shorter period shortens it; 0 breaks at once.
    assert lease.break_lease(lease_break_period=0) == 0
    props = blob.get_blob_properties().lease
    assert (props.state, props.status) == ("broken", "unlocked")
    blob.upload_blob(b"z", overwrite=True)


def test_break_period_runs_out(cc):
    blob = cc.upload_blob("b", b"x")
    blob.acquire_lease(lease_duration=15)
    assert BlobLeaseClient(blob).break_lease(lease_break_period=1) == 1
    assert blob.get_blob_properties().lease.state == "breaking"
    deadline = time.monotonic() + 10
    while blob.get_blob_properties().lease.state == "breaking" and time.monotonic() < deadline:
        time.sleep(0.1)
    props = blob.get_blob_properties().lease
    assert (props.state, props.status) == ("broken", "unlocked")
    blob.acquire_lease(lease_duration=15)  # a broken lease can be acquired anew


MISS = "\"project\"='other'"
HIT = "\"project\"='alpha'"


def test_if_tags_on_every_operation(cc):
    """Each operation that takes x-ms-if-tags: 412 ConditionNotMet when the blob's tags do not
    match, and the operation done when they do."""
    src = cc.upload_blob("src", b"source")
    tags = {"project": "alpha", "stage": "raw"}

    def tagged(name: str, append: bool = False):
        blob = cc.get_blob_client(name)
        if append:
            blob.create_append_blob(tags=tags)
        else:
            blob.upload_blob(b"data", tags=tags, overwrite=True)
        return blob

    cases = {
        "put blob": lambda b, c: b.upload_blob(b"new", overwrite=True, if_tags_match_condition=c),
        "put block list": lambda b, c: (b.stage_block("YQ==", b"a"),
                                        b.commit_block_list([BlobBlock("YQ==")], if_tags_match_condition=c)),
        "copy": lambda b, c: b.start_copy_from_url(src.url, if_tags_match_condition=c),
        "put blob from url": lambda b, c: b.upload_blob_from_url(src.url, overwrite=True,
                                                                  if_tags_match_condition=c),
        "delete": lambda b, c: b.delete_blob(if_tags_match_condition=c),
        "lease": lambda b, c: BlobLeaseClient(b).acquire(if_tags_match_condition=c),
        "snapshot": lambda b, c: b.create_snapshot(if_tags_match_condition=c),
        "get tags": lambda b, c: b.get_blob_tags(if_tags_match_condition=c),
        "set tags": lambda b, c: b.set_blob_tags({"project": "alpha"}, if_tags_match_condition=c),
        "get blob": lambda b, c: b.download_blob(if_tags_match_condition=c).readall(),
        "properties": lambda b, c: b.get_blob_properties(if_tags_match_condition=c),
        "metadata": lambda b, c: b.set_blob_metadata({"m": "1"}, if_tags_match_condition=c),
        "tier": lambda b, c: b.set_standard_blob_tier("Cool", if_tags_match_condition=c),
    }
    for what, op in cases.items():
        blob = tagged(f"b-{what.replace(' ', '-')}")
        assert error_of(lambda op=op, blob=blob: op(blob, MISS)) == (412, "ConditionNotMet"), what
        op(blob, HIT)
    blob = tagged("append", append=True)
    assert error_of(lambda: blob.append_block(b"x", if_tags_match_condition=MISS)) == (412, "ConditionNotMet")
    blob.append_block(b"x", if_tags_match_condition=HIT)
    assert blob.download_blob().readall() == b"x"


def test_if_tags_expressions(cc):
    blob = cc.upload_blob("b", b"x", tags={"a": "1", "b": "2", "c": "x y"})
    # x-ms-if-tags takes OR, <> and parentheses, which Find Blobs by Tags does not.
    blob.get_blob_properties(if_tags_match_condition="(\"a\"='0' OR \"b\"='2') AND \"c\"='x y'")
    blob.get_blob_properties(if_tags_match_condition="\"a\"<>'0' AND \"b\"='2' OR \"a\"='9'")
    assert error_of(lambda: blob.get_blob_properties(if_tags_match_condition="\"a\"<>'1'"))[0] == 412
    for bad in ("\"a\"='1' AND", "@container='x'", "\"a\"=1", "(\"a\"='1'", "\"a!\"='1'"):
        status, code = error_of(lambda bad=bad: blob.set_blob_metadata({}, if_tags_match_condition=bad))
        assert (status, code) == (400, "InvalidHeaderValue"), bad


def test_tags_with_snapshots_and_leases(cc):
    blob = cc.upload_blob("b", b"x", tags={"v": "1"})
    snap = blob.create_snapshot()
    blob.set_blob_tags({"v": "2"})
    assert cc.get_blob_client("b", snapshot=snap["snapshot"]).get_blob_tags() == {"v": "1"}
    assert blob.get_blob_tags() == {"v": "2"}
    lease = blob.acquire_lease(lease_duration=15)
    blob.set_blob_tags({"v": "3"})  # tags are not blocked by a lease...
    blob.set_blob_tags({"v": "4"}, lease=lease)  # ...and a matching lease id is accepted
    assert blob.get_blob_tags(lease=lease) == {"v": "4"}
    assert error_of(lambda: blob.set_blob_tags({"v": "5"}, lease=str(uuid.uuid4())))[0] == 412
    lease.release()


def test_find_blobs_by_tags_rules(svc, cc):
    cc.upload_blob("one", b"1", tags={"Rank": "10", "k" * 128: "v" * 256})
    cc.upload_blob("two", b"2", tags={"Rank": "20"})
    where = f"@container='{cc.container_name}' AND "
    assert [b.name for b in svc.find_blobs_by_tags(where + "\"Rank\">'05' AND \"Rank\"<'15'")] == ["one"]
    assert [b.name for b in svc.find_blobs_by_tags(where + "\"{}\"='{}'".format("k" * 128, "v" * 256))] == ["one"]
    ten = " AND ".join(f"\"t{i}\"='x'" for i in range(9))
    assert list(svc.find_blobs_by_tags(where + ten)) == []  # 10 conditions are allowed
    invalid = [
        "\"Rank\"='10' OR \"Rank\"='20'",          # OR: x-ms-if-tags only
        "\"Rank\"<>'10'",                          # <>: x-ms-if-tags only
        "(\"Rank\"='10')",                         # parentheses: x-ms-if-tags only
        "\"Rank\">'1' AND \"Rank\">'2'",            # two conditions on one side of a key
        "\"Rank\"='1' AND \"Rank\"='2'",
        "\"%s\"='1'" % ("k" * 129),                # key over 128 characters
        "\"Rank\"='%s'" % ("v" * 257),             # value over 256 characters
        "\"Ra!nk\"='1'",                           # a character tags may not hold
        "\"Rank\"=10",                             # value not quoted
        "@container>'a'",                          # @container takes = only
        "@other='a'",
        " AND ".join(f"\"t{i}\"='x'" for i in range(11)),  # 11 conditions
        "\"Rank\"=",
    ]
    for expr in invalid:
        status, code = error_of(lambda expr=expr: list(svc.find_blobs_by_tags(expr)))
        assert (status, code) == (400, "InvalidQueryParameterValue"), expr
    status, code = error_of(lambda: list(cc.find_blobs_by_tags("\"Rank\"<>'1'")))
    assert (status, code) == (400, "InvalidQueryParameterValue")


def test_find_blobs_by_tags_pages(svc, cc):
    for i in range(5):
        cc.upload_blob(f"p{i}", b"x", tags={"page": "yes"})
    pages = list(cc.find_blobs_by_tags("\"page\"='yes'", results_per_page=2).by_page())
    names = [[b.name for b in page] for page in pages]
    assert names == [["p0", "p1"], ["p2", "p3"], ["p4"]]


def test_raw_invalid_where_is_400(svc, cc):
    resp = raw(svc, "GET", f"{svc.url}?comp=blobs&where=%22a%22%3D%3D%271%27")
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] == "InvalidQueryParameterValue"
