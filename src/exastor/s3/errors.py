"""S3 error codes, their HTTP statuses, and the XML body S3 clients parse.

Every failure that reaches an S3 client goes through :class:`S3Error`, so a
client always gets a code it understands and a request id, never a traceback.
"""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import escape

from exastor import errors, metrics
from exastor.meta.records import ObjectVersion

# code -> (HTTP status, default message). Codes and statuses from the S3 API reference.
ERRORS: dict[str, tuple[int, str]] = {
    "AccessDenied": (403, "Access Denied"),
    "AuthorizationHeaderMalformed": (400, "The authorization header is malformed."),
    "AuthorizationQueryParametersError": (400, "Error parsing the X-Amz-Credential parameter."),
    "BadDigest": (400, "The Content-MD5 you specified did not match what we received."),
    "BucketAlreadyExists": (409, "The requested bucket name is not available."),
    "BucketAlreadyOwnedByYou": (409, "Your previous request to create the named bucket succeeded and you already own it."),
    "BucketNotEmpty": (409, "The bucket you tried to delete is not empty."),
    "EntityTooLarge": (400, "Your proposed upload exceeds the maximum allowed object size."),
    "EntityTooSmall": (400, "Your proposed upload is smaller than the minimum allowed object size."),
    "ExpiredToken": (400, "The provided token has expired."),
    "IllegalVersioningConfigurationException": (400, "The versioning configuration specified in the request is invalid."),
    "IncompleteBody": (400, "You did not provide the number of bytes specified by the Content-Length HTTP header."),
    "InternalError": (500, "We encountered an internal error. Please try again."),
    "InvalidAccessKeyId": (403, "The AWS access key Id you provided does not exist in our records."),
    "InvalidArgument": (400, "Invalid Argument"),
    "InvalidBucketName": (400, "The specified bucket is not valid."),
    "InvalidBucketState": (409, "The request is not valid with the current state of the bucket."),
    "InvalidDigest": (400, "The Content-MD5 you specified is not valid."),
    "InvalidObjectState": (403, "The operation is not valid for the current state of the object."),
    "InvalidPart": (400, "One or more of the specified parts could not be found."),
    "InvalidPartOrder": (400, "The list of parts was not in ascending order."),
    "InvalidRange": (416, "The requested range is not satisfiable"),
    "InvalidRequest": (400, "Invalid Request"),
    "InvalidStorageClass": (400, "The storage class you specified is not valid."),
    "InvalidURI": (400, "Couldn't parse the specified URI."),
    "InvalidTag": (400, "The tag provided was not a valid tag."),
    "KeyTooLongError": (400, "Your key is too long."),
    "MalformedXML": (400, "The XML you provided was not well-formed or did not validate against our published schema."),
    "MaxMessageLengthExceeded": (400, "Your request was too big."),
    "MetadataTooLarge": (400, "Your metadata headers exceed the maximum allowed metadata size."),
    "MethodNotAllowed": (405, "The specified method is not allowed against this resource."),
    "MissingContentLength": (411, "You must provide the Content-Length HTTP header."),
    "MissingSecurityHeader": (400, "Your request is missing a required header."),
    "NoSuchBucket": (404, "The specified bucket does not exist."),
    "NoSuchKey": (404, "The specified key does not exist."),
    "NoSuchTagSet": (404, "The TagSet does not exist."),
    "NoSuchUpload": (404, "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."),
    "NoSuchVersion": (404, "The specified version does not exist."),
    "NoSuchBucketPolicy": (404, "The bucket policy does not exist."),
    "NoSuchCORSConfiguration": (404, "The CORS configuration does not exist."),
    "ServerSideEncryptionConfigurationNotFoundError": (404, "The server side encryption configuration was not found"),
    "NoSuchLifecycleConfiguration": (404, "The lifecycle configuration does not exist."),
    "NotImplemented": (501, "A header or query you provided implies functionality that is not implemented."),
    "NotModified": (304, "Not Modified"),
    "PreconditionFailed": (412, "At least one of the preconditions you specified did not hold."),
    "RequestTimeTooSkewed": (403, "The difference between the request time and the server's time is too large."),
    "RequestTimeout": (400, "Your socket connection to the server was not read from or written to within the timeout period."),
    "SignatureDoesNotMatch": (403, "The request signature we calculated does not match the signature you provided."),
    "ServiceUnavailable": (503, "Please reduce your request rate."),
    "SlowDown": (503, "Please reduce your request rate."),
    "XAmzContentSHA256Mismatch": (400, "The provided 'x-amz-content-sha256' header does not match what was computed."),
    "InvalidChecksum": (400, "The checksum you specified is invalid."),
    "ConditionalRequestConflict": (409, "A conflicting operation occurred."),
    # Not an AWS code: Ceph RGW's answer to a write past a bucket or user quota (403, not retried).
    "QuotaExceeded": (403, "The bucket's or its owner's quota would be exceeded; nothing was written."),
    # Not an AWS code: the closest S3-style answer to a full disk (HTTP 507 Insufficient Storage).
    "InsufficientStorage": (507, "The store has no space left for this object; nothing was written."),
}


