"""POST Object: browser-based uploads with an HTML form (multipart/form-data).

The form's fields come first and are small; the ``file`` field comes last and
is streamed into the store without being buffered. A form with a ``policy``
is signed (V2: HMAC-SHA1 of the base64 policy with the secret key; V4: the
SigV4 signing key over the same text) and its conditions are checked against
the fields and the upload's size; a form without one is anonymous and needs a
bucket that anonymous callers may write.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from exastor.auth.principal import Principal
from exastor.s3 import access, checksum, objectlock, sse
from exastor.s3.acl import canned_acl
from exastor.s3.common import MAX_PUT_SIZE, S3Call, add_user_metadata
from exastor.s3.errors import S3Error
from exastor.s3.sigv4 import check_scope, derive_signing_key
from exastor.s3.xml import HEADER, el, parse_tagging

MAX_FIELDS_BYTES = 1 << 20   # everything before the file part
# fields that need no policy condition
_UNCHECKED = {"awsaccesskeyid", "signature", "file", "policy", "x-amz-signature", "x-amz-credential",
              "x-amz-algorithm", "x-amz-date", "x-amz-security-token"}
_CONTENT_FIELDS = ("content-type", "content-encoding", "content-disposition", "content-language",
                   "cache-control", "expires")
_EXPIRATION = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


class _Form:
    """A streaming multipart/form-data reader: fields up to the file part, then the file's bytes."""

    def __init__(self, stream: AsyncIterator[bytes | memoryview], boundary: bytes) -> None:
        self._stream = stream.__aiter__()
        self._delim = b"\r\n--" + boundary
        self._buf = b"\r\n"  # so the first boundary looks like every other one
        self._done = False

    async def _more(self) -> bool:
        try:
            piece = await self._stream.__anext__()
        except StopAsyncIteration:
            return False
        self._buf += bytes(piece)
        if len(self._buf) > MAX_FIELDS_BYTES and not self._done:
            raise S3Error("MaxPostPreDataLengthExceeded", "Your POST request fields preceding the upload file "
                          "were too large.", status=400)
        return True

    async def _until(self, marker: bytes) -> bytes:
        while (i := self._buf.find(marker)) < 0:
            if not await self._more():
                raise S3Error("MalformedPOSTRequest", "The body of your POST request is not well-formed "
                              "multipart/form-data.", status=400)
        out, self._buf = self._buf[:i], self._buf[i + len(marker):]
        return out

    async def fields(self) -> tuple[dict[str, str], str | None]:
        """Every field before ``file`` (lower-cased names), and the file's filename."""
        fields: dict[str, str] = {}
        await self._until(self._delim)
        while True:
            while len(self._buf) < 2 and await self._more():
                pass
            if self._buf.startswith(b"--"):
                raise S3Error("InvalidArgument", "POST requires exactly one file upload per request.",
                              ArgumentName="file", ArgumentValue="0")
            head = (await self._until(b"\r\n\r\n")).decode("utf-8", "replace")
            disposition = next((line.split(":", 1)[1] for line in head.split("\r\n")
                                if line.lower().startswith("content-disposition:")), "")
            name = _param(disposition, "name")
            if name is None:
                raise S3Error("MalformedPOSTRequest", "A form part has no name.", status=400)
            if name.lower() == "file":
                return fields, _param(disposition, "filename")
            fields[name.lower()] = (await self._until(self._delim)).decode("utf-8", "replace")

    async def file(self) -> AsyncIterator[bytes]:
        """The file part's bytes, up to the next boundary."""
        self._done = True
        keep = len(self._delim)
        while True:
            i = self._buf.find(self._delim)
            if i >= 0:
                if i:
                    yield self._buf[:i]
                return
            if len(self._buf) > keep:
                out, self._buf = self._buf[:-keep], self._buf[-keep:]
                yield out
            if not await self._more():
                raise S3Error("IncompleteBody")


def _param(header: str, name: str) -> str | None:
    m = re.search(rf'(?:^|;)\s*{name}="([^"]*)"', header, re.IGNORECASE) or \
        re.search(rf"(?:^|;)\s*{name}=([^;\s]*)", header, re.IGNORECASE)
    return m.group(1) if m else None


