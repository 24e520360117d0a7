"""Every named operation x every kind of caller, against a live server (issue 12).

The expectations here are written independently of src/exastor/auth/operations.py: for S3, which
IAM actions each operation needs and who may call it (the owner, another user, anonymous, another
user under a policy Allow of exactly those actions, the owner under a policy Deny of them); for
Blob, which SAS letters grant it (tried one letter at a time), at which level, and which container
public-access levels admit anonymous callers. Each row's request is routed by the server's own
router to the row's name first, so names and requests cannot drift apart.

``test_every_operation_has_a_row`` fails when an operation is added to the table of operations
without a row here: nothing new ships without its expected decisions written down.
"""

from __future__ import annotations

import http.client
import itertools
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote

import pytest
import requests
from _blobutil import blob_signed
from _s3util import signed_request
from azure.storage.blob import (
    AccountSasPermissions,
    BlobSasPermissions,
    ContainerSasPermissions,
    ResourceTypes,
    generate_account_sas,
    generate_blob_sas,
    generate_container_sas,
)

from exastor.auth.operations import OPERATIONS

_names = itertools.count(1)


def _unique(prefix: str) -> str:
    return f"{prefix}{next(_names):05d}x{id(_names) % 9973}"


# ============================================================================================ S3

@dataclass(frozen=True)
class S3Row:
    """One S3 operation: its request, the actions a policy must allow, and who may call it."""

    method: str
    path: str                        # {b}: the case's bucket, {new}: a fresh bucket name, {upload}: an upload id
    actions: tuple[str, ...] = ()    # what a policy Allow for the other user must name
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    owner: bool = True
    other: bool = False
    anonymous: bool = False
    policy: bool = True              # the policy columns apply (a bucket exists before the request)
    owner_despite_deny: bool = False


_VERSIONING = b"<VersioningConfiguration><Status>Enabled</Status></VersioningConfiguration>"
_TAGGING = b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>"
_POLICY = json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                                     "Resource": "arn:aws:s3:::{b}/nothing"}]}).encode()
_CORS = (b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"
         b"</CORSRule></CORSConfiguration>")
_LIFECYCLE = (b"<LifecycleConfiguration><Rule><ID>r</ID><Filter><Prefix>x</Prefix></Filter><Status>Enabled</Status>"
              b"<Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>")
_SSE = (b"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256"
        b"</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>")
_LOCK = b"<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>"
_RETENTION = b"<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate></Retention>"
_HOLD = b"<LegalHold><Status>OFF</Status></LegalHold>"
_COMPLETE = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>"
_DELETE = b"<Delete><Object><Key>obj</Key></Object></Delete>"
_COPY = {"x-amz-copy-source": "{b}/obj"}
_OWNERSHIP = (b"<OwnershipControls><Rule><ObjectOwnership>BucketOwnerPreferred</ObjectOwnership></Rule>"
              b"</OwnershipControls>")
_BLOCK = (b"<PublicAccessBlockConfiguration><BlockPublicAcls>false</BlockPublicAcls>"
          b"</PublicAccessBlockConfiguration>")

