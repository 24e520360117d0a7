"""Access tiers, CORS, append-blob seals and block-blob integrity as Azure answers them, with
azure-storage-blob (and plain HTTP for what a browser sends) against the real server."""

from __future__ import annotations

import base64
import hashlib

import pytest
import requests
from _blob_target import unique
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobBlock, BlobServiceClient, BlockState, CorsRule, StandardBlobTier

from api.test_blob_sdk import raw


@pytest.fixture(scope="module")
def svc(exastor_server) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(exastor_server.connection_string, retry_total=0)


@pytest.fixture
def cc(svc):
    client = svc.create_container(unique())
    yield client
    client.delete_container()


def error_of(fn) -> tuple[int, str | None]:
    with pytest.raises(HttpResponseError) as ei:
        fn()
    return ei.value.status_code, ei.value.error_code


# --- tiers --------------------------------------------------------------------------------------

def test_default_tier_is_inferred_until_set(cc):
    blob = cc.upload_blob("b", b"x")
    props = blob.get_blob_properties()
    assert (props.blob_tier, props.blob_tier_inferred, props.blob_tier_change_time) == ("Hot", True, None)
    listed = next(iter(cc.list_blobs()))
    assert (listed.blob_tier, listed.blob_tier_inferred) == ("Hot", True)
    blob.set_standard_blob_tier(StandardBlobTier.COOL)
    props = blob.get_blob_properties()
    assert props.blob_tier == "Cool" and not props.blob_tier_inferred and props.blob_tier_change_time
    listed = next(iter(cc.list_blobs()))
    assert listed.blob_tier == "Cool" and not listed.blob_tier_inferred
    # A tier given at upload is not inferred either; append blobs have none.
    assert cc.upload_blob("c", b"x", standard_blob_tier=StandardBlobTier.COLD).get_blob_properties().blob_tier == "Cold"
    app = cc.get_blob_client("app")
    app.create_append_blob()
    assert app.get_blob_properties().blob_tier is None


def test_archive_refuses_reads_until_rehydrated(cc):
    blob = cc.upload_blob("arch", b"archived bytes", metadata={"k": "v"})
    blob.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    # What Azure still allows on an archived blob: properties, metadata, tags, listing, tier, delete.
    props = blob.get_blob_properties()
    assert props.blob_tier == "Archive" and props.metadata == {"k": "v"}
    blob.set_blob_tags({"t": "1"})
    assert [b.blob_tier for b in cc.list_blobs()] == ["Archive"]
    # What it refuses: reading the bytes, changing properties/metadata, snapshots, reading as a source.
    assert error_of(lambda: blob.download_blob().readall()) == (409, "BlobArchived")
    assert error_of(lambda: blob.set_blob_metadata({"x": "y"})) == (409, "BlobArchived")
    assert error_of(lambda: blob.set_http_headers()) == (409, "BlobArchived")
    assert error_of(blob.create_snapshot) == (409, "BlobArchived")
    assert error_of(lambda: cc.get_blob_client("u").upload_blob_from_url(blob.url)) == (409, "BlobArchived")
    assert error_of(lambda: cc.get_blob_client("c").start_copy_from_url(blob.url)) == (409, "BlobArchived")
    # A copy into an online tier is how Azure copies an archived blob.
    copy = cc.get_blob_client("c")
    copy.start_copy_from_url(blob.url, standard_blob_tier=StandardBlobTier.HOT)
    assert copy.download_blob().readall() == b"archived bytes"
    assert copy.get_blob_properties().blob_tier == "Hot"
    # Rehydration (202, as Azure answers it) completes at once here: the bytes are on flash.
    resp = raw(blob, "PUT", f"{blob.url}?comp=tier", headers={"x-ms-access-tier": "Hot",
                                                             "x-ms-rehydrate-priority": "High"})
    assert resp.status_code == 202
    assert blob.get_blob_properties().blob_tier == "Hot"
    assert blob.download_blob().readall() == b"archived bytes"
    resp = raw(blob, "PUT", f"{blob.url}?comp=tier", headers={"x-ms-access-tier": "Cool",
                                                             "x-ms-rehydrate-priority": "Urgent"})
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] == "InvalidHeaderValue"
    # Overwriting an archived blob is a new blob, as in Azure.
    blob.set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    blob.upload_blob(b"fresh", overwrite=True)
    assert blob.download_blob().readall() == b"fresh"


def test_copy_with_tier(cc):
    src = cc.upload_blob("src", b"x")
    dst = cc.get_blob_client("dst")
    dst.start_copy_from_url(src.url, standard_blob_tier=StandardBlobTier.COOL)
    assert dst.get_blob_properties().blob_tier == "Cool"
    dst2 = cc.get_blob_client("dst2")
    dst2.upload_blob_from_url(src.url, standard_blob_tier=StandardBlobTier.COLD)
    assert dst2.get_blob_properties().blob_tier == "Cold"


# --- CORS ---------------------------------------------------------------------------------------