def _authenticate(call: S3Call, fields: dict[str, str]) -> str | None:
    """The signing user, or None for an unsigned (anonymous) form."""
    policy_b64 = fields.get("policy")
    if policy_b64 is None:
        return None
    if "x-amz-signature" in fields or "x-amz-credential" in fields:
        credential = fields.get("x-amz-credential", "").split("/")
        if len(credential) != 5 or "x-amz-signature" not in fields or credential[4] != "aws4_request":
            raise S3Error("InvalidArgument", "POST form's V4 signature fields are incomplete")
        check_scope(credential[2], credential[3], "InvalidArgument", call.regions or None)
        amz_date = fields.get("x-amz-date", "")
        if amz_date and amz_date[:8] != credential[1]:
            raise S3Error("InvalidArgument", "The credential date does not match x-amz-date")
        user = call.ns.user_by_access_key(credential[0])
        if user is None:
            raise S3Error("InvalidAccessKeyId")
        key = derive_signing_key(user.secret_key, credential[1], credential[2], credential[3])
        expected = hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields["x-amz-signature"].strip()):
            raise S3Error("SignatureDoesNotMatch")
        return user.name
    access_key, signature = fields.get("awsaccesskeyid"), fields.get("signature")
    if not access_key or signature is None:
        raise S3Error("InvalidArgument", "Bucket POST must contain the fields AWSAccessKeyId and Signature "
                      "when it contains a policy", ArgumentName="Signature")
    user = call.ns.user_by_access_key(access_key)
    if user is None:
        raise S3Error("InvalidAccessKeyId")
    expected_v2 = base64.b64encode(hmac.new(user.secret_key.encode(), policy_b64.encode(), hashlib.sha1).digest())
    if not hmac.compare_digest(expected_v2.decode(), signature.strip()):
        raise S3Error("SignatureDoesNotMatch")
    return user.name


def _failed(reason: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {reason}")


def _check_policy(fields: dict[str, str]) -> tuple[int, int] | None:
    """Validate the policy document against the fields; the content-length-range, if any."""
    try:
        policy = json.loads(base64.b64decode(fields["policy"], validate=False))
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.", status=400) from exc
    if not isinstance(policy, dict) or "expiration" not in policy:
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Policy missing expiration.", status=400)
    if not isinstance(policy["expiration"], str) or not _EXPIRATION.fullmatch(policy["expiration"]):
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration' value.", status=400)
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    if expires < datetime.now(UTC):
        raise _failed("Policy expired.")
    conditions = policy.get("conditions")
    if not isinstance(conditions, list):
        raise S3Error("InvalidPolicyDocument", "Invalid Policy: Policy missing conditions.", status=400)
    covered: set[str] = set()
    size_range: tuple[int, int] | None = None
    for cond in conditions:
        if isinstance(cond, dict):
            if len(cond) != 1:
                raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid Simple-Condition: Simple-"
                              "Conditions must have exactly one property specified.", status=400)
            name, want = next(iter(cond.items()))
            op = "eq"
        elif isinstance(cond, list) and cond and isinstance(cond[0], str):
            op = cond[0].lower()
            if op == "content-length-range":
                if len(cond) != 3:
                    raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid content-length-range.",
                                  status=400)
                try:
                    low, high = int(cond[1]), int(cond[2])
                except (TypeError, ValueError) as exc:
                    raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid content-length-range.",
                                  status=400) from exc
                if low < 0 or high < low:
                    raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid content-length-range.",
                                  status=400)
                size_range = (low, high)
                continue
            if op not in ("eq", "starts-with") or len(cond) != 3 or not isinstance(cond[1], str) \
                    or not cond[1].startswith("$"):
                raise S3Error("InvalidPolicyDocument", f"Invalid Policy: Invalid condition {cond!r}.", status=400)
            name, want = cond[1][1:], cond[2]
        else:
            raise S3Error("InvalidPolicyDocument", "Invalid Policy: Invalid condition.", status=400)
        name = name.lower()
        got = fields.get(name)
        want = str(want)
        if got is None:
            raise _failed(f"Policy Condition failed: [\"{op}\", \"${name}\", \"{want}\"]")
        if op == "eq" and got != want or op == "starts-with" and not got.startswith(want):
            raise _failed(f"Policy Condition failed: [\"{op}\", \"${name}\", \"{want}\"]")
        covered.add(name)
    for name in fields:
        if name not in covered and name not in _UNCHECKED and not name.startswith(("x-ignore-", "x-amz-checksum-")):
            raise _failed(f"Extra input fields: {name}")
    return size_range


