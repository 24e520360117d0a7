"""Every S3 and Blob operation by its own protocol's name, what it touches, and what each part needs.

This table is the whole of the authorization rules' inputs: the routers name the operation a
request is, the authorizer (auth/authorizer.py) reads that operation's row and nothing else, and
docs/security.md's operation x permission table is generated from it (``markdown_table``; a test keeps
the two equal). An operation without a row cannot be routed (``operation`` raises KeyError), so a
new operation is closed until someone writes down what it needs.

Vocabulary:

- ``scope`` of a resource: ``service`` (the caller's own buckets), ``new-bucket`` (a bucket to
  create), ``bucket`` (an existing bucket), ``key`` (a key in an existing bucket, decided on the
  bucket: writes), ``object`` (an existing object, decided on the object itself: its ACL, owner and
  tags; reading a missing one needs what listing the bucket needs, so a caller who may not list
  learns nothing).
- ``action``: the IAM action a bucket policy is asked about (the S3 name for S3 operations; the
  nearest S3 action for Blob operations, so one policy governs both APIs).
- ``acl``: the ACL permission that grants the action without a policy (on the bucket for
  ``bucket``/``key`` scopes, on the object for ``object``); None means the owner only.
- ``access``: what the namespace then lets the handler do with that resource (READ or WRITE).
- Blob only: ``sas`` letters (one suffices), the SAS resource level (``s``/``c``/``o``), whether a
  service SAS may do it at all, ``create_only`` (with ``c`` but not ``w``: only a blob that does not
  exist yet), and the container public-access levels that admit anonymous callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, Unpack

from exastor.namespace.operations import READ, WRITE

SERVICE, NEW_BUCKET, BUCKET, KEY, OBJECT = "service", "new-bucket", "bucket", "key", "object"
ANYONE = "ANYONE"   # an ``acl`` that admits every caller (CORS preflights)
ROW_ONLY = ""       # an ``access`` that hands the handler the bucket's row and nothing else


@dataclass(frozen=True)
class Need:
    """What one resource an operation touches needs."""

    scope: str
    action: str
    acl: str | None
    access: str
    versioned_action: str | None = None  # the action when the request names a version (GetObject?versionId)
    public: tuple[str, ...] = ()         # Blob: container public-access levels that admit anonymous callers


@dataclass(frozen=True)
class Operation:
    api: str                          # "s3" | "blob"
    name: str                         # the protocol's own name: PutObject, CopyBlob, ...
    target: Need
    source: Need | None = None        # a copy / URL source (S3: the caller's rights; Blob: the URL's own)
    authenticated: bool = False       # anonymous callers may not, whatever an ACL or policy says
    owner_always: bool = False        # the bucket owner may even against a policy Deny (no lock-out)
    per_key: bool = False             # keys arrive in the body: each is decided when reached (DeleteObjects)
    body_refines: bool = False        # the decision is completed from the body (PostObject, PutObjectTagging)
    signer_in_body: bool = False      # who asks is known only from the body (PostObject's signed form)
    sets_acl: bool = False            # may store an ACL (headers or body): Block Public Access refuses a public one
    sets_policy: bool = False         # stores the bucket policy: Block Public Access refuses a public one
    sas: str = ""                     # Blob: SAS permission letters, any one of which suffices
    sas_level: str = ""               # Blob: "s" service, "c" container, "o" object; "" = no SAS may
    service_sas: bool = False         # Blob: a service SAS (sr=c/b/bs) may do it, not only an account SAS
    create_only: bool = False         # Blob: a SAS with c but not w may only create (never overwrite)


class _Flags(TypedDict, total=False):
    """Operation's yes/no fields, as the table below passes them (each False unless given)."""
    authenticated: bool
    owner_always: bool
    per_key: bool
    body_refines: bool
    signer_in_body: bool
    sets_acl: bool
    sets_policy: bool
    service_sas: bool
    create_only: bool


def _s3(name: str, scope: str, action: str, acl: str | None, access: str, *, versioned: str | None = None,
        source: bool = False, **kw: Unpack[_Flags]) -> Operation:
    src = Need(OBJECT, "s3:GetObject", "READ", READ, "s3:GetObjectVersion") if source else None
    return Operation("s3", name, Need(scope, action, acl, access, versioned), src, **kw)