@pytest.fixture
def cors(svc):
    before = svc.get_service_properties()["cors"]

    def set_rules(*rules: CorsRule) -> None:
        svc.set_service_properties(cors=list(rules))
    yield set_rules
    svc.set_service_properties(cors=before)


def test_cors_wildcard_subdomains_and_case(svc, cc, cors):
    blob = cc.upload_blob("b", b"x", overwrite=True)
    cors(CorsRule(["https://*.Contoso.com"], ["GET", "PUT"], allowed_headers=["x-ms-meta-*"],
                  exposed_headers=["x-ms-request-id"], max_age_in_seconds=60))
    for origin in ("https://www.contoso.com", "https://A.B.CONTOSO.com"):
        r = requests.options(blob.url, headers={"Origin": origin, "Access-Control-Request-Method": "PUT",
                                                "Access-Control-Request-Headers": "X-Ms-Meta-Project"})
        assert r.status_code == 200, (origin, r.text)
        assert r.headers["Access-Control-Allow-Origin"] == origin
        assert r.headers["Access-Control-Allow-Methods"] == "PUT"
        assert r.headers["Access-Control-Allow-Credentials"] == "true"
        assert r.headers["Access-Control-Max-Age"] == "60"
    for origin in ("https://contoso.com", "http://www.contoso.com", "https://www.contoso.com.evil.org"):
        r = requests.options(blob.url, headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
        assert (r.status_code, r.headers.get("x-ms-error-code")) == (403, "CorsPreflightFailure"), origin


def test_cors_preflight_without_matching_method_or_headers(cc, cors):
    blob = cc.upload_blob("b", b"x", overwrite=True)
    cors(CorsRule(["https://app.example"], ["GET"], allowed_headers=["x-ms-version"]))
    ok = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    assert requests.options(blob.url, headers=ok).status_code == 200
    r = requests.options(blob.url, headers={**ok, "Access-Control-Request-Method": "DELETE"})
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (403, "CorsPreflightFailure")
    r = requests.options(blob.url, headers={**ok, "Access-Control-Request-Headers": "x-ms-meta-a"})
    assert (r.status_code, r.headers.get("x-ms-error-code")) == (403, "CorsPreflightFailure")
    r = requests.options(blob.url, headers={"Origin": "https://app.example"})  # no method at all
    assert r.status_code == 400
    r = requests.options(blob.url, headers={"Access-Control-Request-Method": "GET"})  # no origin
    assert r.status_code == 400


def test_cors_actual_requests_and_vary(svc, cc, cors):
    """Azure's Vary rule: GET/HEAD answers carry ``Vary: Origin`` when CORS is on and the answer
    depends on the origin (no rule admits it, or the admitting rule names it), not for a ``*`` rule."""
    cc.set_container_access_policy({}, public_access="blob")
    blob = cc.upload_blob("pub", b"public", overwrite=True)
    cors(CorsRule(["https://app.example"], ["GET", "HEAD"], exposed_headers=["x-ms-meta-*"]),
         CorsRule(["*"], ["PUT"]))
    r = requests.get(blob.url, headers={"Origin": "https://APP.example"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://APP.example"
    assert r.headers["Access-Control-Allow-Credentials"] == "true"
    assert r.headers["Access-Control-Expose-Headers"] == "x-ms-meta-*"
    assert r.headers["Vary"] == "Origin"
    r = requests.get(blob.url, headers={"Origin": "https://other.example"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers and r.headers["Vary"] == "Origin"
    r = requests.head(blob.url, headers={"Origin": "https://other.example"})
    assert r.headers.get("Vary") == "Origin"
    r = requests.get(blob.url)  # no Origin: a cache could hand this to a CORS request later
    assert r.headers.get("Vary") == "Origin" and "Access-Control-Allow-Origin" not in r.headers
    # The * rule: everyone gets "*", nothing varies, no credentials.
    r = requests.options(blob.url, headers={"Origin": "https://other.example", "Access-Control-Request-Method": "PUT"})
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in r.headers
    cors(CorsRule(["*"], ["GET"]))
    r = requests.get(blob.url, headers={"Origin": "https://any.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in r.headers
    assert "Vary" not in requests.get(blob.url).headers
    # Without CORS rules nothing is added.
    cors()
    r = requests.get(blob.url, headers={"Origin": "https://any.example"})
    assert "Access-Control-Allow-Origin" not in r.headers and "Vary" not in r.headers
    assert "Vary" not in requests.get(blob.url).headers


# --- append blobs -------------------------------------------------------------------------------

def test_append_seal_details(cc):
    blob = cc.get_blob_client("app")
    blob.create_append_blob()
    blob.append_block(b"one")
    assert blob.get_blob_properties().is_append_blob_sealed is False
    blob.seal_append_blob()
    assert blob.get_blob_properties().is_append_blob_sealed is True
    assert error_of(lambda: blob.append_block(b"two"))[0] == 409
    listed = next(iter(cc.list_blobs()))
    assert listed.is_append_blob_sealed is True
    # A snapshot of a sealed blob is sealed; a copy is sealed when asked (x-ms-seal-blob), as in Azure.
    snap = cc.get_blob_client("app", snapshot=blob.create_snapshot()["snapshot"])
    assert snap.get_blob_properties().is_append_blob_sealed is True
    copy = cc.get_blob_client("copy")
    copy.start_copy_from_url(blob.url, seal_destination_blob=True)
    assert copy.get_blob_properties().is_append_blob_sealed is True
    assert error_of(lambda: copy.append_block(b"two"))[0] == 409
    unsealed = cc.get_blob_client("unsealed")
    unsealed.start_copy_from_url(blob.url)
    assert unsealed.get_blob_properties().is_append_blob_sealed is False
    unsealed.append_block(b"two")
    assert unsealed.download_blob().readall() == b"onetwo"
    # Sealing again is fine; sealing a block blob is not.
    blob.seal_append_blob()
    block = cc.upload_blob("block", b"x")
    resp = raw(block, "PUT", f"{block.url}?comp=seal")
    assert resp.status_code == 409 and resp.headers["x-ms-error-code"] == "InvalidBlobType"


def test_append_conditions_and_empty_blocks(cc):
    blob = cc.get_blob_client("app")
    blob.create_append_blob()
    blob.append_block(b"abc", appendpos_condition=0, maxsize_condition=10)
    assert error_of(lambda: blob.append_block(b"d", appendpos_condition=0)) == (412, "AppendPositionConditionNotMet")
    assert error_of(lambda: blob.append_block(b"defghijk", maxsize_condition=10)) == (412, "MaxBlobSizeConditionNotMet")
    resp = raw(blob, "PUT", f"{blob.url}?comp=appendblock", headers={"Content-Length": "0"})
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] in ("InvalidHeaderValue", "InvalidInput")
    assert blob.download_blob().readall() == b"abc"


# --- block blobs ------------------------------------------------------------------------------

def test_put_block_md5_and_range_md5(cc):
    blob = cc.get_blob_client("bb")
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    bad = base64.b64encode(hashlib.md5(b"xyz").digest()).decode()
    resp = raw(blob, "PUT", f"{blob.url}?comp=block&blockid=QUFB", headers={"Content-MD5": bad}, body=b"abc")
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] == "Md5Mismatch"
    resp = raw(blob, "PUT", f"{blob.url}?comp=block&blockid=QUFB", headers={"Content-MD5": good}, body=b"abc")
    assert resp.status_code == 201 and resp.headers["Content-MD5"] == good
    assert blob.get_block_list("uncommitted")[1][0].id == "AAA"  # the SDK decodes block ids
    blob.commit_block_list([BlobBlock("AAA")])  # the SDK encodes it to QUFB
    resp = raw(blob, "GET", blob.url, headers={"x-ms-range": "bytes=0-1", "x-ms-range-get-content-md5": "true"})
    assert resp.status_code == 206
    assert resp.headers["Content-MD5"] == base64.b64encode(hashlib.md5(b"ab").digest()).decode()
    resp = raw(blob, "GET", blob.url, headers={"x-ms-range": "bytes=0-4194304", "x-ms-range-get-content-md5": "true"})
    assert resp.status_code == 400 and resp.headers["x-ms-error-code"] in ("OutOfRangeInput", "InvalidHeaderValue")
    resp = raw(blob, "GET", blob.url, headers={"x-ms-range-get-content-md5": "true"})  # needs a range
    assert resp.status_code == 400


def test_commit_mixing_committed_and_new_blocks(cc):
    blob = cc.get_blob_client("mix")
    blob.stage_block("1", b"one-")
    blob.stage_block("2", b"two-")
    blob.commit_block_list([BlobBlock("1"), BlobBlock("2")])
    blob.stage_block("3", b"three")
    # Keep block 1 from the committed list, drop 2, add the new 3.
    blob.commit_block_list([BlobBlock("1", BlockState.COMMITTED), BlobBlock("3", BlockState.UNCOMMITTED)])
    assert blob.download_blob().readall() == b"one-three"
    committed, uncommitted = blob.get_block_list("all")
    assert [b.id for b in committed] == ["1", "3"] and uncommitted == []
    assert error_of(lambda: blob.commit_block_list([BlobBlock("2", BlockState.COMMITTED)]))[1] == "InvalidBlockList"


def test_customer_provided_keys_refused(cc):
    """exastor never stores or serves under a key the client keeps: refused, not silently ignored."""
    from azure.storage.blob import CustomerProvidedEncryptionKey
    cpk = CustomerProvidedEncryptionKey(base64.b64encode(b"k" * 32).decode(),
                                        base64.b64encode(hashlib.sha256(b"k" * 32).digest()).decode())
    blob = cc.get_blob_client("cpk")
    resp = raw(blob, "PUT", blob.url, headers={"x-ms-blob-type": "BlockBlob", "x-ms-encryption-key": cpk.key_value,
                                                "x-ms-encryption-key-sha256": cpk.key_hash,
                                                "x-ms-encryption-algorithm": "AES256"}, body=b"secret")
    assert resp.status_code == 409 and resp.headers["x-ms-error-code"] == "FeatureNotSupported"
    assert error_of(blob.get_blob_properties)[0] == 404
