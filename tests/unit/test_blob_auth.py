"""Shared Key and SAS verification against what the azure-storage-blob SDK itself signs."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.pipeline.transport import HttpRequest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
)
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

from exastor.blob import auth
from exastor.blob.errors import BlobError

ACCOUNT = "acct"
KEY = base64.b64encode(bytes(range(64))).decode()
SIGNED_AT = datetime(2026, 11, 27, 5, 0, 0, tzinfo=UTC)


def _sdk_signed(method: str, url: str, headers: dict[str, str]) -> dict[str, str]:
    req = HttpRequest(method, url)
    req.headers.update(headers)
    SharedKeyCredentialPolicy(ACCOUNT, KEY).on_request(PipelineRequest(req, PipelineContext(None)))
    return {k.lower(): v for k, v in req.headers.items()}


@pytest.mark.parametrize("url,headers", [
    ("http://127.0.0.1:10000/acct/ctr?restype=container", {}),
    ("http://127.0.0.1:10000/acct/ctr/dir/a%20b%2Bc.txt?comp=block&blockid=QUJD%3D",
     {"Content-Length": "3", "Content-MD5": "kAFQmDzST7DWlj99KOF/cg=="}),
    ("http://127.0.0.1:10000/acct/ctr/x", {"x-ms-meta-Zeta": "1", "x-ms-meta-alpha": "2", "x-ms-blob-type": "BlockBlob",
                                           "x-ms-blob-content-type": "text/plain", "If-Match": '"abc"',
                                           "x-ms-range": "bytes=0-9", "Content-Length": "0"}),
    ("http://127.0.0.1:10000/acct/ctr?restype=container&comp=list&prefix=a%2Fb&include=metadata,snapshots", {}),
])
def test_shared_key_accepts_what_the_sdk_signs(url, headers):
    headers = {"x-ms-date": "Fri, 27 Nov 2026 05:00:00 GMT", "x-ms-version": "2025-11-05", **headers}
    signed = _sdk_signed("PUT", url, headers)
    parts = urlsplit(url)
    # the request is dated 27 Nov 2026 05:00 GMT: check it as of then (Shared Key dates must be current)
    result = auth.verify_shared_key("PUT", signed, ACCOUNT, KEY, parts.path, parts.query, now=SIGNED_AT)
    assert result.kind == "sharedkey"
    # Any change to what was signed is caught.
    tampered = dict(signed, **{"x-ms-version": "2020-01-01"})
    with pytest.raises(BlobError) as ei:
        auth.verify_shared_key("PUT", tampered, ACCOUNT, KEY, parts.path, parts.query, now=SIGNED_AT)
    assert ei.value.code == "AuthenticationFailed"
    with pytest.raises(BlobError):
        auth.verify_shared_key("GET", signed, ACCOUNT, KEY, parts.path, parts.query, now=SIGNED_AT)
    other_key = base64.b64encode(b"x" * 64).decode()
    with pytest.raises(BlobError):
        auth.verify_shared_key("PUT", signed, ACCOUNT, other_key, parts.path, parts.query, now=SIGNED_AT)


def test_string_to_sign_layout_by_hand():
    """The spec's example layout: 12 standard lines, canonical x-ms headers, then the resource."""
    strings = list(auth.shared_key_strings("GET", {"x-ms-date": "D", "x-ms-version": "V", "content-length": "0"},
                                      "acct", "/acct/c/b", "comp=metadata&timeout=30"))
    expected = "GET\n" + "\n" * 11 + "x-ms-date:D\nx-ms-version:V\n/acct/acct/c/b\ncomp:metadata\ntimeout:30"
    assert expected in strings


def _q(token: str) -> dict[str, str]:
    return dict(parse_qsl(token))