def _blob(name: str, scope: str, action: str, acl: str | None, access: str, sas: str, sas_level: str, *,
          source: bool = False, public: tuple[str, ...] = (), **kw: Unpack[_Flags]) -> Operation:
    # A source is read with its own credentials: a SAS in its URL, or public access (either level).
    src = Need(OBJECT, "s3:GetObject", "READ", READ, public=("blob", "container")) if source else None
    return Operation("blob", name, Need(scope, action, acl, access, public=public), src, sas=sas,
                     sas_level=sas_level, **kw)


class _BlobDefaults(TypedDict, total=False):
    """Keyword defaults shared by many Blob operations (typed, so the table's ** is checked)."""
    service_sas: bool
    public: tuple[str, ...]


_BLOB_READ: _BlobDefaults = {"service_sas": True, "public": ("blob", "container")}
_BLOB_WRITE: _BlobDefaults = {"service_sas": True}

OPERATIONS: dict[tuple[str, str], Operation] = {(op.api, op.name): op for op in (
    # --- S3: service and buckets ------------------------------------------------------------------
    _s3("ListBuckets", SERVICE, "s3:ListAllMyBuckets", None, READ),
    _s3("CreateBucket", NEW_BUCKET, "s3:CreateBucket", None, WRITE, authenticated=True),
    _s3("DeleteBucket", BUCKET, "s3:DeleteBucket", None, WRITE),
    _s3("HeadBucket", BUCKET, "s3:ListBucket", "READ", READ),
    _s3("GetBucketLocation", BUCKET, "s3:GetBucketLocation", None, READ),
    _s3("GetBucketVersioning", BUCKET, "s3:GetBucketVersioning", None, READ),
    _s3("PutBucketVersioning", BUCKET, "s3:PutBucketVersioning", None, WRITE),
    _s3("GetBucketTagging", BUCKET, "s3:GetBucketTagging", None, READ),
    _s3("PutBucketTagging", BUCKET, "s3:PutBucketTagging", None, WRITE),
    _s3("DeleteBucketTagging", BUCKET, "s3:PutBucketTagging", None, WRITE),
    _s3("GetBucketAcl", BUCKET, "s3:GetBucketAcl", "READ_ACP", READ),
    _s3("PutBucketAcl", BUCKET, "s3:PutBucketAcl", "WRITE_ACP", WRITE, body_refines=True, sets_acl=True),
    _s3("GetBucketPolicy", BUCKET, "s3:GetBucketPolicy", None, READ, owner_always=True),
    _s3("PutBucketPolicy", BUCKET, "s3:PutBucketPolicy", None, WRITE, owner_always=True, body_refines=True,
        sets_policy=True),
    _s3("DeleteBucketPolicy", BUCKET, "s3:DeleteBucketPolicy", None, WRITE, owner_always=True),
    _s3("GetBucketCors", BUCKET, "s3:GetBucketCORS", None, READ),
    _s3("PutBucketCors", BUCKET, "s3:PutBucketCORS", None, WRITE),
    _s3("DeleteBucketCors", BUCKET, "s3:PutBucketCORS", None, WRITE),
    _s3("GetBucketLifecycleConfiguration", BUCKET, "s3:GetLifecycleConfiguration", None, READ),
    _s3("PutBucketLifecycleConfiguration", BUCKET, "s3:PutLifecycleConfiguration", None, WRITE),
    _s3("DeleteBucketLifecycle", BUCKET, "s3:PutLifecycleConfiguration", None, WRITE),
    _s3("GetBucketEncryption", BUCKET, "s3:GetEncryptionConfiguration", None, READ),
    _s3("PutBucketEncryption", BUCKET, "s3:PutEncryptionConfiguration", None, WRITE),
    _s3("DeleteBucketEncryption", BUCKET, "s3:PutEncryptionConfiguration", None, WRITE),
    _s3("GetBucketOwnershipControls", BUCKET, "s3:GetBucketOwnershipControls", None, READ),
    _s3("PutBucketOwnershipControls", BUCKET, "s3:PutBucketOwnershipControls", None, WRITE),
    _s3("DeleteBucketOwnershipControls", BUCKET, "s3:PutBucketOwnershipControls", None, WRITE),
    _s3("GetPublicAccessBlock", BUCKET, "s3:GetBucketPublicAccessBlock", None, READ),
    _s3("PutPublicAccessBlock", BUCKET, "s3:PutBucketPublicAccessBlock", None, WRITE),
    _s3("DeletePublicAccessBlock", BUCKET, "s3:PutBucketPublicAccessBlock", None, WRITE),
    _s3("GetBucketPolicyStatus", BUCKET, "s3:GetBucketPolicyStatus", None, READ),
    _s3("GetObjectLockConfiguration", BUCKET, "s3:GetBucketObjectLockConfiguration", None, READ),
    _s3("PutObjectLockConfiguration", BUCKET, "s3:PutBucketObjectLockConfiguration", None, WRITE),
    _s3("ListObjects", BUCKET, "s3:ListBucket", "READ", READ),
    _s3("ListObjectsV2", BUCKET, "s3:ListBucket", "READ", READ),
    _s3("ListObjectVersions", BUCKET, "s3:ListBucketVersions", "READ", READ),
    _s3("ListMultipartUploads", BUCKET, "s3:ListBucketMultipartUploads", "READ", READ),
    _s3("DeleteObjects", KEY, "s3:DeleteObject", "WRITE", WRITE, versioned="s3:DeleteObjectVersion",
        per_key=True),
    _s3("PostObject", KEY, "s3:PutObject", "WRITE", WRITE, body_refines=True, signer_in_body=True,
        sets_acl=True),
    # CORS preflights carry no credentials by design: they read the bucket's CORS rules, nothing else.
    _s3("CorsPreflight", BUCKET, "", ANYONE, ROW_ONLY),
    # --- S3: objects ------------------------------------------------------------------------------
    _s3("GetObject", OBJECT, "s3:GetObject", "READ", READ, versioned="s3:GetObjectVersion"),
    _s3("HeadObject", OBJECT, "s3:GetObject", "READ", READ, versioned="s3:GetObjectVersion"),
    _s3("GetObjectAttributes", OBJECT, "s3:GetObjectAttributes", "READ", READ,
        versioned="s3:GetObjectVersionAttributes"),
    _s3("PutObject", KEY, "s3:PutObject", "WRITE", WRITE, sets_acl=True),
    _s3("CopyObject", KEY, "s3:PutObject", "WRITE", WRITE, source=True, sets_acl=True),
    _s3("DeleteObject", KEY, "s3:DeleteObject", "WRITE", WRITE, versioned="s3:DeleteObjectVersion"),
    _s3("GetObjectTagging", OBJECT, "s3:GetObjectTagging", "READ", READ, versioned="s3:GetObjectVersionTagging"),
    _s3("PutObjectTagging", OBJECT, "s3:PutObjectTagging", None, WRITE, versioned="s3:PutObjectVersionTagging",
        body_refines=True),
    _s3("DeleteObjectTagging", OBJECT, "s3:DeleteObjectTagging", None, WRITE,
        versioned="s3:DeleteObjectVersionTagging"),
    _s3("GetObjectAcl", OBJECT, "s3:GetObjectAcl", "READ_ACP", READ, versioned="s3:GetObjectVersionAcl"),
    _s3("PutObjectAcl", OBJECT, "s3:PutObjectAcl", "WRITE_ACP", WRITE, versioned="s3:PutObjectVersionAcl",
        body_refines=True, sets_acl=True),
    _s3("GetObjectRetention", OBJECT, "s3:GetObjectRetention", None, READ),
    _s3("PutObjectRetention", OBJECT, "s3:PutObjectRetention", None, WRITE),
    _s3("GetObjectLegalHold", OBJECT, "s3:GetObjectLegalHold", None, READ),
    _s3("PutObjectLegalHold", OBJECT, "s3:PutObjectLegalHold", None, WRITE),
    _s3("CreateMultipartUpload", KEY, "s3:PutObject", "WRITE", WRITE, sets_acl=True),
    _s3("UploadPart", KEY, "s3:PutObject", "WRITE", WRITE),
    _s3("UploadPartCopy", KEY, "s3:PutObject", "WRITE", WRITE, source=True),
    _s3("CompleteMultipartUpload", KEY, "s3:PutObject", "WRITE", WRITE),
    _s3("AbortMultipartUpload", KEY, "s3:AbortMultipartUpload", "WRITE", WRITE),
    _s3("ListParts", KEY, "s3:ListMultipartUploadParts", "READ", READ),
    # --- Blob: the account ------------------------------------------------------------------------
    _blob("ListContainers", SERVICE, "s3:ListAllMyBuckets", None, READ, "l", "s", authenticated=True),
    _blob("GetServiceProperties", SERVICE, "s3:GetAccountSettings", None, READ, "r", "s", authenticated=True),
    _blob("SetServiceProperties", SERVICE, "s3:PutAccountSettings", None, WRITE, "w", "s", authenticated=True),
    _blob("GetServiceStats", SERVICE, "s3:GetAccountSettings", None, READ, "r", "s", authenticated=True),
    _blob("GetAccountInformation", SERVICE, "s3:GetAccountSettings", None, READ, "", "s", authenticated=True),
    _blob("FindBlobsByTags", SERVICE, "s3:ListAllMyBuckets", None, READ, "f", "s", authenticated=True),
    # A batch's sub-requests carry their own credentials and are each decided as if sent alone: the
    # batch itself needs only a caller who may reach the account (or the container) at all.
    _blob("SubmitBatch", SERVICE, "s3:ListAllMyBuckets", None, READ, "", "s", authenticated=True),
    # Preflights carry no credentials by design: they read the account's CORS rules, nothing else.
    _blob("CorsPreflight", SERVICE, "", ANYONE, ROW_ONLY, "", ""),
    # --- Blob: containers -------------------------------------------------------------------------
    _blob("CreateContainer", NEW_BUCKET, "s3:CreateBucket", None, WRITE, "c", "c", authenticated=True),
    _blob("DeleteContainer", BUCKET, "s3:DeleteBucket", None, WRITE, "d", "c"),
    _blob("GetContainerProperties", BUCKET, "s3:ListBucket", "READ", READ, "r", "c", public=("container",)),
    _blob("GetContainerMetadata", BUCKET, "s3:ListBucket", "READ", READ, "r", "c", public=("container",)),
    _blob("SetContainerMetadata", BUCKET, "s3:PutBucketTagging", None, WRITE, "w", "c"),
    _blob("GetContainerACL", BUCKET, "s3:GetBucketAcl", "READ_ACP", READ, "r", "c"),
    _blob("SetContainerACL", BUCKET, "s3:PutBucketAcl", "WRITE_ACP", WRITE, "w", "c"),
    _blob("LeaseContainer", BUCKET, "s3:PutBucketObjectLockConfiguration", None, WRITE, "w", "c"),
    _blob("ListBlobs", BUCKET, "s3:ListBucket", "READ", READ, "l", "c", service_sas=True, public=("container",)),
    _blob("FindBlobsByTagsInContainer", BUCKET, "s3:ListBucket", "READ", READ, "f", "c", service_sas=True),
    _blob("SubmitBatchInContainer", BUCKET, "s3:ListBucket", None, READ, "", "c", service_sas=True),
    # --- Blob: blobs ------------------------------------------------------------------------------
    _blob("GetBlob", OBJECT, "s3:GetObject", "READ", READ, "r", "o", **_BLOB_READ),
    _blob("GetBlobProperties", OBJECT, "s3:GetObject", "READ", READ, "r", "o", **_BLOB_READ),
    _blob("GetBlobMetadata", OBJECT, "s3:GetObject", "READ", READ, "r", "o", **_BLOB_READ),
    _blob("GetBlockList", OBJECT, "s3:GetObject", "READ", READ, "r", "o", **_BLOB_READ),
    _blob("PutBlob", KEY, "s3:PutObject", "WRITE", WRITE, "cw", "o", create_only=True, **_BLOB_WRITE),
    _blob("PutBlobFromURL", KEY, "s3:PutObject", "WRITE", WRITE, "cw", "o", source=True, create_only=True,
          **_BLOB_WRITE),
    _blob("CopyBlob", KEY, "s3:PutObject", "WRITE", WRITE, "cw", "o", source=True, create_only=True,
          **_BLOB_WRITE),
    _blob("AbortCopyBlob", KEY, "s3:PutObject", "WRITE", WRITE, "w", "o", **_BLOB_WRITE),
    _blob("PutBlock", KEY, "s3:PutObject", "WRITE", WRITE, "cw", "o", **_BLOB_WRITE),
    _blob("PutBlockFromURL", KEY, "s3:PutObject", "WRITE", WRITE, "cw", "o", source=True, **_BLOB_WRITE),
    _blob("PutBlockList", KEY, "s3:PutObject", "WRITE", WRITE, "cw", "o", create_only=True, **_BLOB_WRITE),
    _blob("AppendBlock", KEY, "s3:PutObject", "WRITE", WRITE, "aw", "o", **_BLOB_WRITE),
    _blob("AppendBlockFromURL", KEY, "s3:PutObject", "WRITE", WRITE, "aw", "o", source=True, **_BLOB_WRITE),
    _blob("SealBlob", KEY, "s3:PutObject", "WRITE", WRITE, "w", "o", **_BLOB_WRITE),
    _blob("SetBlobMetadata", KEY, "s3:PutObject", "WRITE", WRITE, "w", "o", **_BLOB_WRITE),
    _blob("SetBlobProperties", KEY, "s3:PutObject", "WRITE", WRITE, "w", "o", **_BLOB_WRITE),
    _blob("SetBlobTier", KEY, "s3:PutObject", "WRITE", WRITE, "w", "o", **_BLOB_WRITE),
    _blob("SnapshotBlob", KEY, "s3:PutObject", "WRITE", WRITE, "cw", "o", **_BLOB_WRITE),
    _blob("UndeleteBlob", KEY, "s3:PutObject", "WRITE", WRITE, "w", "o", **_BLOB_WRITE),
    _blob("DeleteBlob", KEY, "s3:DeleteObject", "WRITE", WRITE, "d", "o", **_BLOB_WRITE),
    _blob("LeaseBlob", OBJECT, "s3:PutObjectLegalHold", None, WRITE, "w", "o", **_BLOB_WRITE),
    _blob("GetBlobTags", OBJECT, "s3:GetObjectTagging", "READ", READ, "t", "o", **_BLOB_WRITE),
    _blob("SetBlobTags", OBJECT, "s3:PutObjectTagging", None, WRITE, "t", "o", **_BLOB_WRITE),
    _blob("SetBlobExpiry", KEY, "s3:PutObjectRetention", None, WRITE, "w", "o", **_BLOB_WRITE),
    _blob("SetBlobImmutabilityPolicy", KEY, "s3:PutObjectRetention", None, WRITE, "i", "o", **_BLOB_WRITE),
    _blob("SetBlobLegalHold", KEY, "s3:PutObjectLegalHold", None, WRITE, "i", "o", **_BLOB_WRITE),
)}