S3_ROWS: dict[str, S3Row] = {
    "ListBuckets": S3Row("GET", "/", other=True, anonymous=True, policy=False),
    "CreateBucket": S3Row("PUT", "/{new}", other=True, policy=False),
    "DeleteBucket": S3Row("DELETE", "/{b}", ("s3:DeleteBucket",)),
    "HeadBucket": S3Row("HEAD", "/{b}", ("s3:ListBucket",)),
    "GetBucketLocation": S3Row("GET", "/{b}?location", ("s3:GetBucketLocation",)),
    "GetBucketVersioning": S3Row("GET", "/{b}?versioning", ("s3:GetBucketVersioning",)),
    "PutBucketVersioning": S3Row("PUT", "/{b}?versioning", ("s3:PutBucketVersioning",), body=_VERSIONING),
    "GetBucketTagging": S3Row("GET", "/{b}?tagging", ("s3:GetBucketTagging",)),
    "PutBucketTagging": S3Row("PUT", "/{b}?tagging", ("s3:PutBucketTagging",), body=_TAGGING),
    "DeleteBucketTagging": S3Row("DELETE", "/{b}?tagging", ("s3:PutBucketTagging",)),
    "GetBucketAcl": S3Row("GET", "/{b}?acl", ("s3:GetBucketAcl",)),
    "PutBucketAcl": S3Row("PUT", "/{b}?acl", ("s3:PutBucketAcl",), {"x-amz-acl": "private"}),
    "GetBucketPolicy": S3Row("GET", "/{b}?policy", ("s3:GetBucketPolicy",), owner_despite_deny=True),
    "PutBucketPolicy": S3Row("PUT", "/{b}?policy", ("s3:PutBucketPolicy",), body=_POLICY, owner_despite_deny=True),
    "DeleteBucketPolicy": S3Row("DELETE", "/{b}?policy", ("s3:DeleteBucketPolicy",), owner_despite_deny=True),
    "GetBucketCors": S3Row("GET", "/{b}?cors", ("s3:GetBucketCORS",)),
    "PutBucketCors": S3Row("PUT", "/{b}?cors", ("s3:PutBucketCORS",), body=_CORS),
    "DeleteBucketCors": S3Row("DELETE", "/{b}?cors", ("s3:PutBucketCORS",)),
    "GetBucketLifecycleConfiguration": S3Row("GET", "/{b}?lifecycle", ("s3:GetLifecycleConfiguration",)),
    "PutBucketLifecycleConfiguration": S3Row("PUT", "/{b}?lifecycle", ("s3:PutLifecycleConfiguration",),
                                             body=_LIFECYCLE),
    "DeleteBucketLifecycle": S3Row("DELETE", "/{b}?lifecycle", ("s3:PutLifecycleConfiguration",)),
    "GetBucketEncryption": S3Row("GET", "/{b}?encryption", ("s3:GetEncryptionConfiguration",)),
    "PutBucketEncryption": S3Row("PUT", "/{b}?encryption", ("s3:PutEncryptionConfiguration",), body=_SSE),
    "DeleteBucketEncryption": S3Row("DELETE", "/{b}?encryption", ("s3:PutEncryptionConfiguration",)),
    "GetBucketOwnershipControls": S3Row("GET", "/{b}?ownershipControls", ("s3:GetBucketOwnershipControls",)),
    "PutBucketOwnershipControls": S3Row("PUT", "/{b}?ownershipControls", ("s3:PutBucketOwnershipControls",),
                                        body=_OWNERSHIP),
    "DeleteBucketOwnershipControls": S3Row("DELETE", "/{b}?ownershipControls",
                                           ("s3:PutBucketOwnershipControls",)),
    "GetPublicAccessBlock": S3Row("GET", "/{b}?publicAccessBlock", ("s3:GetBucketPublicAccessBlock",)),
    "PutPublicAccessBlock": S3Row("PUT", "/{b}?publicAccessBlock", ("s3:PutBucketPublicAccessBlock",),
                                  body=_BLOCK),
    "DeletePublicAccessBlock": S3Row("DELETE", "/{b}?publicAccessBlock", ("s3:PutBucketPublicAccessBlock",)),
    "GetBucketPolicyStatus": S3Row("GET", "/{b}?policyStatus", ("s3:GetBucketPolicyStatus",)),
    "GetObjectLockConfiguration": S3Row("GET", "/{b}?object-lock", ("s3:GetBucketObjectLockConfiguration",)),
    "PutObjectLockConfiguration": S3Row("PUT", "/{b}?object-lock", ("s3:PutBucketObjectLockConfiguration",),
                                        body=_LOCK),
    "ListObjects": S3Row("GET", "/{b}", ("s3:ListBucket",)),
    "ListObjectsV2": S3Row("GET", "/{b}?list-type=2", ("s3:ListBucket",)),
    "ListObjectVersions": S3Row("GET", "/{b}?versions", ("s3:ListBucketVersions",)),
    "ListMultipartUploads": S3Row("GET", "/{b}?uploads", ("s3:ListBucketMultipartUploads",)),
    "DeleteObjects": S3Row("POST", "/{b}?delete", ("s3:DeleteObject",), body=_DELETE),
    "PostObject": S3Row("POST", "/{b}", ("s3:PutObject",)),
    "CorsPreflight": S3Row("OPTIONS", "/{b}/obj", (), {"Origin": "https://example.com",
                                                       "Access-Control-Request-Method": "GET"},
                           other=True, anonymous=True, owner_despite_deny=True),
    "GetObject": S3Row("GET", "/{b}/obj", ("s3:GetObject",)),
    "HeadObject": S3Row("HEAD", "/{b}/obj", ("s3:GetObject",)),
    "GetObjectAttributes": S3Row("GET", "/{b}/obj?attributes", ("s3:GetObjectAttributes",),
                                 {"x-amz-object-attributes": "ETag,ObjectSize"}),
    "PutObject": S3Row("PUT", "/{b}/new", ("s3:PutObject",), body=b"new"),
    "CopyObject": S3Row("PUT", "/{b}/copy", ("s3:PutObject", "s3:GetObject"), _COPY),
    "DeleteObject": S3Row("DELETE", "/{b}/obj", ("s3:DeleteObject",)),
    "GetObjectTagging": S3Row("GET", "/{b}/obj?tagging", ("s3:GetObjectTagging",)),
    "PutObjectTagging": S3Row("PUT", "/{b}/obj?tagging", ("s3:PutObjectTagging",), body=_TAGGING),
    "DeleteObjectTagging": S3Row("DELETE", "/{b}/obj?tagging", ("s3:DeleteObjectTagging",)),
    "GetObjectAcl": S3Row("GET", "/{b}/obj?acl", ("s3:GetObjectAcl",)),
    "PutObjectAcl": S3Row("PUT", "/{b}/obj?acl", ("s3:PutObjectAcl",), {"x-amz-acl": "private"}),
    "GetObjectRetention": S3Row("GET", "/{b}/obj?retention", ("s3:GetObjectRetention",)),
    "PutObjectRetention": S3Row("PUT", "/{b}/obj?retention", ("s3:PutObjectRetention",), body=_RETENTION),
    "GetObjectLegalHold": S3Row("GET", "/{b}/obj?legal-hold", ("s3:GetObjectLegalHold",)),
    "PutObjectLegalHold": S3Row("PUT", "/{b}/obj?legal-hold", ("s3:PutObjectLegalHold",), body=_HOLD),
    "CreateMultipartUpload": S3Row("POST", "/{b}/obj?uploads", ("s3:PutObject",)),
    "UploadPart": S3Row("PUT", "/{b}/obj?partNumber=1&uploadId={upload}", ("s3:PutObject",), body=b"part"),
    "UploadPartCopy": S3Row("PUT", "/{b}/obj?partNumber=1&uploadId={upload}", ("s3:PutObject", "s3:GetObject"),
                            _COPY),
    "CompleteMultipartUpload": S3Row("POST", "/{b}/obj?uploadId={upload}", ("s3:PutObject",), body=_COMPLETE),
    "AbortMultipartUpload": S3Row("DELETE", "/{b}/obj?uploadId={upload}", ("s3:AbortMultipartUpload",)),
    "ListParts": S3Row("GET", "/{b}/obj?uploadId={upload}", ("s3:ListMultipartUploadParts",)),
}