def test_service_sas_roundtrip_and_failures():
    expiry = datetime.now(UTC) + timedelta(hours=1)
    token = generate_blob_sas(ACCOUNT, "ctr", "dir/blob", account_key=KEY, permission=BlobSasPermissions(read=True),
                              expiry=expiry, ip="127.0.0.1-127.0.0.9")
    res = auth.verify_sas(_q(token), ACCOUNT, KEY, "ctr", "dir/blob", "127.0.0.5", None)
    assert res.kind == "service-sas" and res.permissions == "r"
    auth.authorize(res, "o", "r", "ctr", "dir/blob")
    with pytest.raises(BlobError) as ei:
        auth.authorize(res, "o", "w", "ctr", "dir/blob")
    assert ei.value.code == "AuthorizationPermissionMismatch"
    with pytest.raises(BlobError):  # a blob SAS names one blob
        auth.verify_sas(_q(token), ACCOUNT, KEY, "ctr", "other", "127.0.0.5", None)
    with pytest.raises(BlobError) as ei:
        auth.verify_sas(_q(token), ACCOUNT, KEY, "ctr", "dir/blob", "10.0.0.1", None)
    assert ei.value.code == "AuthorizationSourceIPMismatch"
    old = generate_blob_sas(ACCOUNT, "ctr", "b", account_key=KEY, permission=BlobSasPermissions(read=True),
                            expiry=datetime.now(UTC) - timedelta(seconds=5))
    with pytest.raises(BlobError):
        auth.verify_sas(_q(old), ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None)
    https_only = generate_blob_sas(ACCOUNT, "ctr", "b", account_key=KEY, permission=BlobSasPermissions(read=True),
                                   expiry=expiry, protocol="https")
    with pytest.raises(BlobError) as ei:
        auth.verify_sas(_q(https_only), ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None)
    assert ei.value.code == "AuthorizationProtocolMismatch"


def test_stored_policy_supplies_permission_and_expiry():
    token = generate_blob_sas(ACCOUNT, "ctr", "b", account_key=KEY, policy_id="pol")
    expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    res = auth.verify_sas(_q(token), ACCOUNT, KEY, "ctr", "b", "127.0.0.1",
                          {"pol": {"permission": "rw", "expiry": expiry}})
    assert res.permissions == "rw"
    with pytest.raises(BlobError):
        auth.verify_sas(_q(token), ACCOUNT, KEY, "ctr", "b", "127.0.0.1",
                        {"pol": {"permission": "r", "expiry": "2000-01-01T00:00:00Z"}})


def test_account_sas_resource_types():
    token = generate_account_sas(ACCOUNT, KEY, resource_types=ResourceTypes(object=True),
                                 permission=AccountSasPermissions(read=True),
                                 expiry=datetime.now(UTC) + timedelta(hours=1))
    res = auth.verify_sas(_q(token), ACCOUNT, KEY, "c", "b", "127.0.0.1", None)
    auth.authorize(res, "o", "r", "c", "b")
    with pytest.raises(BlobError) as ei:
        auth.authorize(res, "s", "l", None, None)
    assert ei.value.code == "AuthorizationResourceTypeMismatch"
    q = _q(token)
    q["sp"] = "rwdl"  # widening the permissions breaks the signature
    with pytest.raises(BlobError):
        auth.verify_sas(q, ACCOUNT, KEY, "c", "b", "127.0.0.1", None)


# ------------------------------------------------------------------ issue 12: every SAS field, every time

def _blob_sas(**kw) -> dict[str, str]:
    kw.setdefault("permission", BlobSasPermissions(read=True))
    kw.setdefault("expiry", datetime.now(UTC) + timedelta(hours=1))
    return _q(generate_blob_sas(ACCOUNT, "ctr", "b", account_key=KEY, **kw))


@pytest.mark.parametrize(("sip", "client", "ok"), [
    ("10.0.0.1-10.0.0.9", "::1", False),                # IPv6 client, IPv4 range: a clean mismatch, not a 500
    ("10.0.0.1-10.0.0.9", "::ffff:10.0.0.5", True),     # an IPv4 client on a dual-stack socket
    ("10.0.0.1-10.0.0.9", "10.0.0.10", False),
    ("2001:db8::1-2001:db8::ff", "2001:db8::7", True),  # IPv6 ranges
    ("2001:db8::1-2001:db8::ff", "10.0.0.5", False),
    ("2001:db8::5", "2001:db8::5", True),
    ("10.0.0.1", "", False),                            # no client address: outside every range
])
def test_sip_ranges_both_families(sip: str, client: str, ok: bool):
    q = _blob_sas(ip=sip)
    if ok:
        assert auth.verify_sas(q, ACCOUNT, KEY, "ctr", "b", client, None).permissions == "r"
    else:
        with pytest.raises(BlobError) as ei:
            auth.verify_sas(q, ACCOUNT, KEY, "ctr", "b", client, None)
        assert ei.value.code == "AuthorizationSourceIPMismatch" and ei.value.status == 403


def test_bad_sip_refuses_everyone():
    for sip in ("not-an-ip", "10.0.0.1-2001:db8::1"):
        with pytest.raises(BlobError) as ei:
            auth.verify_sas(_blob_sas(ip=sip), ACCOUNT, KEY, "ctr", "b", "10.0.0.1", None)
        assert ei.value.status == 403