def operation(api: str, name: str) -> Operation:
    """The row for an operation; KeyError for one nobody wrote down (closed by default)."""
    return OPERATIONS[(api, name)]


def markdown_table(api: str) -> str:
    """The operation x permission table of docs/security.md for one API, from the rows above."""
    if api == "s3":
        lines = ["| Operation | Resource | Policy action | ACL grant (without a policy) | Notes |",
                 "|---|---|---|---|---|"]
        for op in OPERATIONS.values():
            if op.api != "s3":
                continue
            t = op.target
            action = t.action + (f" (with versionId: {t.versioned_action})" if t.versioned_action else "")
            notes = []
            if op.source:
                notes.append("source: s3:GetObject(Version) with the caller's rights, object ACL READ")
            if op.authenticated:
                notes.append("signed requests only")
            if op.owner_always:
                notes.append("the bucket owner even against a policy Deny")
            if op.per_key:
                notes.append("decided per key of the body")
            if op.body_refines:
                notes.append("completed from the body")
            if op.sets_acl:
                notes.append("a public ACL is refused under BlockPublicAcls")
            if op.sets_policy:
                notes.append("a public policy is refused under BlockPublicPolicy")
            lines.append(f"| {op.name} | {t.scope} | {action or '-'} | {_acl_text(t)} | {'; '.join(notes)} |")
        return "\n".join(lines)
    lines = ["| Operation | Resource | SAS permission (any one) | SAS level | Service SAS | Anonymous | "
             "Policy action (account principal) | Notes |", "|---|---|---|---|---|---|---|---|"]
    for op in OPERATIONS.values():
        if op.api != "blob":
            continue
        t = op.target
        notes = []
        if op.source:
            notes.append("source read with the source URL's SAS, or public access; as the account only "
                         "under Shared Key")
        if op.create_only:
            notes.append("c without w: only a blob that does not exist yet")
        if op.authenticated:
            notes.append("account key or account SAS only")
        public = " / ".join(t.public) + " public access" if t.public else "no"
        if t.acl == ANYONE:
            public = "yes"
            notes.append("no credentials: reads the account's CORS rules only")
        lines.append(f"| {op.name} | {t.scope} | {op.sas or ('any' if op.sas_level else '-')} | "
                     f"{op.sas_level or '-'} | {'yes' if op.service_sas else 'no'} | {public} | {t.action or '-'} | "
                     f"{'; '.join(notes)} |")
    return "\n".join(lines)


def _acl_text(need: Need) -> str:
    if need.acl == ANYONE:
        return "anyone"
    if need.scope == SERVICE:
        return "the caller's own buckets"
    if need.scope == NEW_BUCKET:
        return "any signed user (who then owns it)"
    where = "object" if need.scope == OBJECT else "bucket"
    if need.acl is None:
        return f"{where} owner only"
    return f"{need.acl} on the {where}"