def test_every_operation_has_a_row():
    """A new operation without expected decisions here fails this test (closed by default)."""
    for api, rows in (("s3", S3_ROWS), ("blob", BLOB_ROWS)):
        named = {name for (a, name) in OPERATIONS if a == api}
        assert named - set(rows) == set(), f"{api} operations without a row in this table"
        assert set(rows) - named == set(), f"{api} rows for operations the server does not name"


def _route_name_s3(row: S3Row) -> str:
    from exastor.s3.router import route
    path, _, query = row.path.partition("?")
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0] or None
    key = parts[1] if len(parts) > 1 else None
    q = dict(parse_qsl(query, keep_blank_values=True))
    return route(row.method, bucket, key, q, "x-amz-copy-source" in row.headers).operation


@pytest.mark.parametrize("name", sorted(S3_ROWS))
def test_s3_rows_route_to_their_names(name):
    assert _route_name_s3(S3_ROWS[name]) == name


class S3Case:
    """A fresh bucket of the owner ('admin') with an object, an upload and CORS rules."""

    def __init__(self, server, s3):
        self.server, self.s3 = server, s3
        self.bucket = _unique("authz-")
        s3.create_bucket(Bucket=self.bucket)
        s3.put_object(Bucket=self.bucket, Key="obj", Body=b"object bytes", Tagging="k=v")
        self.upload = s3.create_multipart_upload(Bucket=self.bucket, Key="obj")["UploadId"]
        s3.put_bucket_cors(Bucket=self.bucket, CORSConfiguration={"CORSRules": [
            {"AllowedOrigins": ["*"], "AllowedMethods": ["GET"]}]})

    def policy(self, effect: str, principal: object, actions: tuple[str, ...]) -> None:
        resources = [f"arn:aws:s3:::{self.bucket}", f"arn:aws:s3:::{self.bucket}/*"]
        self.s3.put_bucket_policy(Bucket=self.bucket, Policy=json.dumps({"Statement": [{
            "Effect": effect, "Principal": principal, "Action": list(actions), "Resource": resources}]}))

    def call(self, row: S3Row, who: str) -> tuple[int, bytes]:
        fill = {"b": self.bucket, "new": _unique("authz-new-"), "upload": self.upload}
        path = row.path.format(**fill)
        headers = {k: v.format(**fill) for k, v in row.headers.items()}
        body = row.body.replace(b"{b}", self.bucket.encode())
        if row.method == "POST" and path == f"/{self.bucket}":
            return self._post_object(who)
        if who == "anonymous":
            conn = http.client.HTTPConnection("127.0.0.1", self.server.s3_port, timeout=30)
            try:
                conn.request(row.method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()
        status, _, data = signed_request(self.server, row.method, path, headers=headers, body=body,
                                         alt=who == "other")
        return status, data

    def _post_object(self, who: str) -> tuple[int, bytes]:
        url = f"{self.server.endpoint}/{self.bucket}"
        if who == "anonymous":
            r = requests.post(url, data={"key": "posted"}, files={"file": b"x"}, timeout=30)
            return r.status_code, r.content
        from conftest import s3_client
        client = s3_client(self.server, alt=who == "other")
        form = client.generate_presigned_post(self.bucket, "posted", ExpiresIn=300)
        r = requests.post(form["url"], data=form["fields"], files={"file": b"x"}, timeout=30)
        return r.status_code, r.content


def _s3_allowed(name: str, status: int, body: bytes) -> bool:
    assert status != 500, (name, body[:300])
    if name == "DeleteObjects" and status == 200:
        return b"<Deleted>" in body  # multi-delete answers 200 and reports AccessDenied per key
    if status == 403:
        code = ET.fromstring(body).findtext("Code") if body else "AccessDenied"
        assert code == "AccessDenied", (name, code)
        return False
    return True


@pytest.mark.parametrize("name", sorted(S3_ROWS))
def test_s3_decisions(exastor_server, s3, name):
    row = S3_ROWS[name]
    expected = {"owner": row.owner, "other": row.other, "anonymous": row.anonymous}
    for who, want in expected.items():
        case = S3Case(exastor_server, s3)
        status, body = case.call(row, who)
        assert _s3_allowed(name, status, body) == want, (name, who, status, body[:300])
    if not row.policy:
        return
    case = S3Case(exastor_server, s3)  # a policy Allow of exactly these actions opens them to the other user
    case.policy("Allow", {"AWS": ["arn:aws:iam::000000000000:user/alt"]}, row.actions or ("s3:GetObject",))
    status, body = case.call(row, "other")
    assert _s3_allowed(name, status, body), (name, "other+allow", status, body)
    case = S3Case(exastor_server, s3)  # an explicit Deny binds the owner too (except where S3 says otherwise)
    case.policy("Deny", "*", row.actions or ("s3:GetObject",))
    status, body = case.call(row, "owner")
    assert _s3_allowed(name, status, body) == row.owner_despite_deny, (name, "owner+deny", status, body)


# ============================================================================================ Blob

@dataclass(frozen=True)
class BlobRow:
    """One Blob operation: its request, the SAS letters that grant it (any one), whether a service
    SAS may (else only an account SAS), and the public-access levels that admit anonymous callers."""

    method: str
    path: str                           # under /{account}/; {c}: the case's container, {new}: a new name
    letters: str
    level: str                          # s / c / o
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    service_sas: bool = False
    public: tuple[str, ...] = ()
    source: bool = False                # x-ms-copy-source: the case's "obj", with a read SAS of its own
    anyone: bool = False                # no credentials needed at all (CORS preflights)


_BL = b"<BlockList><Latest>QUJD</Latest></BlockList>"
_TAGS = b"<Tags><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tags>"
_LEASE = {"x-ms-lease-action": "acquire", "x-ms-lease-duration": "-1"}
_BB = {"x-ms-blob-type": "BlockBlob"}
_READ = ("blob", "container")
_BATCH = {"Content-Type": "multipart/mixed; boundary=b"}

BLOB_ROWS: dict[str, BlobRow] = {
    "ListContainers": BlobRow("GET", "?comp=list", "l", "s"),
    "GetServiceProperties": BlobRow("GET", "?restype=service&comp=properties", "r", "s"),
    "SetServiceProperties": BlobRow("PUT", "?restype=service&comp=properties", "w", "s"),
    "GetServiceStats": BlobRow("GET", "?restype=service&comp=stats", "r", "s"),
    "GetAccountInformation": BlobRow("GET", "?restype=account&comp=properties", "racwdltfix", "s"),
    "FindBlobsByTags": BlobRow("GET", "?comp=blobs&where=%22k%22%3D%27v%27", "f", "s"),
    # The batch itself needs no permission letter: each sub-request is decided on its own
    # (tests/api/test_blob_batch.py); an empty batch is answered 202 with an InvalidInput part.
    "SubmitBatch": BlobRow("POST", "?comp=batch", "racwdltfix", "s", _BATCH, b"--b--\r\n"),
    "SubmitBatchInContainer": BlobRow("POST", "{c}?restype=container&comp=batch", "racwdltfix", "c", _BATCH,
                                      b"--b--\r\n", service_sas=True),
    "CorsPreflight": BlobRow("OPTIONS", "{c}/obj", "racwdltfix", "o", {"Origin": "https://example.com",
                                                                     "Access-Control-Request-Method": "GET"},
                             anyone=True),
    "CreateContainer": BlobRow("PUT", "{new}?restype=container", "c", "c"),
    "DeleteContainer": BlobRow("DELETE", "{c}?restype=container", "d", "c"),
    "GetContainerProperties": BlobRow("GET", "{c}?restype=container", "r", "c", public=("container",)),
    "GetContainerMetadata": BlobRow("GET", "{c}?restype=container&comp=metadata", "r", "c", public=("container",)),
    "SetContainerMetadata": BlobRow("PUT", "{c}?restype=container&comp=metadata", "w", "c", {"x-ms-meta-a": "b"}),
    "GetContainerACL": BlobRow("GET", "{c}?restype=container&comp=acl", "r", "c"),
    "SetContainerACL": BlobRow("PUT", "{c}?restype=container&comp=acl", "w", "c"),
    "LeaseContainer": BlobRow("PUT", "{c}?restype=container&comp=lease", "w", "c", _LEASE),
    "ListBlobs": BlobRow("GET", "{c}?restype=container&comp=list", "l", "c", service_sas=True, public=("container",)),
    "FindBlobsByTagsInContainer": BlobRow("GET", "{c}?restype=container&comp=blobs&where=%22k%22%3D%27v%27", "f",
                                          "c", service_sas=True),
    "GetBlob": BlobRow("GET", "{c}/obj", "r", "o", service_sas=True, public=_READ),
    "GetBlobProperties": BlobRow("HEAD", "{c}/obj", "r", "o", service_sas=True, public=_READ),
    "GetBlobMetadata": BlobRow("GET", "{c}/obj?comp=metadata", "r", "o", service_sas=True, public=_READ),
    "GetBlockList": BlobRow("GET", "{c}/obj?comp=blocklist", "r", "o", service_sas=True, public=_READ),
    "PutBlob": BlobRow("PUT", "{c}/new", "cw", "o", _BB, b"new", service_sas=True),
    "PutBlobFromURL": BlobRow("PUT", "{c}/new", "cw", "o", _BB, service_sas=True, source=True),
    "CopyBlob": BlobRow("PUT", "{c}/new", "cw", "o", service_sas=True, source=True),
    "AbortCopyBlob": BlobRow("PUT", "{c}/obj?comp=copy&copyid=x", "w", "o", {"x-ms-copy-action": "abort"},
                             service_sas=True),
    "PutBlock": BlobRow("PUT", "{c}/new?comp=block&blockid=QUJD", "cw", "o", body=b"block", service_sas=True),
    "PutBlockFromURL": BlobRow("PUT", "{c}/new?comp=block&blockid=QUJD", "cw", "o", service_sas=True, source=True),
    "PutBlockList": BlobRow("PUT", "{c}/new?comp=blocklist", "cw", "o", body=_BL, service_sas=True),
    "AppendBlock": BlobRow("PUT", "{c}/app?comp=appendblock", "aw", "o", body=b"more", service_sas=True),
    "AppendBlockFromURL": BlobRow("PUT", "{c}/app?comp=appendblock", "aw", "o", service_sas=True, source=True),
    "SealBlob": BlobRow("PUT", "{c}/app?comp=seal", "w", "o", service_sas=True),
    "SetBlobMetadata": BlobRow("PUT", "{c}/obj?comp=metadata", "w", "o", {"x-ms-meta-a": "b"}, service_sas=True),
    "SetBlobProperties": BlobRow("PUT", "{c}/obj?comp=properties", "w", "o", service_sas=True),
    "SetBlobTier": BlobRow("PUT", "{c}/obj?comp=tier", "w", "o", {"x-ms-access-tier": "Cool"}, service_sas=True),
    "SnapshotBlob": BlobRow("PUT", "{c}/obj?comp=snapshot", "cw", "o", service_sas=True),
    "UndeleteBlob": BlobRow("PUT", "{c}/obj?comp=undelete", "w", "o", service_sas=True),
    "DeleteBlob": BlobRow("DELETE", "{c}/obj", "d", "o", service_sas=True),
    "LeaseBlob": BlobRow("PUT", "{c}/obj?comp=lease", "w", "o", _LEASE, service_sas=True),
    "GetBlobTags": BlobRow("GET", "{c}/obj?comp=tags", "t", "o", service_sas=True),
    "SetBlobTags": BlobRow("PUT", "{c}/obj?comp=tags", "t", "o", body=_TAGS, service_sas=True),
    "SetBlobExpiry": BlobRow("PUT", "{c}/obj?comp=expiry", "w", "o", service_sas=True),
    "SetBlobImmutabilityPolicy": BlobRow("PUT", "{c}/obj?comp=immutabilityPolicies", "i", "o", service_sas=True),
    "SetBlobLegalHold": BlobRow("PUT", "{c}/obj?comp=legalhold", "i", "o", service_sas=True),
}
LETTERS = "racwdltfix"  # every letter a Blob SAS can carry that matters here (x: delete version, granting nothing)
_DENIALS = {"AuthorizationFailure", "AuthorizationPermissionMismatch", "AuthorizationResourceTypeMismatch",
            "AuthenticationFailed", "NoAuthenticationInformation", "ResourceNotFound",
            "AuthorizationServiceMismatch"}


def _route_name_blob(row: BlobRow) -> str:
    from exastor.blob.router import route
    path, _, query = row.path.partition("?")
    container, _, blob = path.partition("/")
    headers = {k.lower(): v for k, v in row.headers.items()}
    if row.source:
        headers["x-ms-copy-source"] = "http://x/acct/c/obj"
    return route(row.method, container or None, blob or None, dict(parse_qsl(query, keep_blank_values=True)),
                 headers).operation


@pytest.mark.parametrize("name", sorted(set(BLOB_ROWS) - {"CorsPreflight"}))
def test_blob_rows_route_to_their_names(name):
    assert _route_name_blob(BLOB_ROWS[name]) == name


class BlobCase:
    """A fresh container of the account with a block blob 'obj' (tagged) and an append blob 'app'."""

    def __init__(self, server, public: str | None = None):
        self.server = server
        self.account = server.account_name
        self.container = _unique("authz")
        self._ok("PUT", f"{self.container}?restype=container",
                 {"x-ms-blob-public-access": public} if public else {})
        self._ok("PUT", f"{self.container}/obj", {**_BB, "x-ms-tags": "k=v", "Content-Length": "9"}, b"blob data")
        self._ok("PUT", f"{self.container}/app", {"x-ms-blob-type": "AppendBlob", "Content-Length": "0"})

    def _ok(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> None:
        status, _, data = blob_signed(self.server, method, f"/{self.account}/{path}", headers, body=body)
        assert status < 300, (path, status, data[:300])

    def _expiry(self) -> datetime:
        return datetime.now(UTC) + timedelta(hours=1)

    def sas(self, row: BlobRow, path: str, letters: str) -> str:
        key = self.server.account_key
        if not row.service_sas:
            return generate_account_sas(self.account, key, ResourceTypes(service=True, container=True, object=True),
                                        AccountSasPermissions.from_string(letters), self._expiry())
        name, _, blob = path.partition("?")[0].partition("/")
        if row.level == "o":
            return generate_blob_sas(self.account, name, blob, account_key=key,
                                     permission=BlobSasPermissions.from_string(letters), expiry=self._expiry())
        return generate_container_sas(self.account, name, account_key=key,
                                      permission=ContainerSasPermissions.from_string(letters), expiry=self._expiry())

    def call(self, row: BlobRow, who: str, letters: str = "") -> tuple[int, str | None]:
        path = row.path.format(c=self.container, new=_unique("authznew"))
        headers = dict(row.headers)
        if row.source:
            src = f"http://127.0.0.1:{self.server.blob_port}/{self.account}/{self.container}/obj"
            token = generate_blob_sas(self.account, self.container, "obj", account_key=self.server.account_key,
                                      permission=BlobSasPermissions(read=True), expiry=self._expiry())
            headers["x-ms-copy-source"] = f"{src}?{token}"
        headers.setdefault("Content-Length", str(len(row.body)))
        if who == "account":
            status, resp_headers, _ = blob_signed(self.server, row.method, f"/{self.account}/{path}", headers,
                                                  body=row.body)
            return status, resp_headers.get("x-ms-error-code")
        target = f"/{self.account}/{quote(path, safe='/?=&%')}"
        if who == "sas":
            target += ("&" if "?" in target else "?") + self.sas(row, path, letters)
        headers.setdefault("x-ms-version", "2025-11-05")
        conn = http.client.HTTPConnection("127.0.0.1", self.server.blob_port, timeout=30)
        try:
            conn.request(row.method, target, body=row.body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            return resp.status, resp.getheader("x-ms-error-code")
        finally:
            conn.close()


def _blob_allowed(name: str, status: int, code: str | None) -> bool:
    assert status != 500, (name, code)
    return not (status in (401, 403, 404) and code in _DENIALS)


@pytest.mark.parametrize("name", sorted(BLOB_ROWS))
def test_blob_decisions(exastor_server, name):
    row = BLOB_ROWS[name]
    status, code = BlobCase(exastor_server).call(row, "account")
    assert _blob_allowed(name, status, code), (name, "account", status, code)
    for level in (None, "blob", "container"):
        status, code = BlobCase(exastor_server, public=level).call(row, "anonymous")
        want = level in row.public or row.anyone
        assert _blob_allowed(name, status, code) == want, (name, f"anonymous, public={level}", status, code)
    for letter in LETTERS:
        status, code = BlobCase(exastor_server).call(row, "sas", letter)
        want = letter in row.letters
        assert _blob_allowed(name, status, code) == want, (name, f"SAS sp={letter}", status, code)


def test_service_sas_cannot_do_account_or_container_configuration(exastor_server):
    """Container configuration and account operations need the account key or an account SAS."""
    for name, row in BLOB_ROWS.items():
        if row.service_sas or row.anyone:
            continue
        case = BlobCase(exastor_server)
        forced = BlobRow(row.method, row.path, row.letters, row.level, row.headers, row.body, service_sas=True,
                         public=row.public, source=row.source)
        path = row.path.format(c=case.container, new="whatever")
        token = generate_container_sas(exastor_server.account_name, case.container,
                                       account_key=exastor_server.account_key,
                                       permission=ContainerSasPermissions.from_string("racwdltfi"),
                                       expiry=datetime.now(UTC) + timedelta(hours=1))
        target = f"/{exastor_server.account_name}/{path}"
        target += ("&" if "?" in target else "?") + token
        conn = http.client.HTTPConnection("127.0.0.1", exastor_server.blob_port, timeout=30)
        try:
            conn.request(forced.method, target, body=forced.body,
                         headers={**forced.headers, "x-ms-version": "2025-11-05",
                                  "Content-Length": str(len(forced.body))})
            resp = conn.getresponse()
            resp.read()
            assert not _blob_allowed(name, resp.status, resp.getheader("x-ms-error-code")), (name, resp.status)
        finally:
            conn.close()