class S3Error(Exception):
    """An error with an S3 code. Raise it anywhere in the S3 front-end."""

    def __init__(self, code: str, message: str | None = None, *, status: int | None = None,
                 resource: str | None = None, headers: dict[str, str] | None = None, **extra: str) -> None:
        default_status, default_message = ERRORS.get(code, (400, code))
        self.code = code
        self.status = status or default_status
        self.message = message or default_message
        self.resource = resource
        self.headers = headers or {}
        self.extra = extra  # extra XML elements, e.g. Key, BucketName, ArgumentName
        super().__init__(f"{code}: {self.message}")

    def to_xml(self, request_id: str) -> bytes:
        parts = [f"<Code>{_text(self.code)}</Code>", f"<Message>{_text(self.message)}</Message>"]
        for name, value in self.extra.items():
            parts.append(f"<{name}>{_text(str(value))}</{name}>")
        if self.resource:
            parts.append(f"<Resource>{_text(self.resource)}</Resource>")
        parts.append(f"<RequestId>{request_id}</RequestId>")
        # "replace": a %FF path decodes to a lone surrogate, which UTF-8 cannot carry
        return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>' + "".join(parts) + "</Error>").encode(
            "utf-8", "replace")


_SIMPLE: dict[type[errors.StoreError], str] = {
    errors.AccessDenied: "AccessDenied",
    errors.BucketNotFound: "NoSuchBucket",
    errors.BucketNotEmpty: "BucketNotEmpty",
    errors.InvalidBucketName: "InvalidBucketName",
    errors.InvalidKey: "InvalidArgument",
    errors.KeyTooLong: "KeyTooLongError",
    errors.VersionNotFound: "NoSuchVersion",
    errors.UploadNotFound: "NoSuchUpload",
    errors.InvalidPart: "InvalidPart",
    errors.InvalidPartOrder: "InvalidPartOrder",
    errors.PartTooSmall: "EntityTooSmall",
    errors.ConditionalConflict: "ConditionalRequestConflict",
    errors.PreconditionFailed: "PreconditionFailed",
    errors.BadDigest: "BadDigest",
    errors.IncompleteBody: "IncompleteBody",
    errors.EntityTooLarge: "EntityTooLarge",
    errors.InvalidArgument: "InvalidArgument",
    errors.InvalidRange: "InvalidRange",
    errors.InsufficientStorage: "InsufficientStorage",
    errors.QuotaExceeded: "QuotaExceeded",
    errors.Unavailable: "ServiceUnavailable",
    errors.DataCorrupted: "InternalError",
}


def to_s3_error(exc: errors.StoreError, call: Any = None) -> S3Error:
    """The S3 error for a protocol-neutral one (``call``: the request, for the Key of NoSuchKey)."""
    if isinstance(exc, errors.QuotaExceeded):
        metrics.refused("quota", "s3", exc.info.get("scope"))
    if isinstance(exc, errors.SlowDown):
        return S3Error("SlowDown", headers={"Retry-After": str(exc.info.get("retry_after", 1))})
    if isinstance(exc, errors.BucketExists):
        return S3Error("BucketAlreadyOwnedByYou" if exc.info.get("owned_by_caller") else "BucketAlreadyExists")
    if isinstance(exc, errors.ObjectNotFound | errors.MethodNotAllowed):
        marker = exc.info.get("delete_marker")
        headers = {}
        if isinstance(marker, ObjectVersion):
            headers = {"x-amz-delete-marker": "true", "x-amz-version-id": marker.version_id}
        if isinstance(exc, errors.MethodNotAllowed):
            return S3Error("MethodNotAllowed", headers=headers)
        return S3Error("NoSuchKey", headers=headers, Key=call.key if call and call.key else "")
    for cls in type(exc).__mro__:
        code = _SIMPLE.get(cls)
        if code:
            return S3Error(code, exc.detail or None if code == "InvalidArgument" else None)
    return S3Error("InternalError")


# Characters XML 1.0 cannot carry even escaped (C0 controls but tab, LF, CR; lone surrogates are
# handled by the "replace" encoding): a request naming ``%00`` is answered with a document its
# client can parse, the character shown as U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: str) -> str:
    return escape(_NOT_XML.sub("\ufffd", value))