def test_protocol_https_only_needs_tls():
    q = _blob_sas(protocol="https")
    with pytest.raises(BlobError) as ei:
        auth.verify_sas(q, ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None, secure=False)
    assert ei.value.code == "AuthorizationProtocolMismatch"
    assert auth.verify_sas(q, ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None, secure=True).kind == "service-sas"
    assert auth.verify_sas(_blob_sas(protocol="https,http"), ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None)


def test_start_and_expiry_windows():
    future = _blob_sas(start=datetime.now(UTC) + timedelta(hours=1), expiry=datetime.now(UTC) + timedelta(hours=2))
    with pytest.raises(BlobError):
        auth.verify_sas(future, ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None)
    later = datetime.now(UTC) + timedelta(hours=1, minutes=30)
    assert auth.verify_sas(future, ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None, now=later)


def test_stored_policy_and_sas_may_not_both_set_a_field():
    expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    q = _q(generate_blob_sas(ACCOUNT, "ctr", "b", account_key=KEY, policy_id="pol",
                             permission=BlobSasPermissions(read=True, write=True)))
    with pytest.raises(BlobError):
        auth.verify_sas(q, ACCOUNT, KEY, "ctr", "b", "127.0.0.1", {"pol": {"permission": "r", "expiry": expiry}})


@pytest.mark.parametrize("version", ["2015-04-05", "2018-11-09", "2020-12-06", "2025-11-05"])
def test_signed_version_layouts(version: str):
    """The string-to-sign gained sr/snapshot (2018-11-09) and ses (2020-12-06); each version verifies
    with its own layout, and a token re-labelled with another version does not."""
    q = _blob_sas()
    fields = [q.get("sp", ""), q.get("st", ""), q["se"], f"/blob/{ACCOUNT}/ctr/b", "", "", "", version]
    if version >= "2018-11-09":
        fields += ["b", ""]
    if version >= "2020-12-06":
        fields.append("")
    fields += ["", "", "", "", ""]
    token = {"sv": version, "sr": "b", "sp": q["sp"], "se": q["se"], "sig": auth.sign(KEY, "\n".join(fields))}
    assert auth.verify_sas(token, ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None).permissions == "r"
    relabelled = dict(token, sv="2019-02-02" if version >= "2020-12-06" else "2021-06-08")
    with pytest.raises(BlobError):
        auth.verify_sas(relabelled, ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None)
    old = dict(token, sv="2013-08-15")
    with pytest.raises(BlobError):
        auth.verify_sas(old, ACCOUNT, KEY, "ctr", "b", "127.0.0.1", None)


def test_shared_key_dates_and_lite():
    now = datetime(2026, 11, 27, 5, 0, 0, tzinfo=UTC)
    url = "http://127.0.0.1:10000/acct/ctr?restype=container"
    parts = urlsplit(url)
    for date, ok in (("Fri, 27 Nov 2026 05:14:00 GMT", True), ("Fri, 27 Nov 2026 05:16:00 GMT", False),
                     ("Fri, 27 Nov 2026 04:44:00 GMT", False), ("Mon, 01 Jan 2001 00:00:00 GMT", False),
                     ("garbage", False)):
        signed = _sdk_signed("PUT", url, {"x-ms-date": date, "x-ms-version": "2025-11-05"})
        if ok:
            assert auth.verify_shared_key("PUT", signed, ACCOUNT, KEY, parts.path, parts.query, now=now)
        else:
            with pytest.raises(BlobError) as ei:
                auth.verify_shared_key("PUT", signed, ACCOUNT, KEY, parts.path, parts.query, now=now)
            assert ei.value.code == "AuthenticationFailed" and ei.value.status == 403
    # Shared Key Lite: VERB, Content-MD5, Content-Type, Date, x-ms-* headers, /account/path?comp=
    headers = {"x-ms-date": "Fri, 27 Nov 2026 05:00:00 GMT", "x-ms-version": "2025-11-05"}
    text = "PUT\n\n\n\nx-ms-date:Fri, 27 Nov 2026 05:00:00 GMT\nx-ms-version:2025-11-05\n/acct/acct/ctr?comp=metadata"
    headers["authorization"] = f"SharedKeyLite {ACCOUNT}:{auth.sign(KEY, text)}"
    assert auth.verify_shared_key("PUT", headers, ACCOUNT, KEY, "/acct/ctr", "restype=container&comp=metadata",
                                  now=now).kind == "sharedkey"
    with pytest.raises(BlobError):
        auth.verify_shared_key("PUT", headers, ACCOUNT, KEY, "/acct/ctr", "restype=container&comp=acl", now=now)