async def post_object(call: S3Call) -> None:
    ctype = call.h.get("content-type", "")
    boundary = _param(ctype, "boundary")
    if not ctype.lower().startswith("multipart/form-data") or not boundary:
        raise S3Error("PreconditionFailed", "Bucket POST must be of the enclosure-type multipart/form-data",
                      status=412)
    form = _Form(call.req.stream(), boundary.encode())
    fields, filename = await form.fields()
    principal = _authenticate(call, fields)
    call.principal = principal
    fields["bucket"] = call.bucket or ""
    key = fields.get("key")
    if not key:
        raise S3Error("InvalidArgument", "Bucket POST must contain a field named 'key'.  If it is specified, "
                      "please check the order of the fields.", ArgumentName="key", ArgumentValue="")
    if filename is not None:  # the policy applies to the key as it will be stored
        key = fields["key"] = key.replace("${filename}", filename)
    size_range = _check_policy(fields) if "policy" in fields else None
    call.key = key
    # Who signed the form, its key and its ACL complete the request's decision.
    who = Principal.user(principal) if principal else Principal.anonymous()
    call.info.update(principal=who.label, key=key)
    bucket = call.ns.bucket(call.grant, call.bucket or "")
    bucket_owner = bucket.owner if bucket else None
    owner = access.new_object_owner(call, bucket, fields.get("acl"))
    acl = None
    if "acl" in fields:
        if access.acls_disabled(bucket) and fields["acl"].strip() != access.BUCKET_OWNER_FULL_CONTROL:
            raise S3Error("AccessControlListNotSupported", "The bucket does not allow ACLs", status=400)
        acl = canned_acl(fields["acl"], owner or principal or bucket_owner or "", bucket_owner, for_object=True)
    call.decision = call.grant.refine(principal=who, key=key, acl=acl)
    attrs: dict[str, Any] = {name: fields[name] for name in _CONTENT_FIELDS if name in fields}
    attrs.setdefault("content-type", "binary/octet-stream")
    add_user_metadata(attrs, fields)
    if "tagging" in fields:
        attrs["tags"] = parse_tagging(fields["tagging"].encode())
    if acl is not None and not access.acls_disabled(bucket):
        attrs["acl"] = acl
    attrs.update(objectlock.attrs_for_new_object(call, bucket))
    # A checksum field (x-amz-checksum-<algorithm>) is checked against the file as any upload's is.
    sums = checksum.BodyChecksums.over(checksum.requested(fields), {checksum.DEFAULT_ALGORITHM})

    def verify(_md5: str, size: int) -> None:
        if size_range is not None:
            if size > size_range[1]:
                raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
            if size < size_range[0]:
                raise S3Error("EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size")
        attrs["checksum"] = checksum.object_record(sums.finish({}), sums.request)

    obj = await sse.put_plain_or_encrypted(call, key, form.file(), attrs, fields, verify, MAX_PUT_SIZE,
                                           digesters=list(sums.running.values()), owner=owner)
    headers = [("etag", f'"{obj.etag}"')]
    if obj.version_id != "null":
        headers.append(("x-amz-version-id", obj.version_id))
    location = f"{call.req.scope.get('scheme', 'http')}://{call.h.get('host', '')}/{call.bucket}/{quote(key)}"
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        sep = "&" if "?" in redirect else "?"
        target = f"{redirect}{sep}bucket={quote(call.bucket or '')}&key={quote(key)}&etag=%22{obj.etag}%22"
        await call.reply(303, b"", [*headers, ("location", target)], content_type=None)
        return
    status = fields.get("success_action_status", "204")
    if status == "201":
        body = (f"{HEADER}<PostResponse>{el('Location', location)}{el('Bucket', call.bucket)}{el('Key', key)}"
                f"{el('ETag', chr(34) + obj.etag + chr(34))}</PostResponse>").encode()
        await call.reply(201, body, [*headers, ("location", location)])
        return
    await call.reply(200 if status == "200" else 204, b"", headers, content_type=None)
