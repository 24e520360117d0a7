"""Azure Blob error codes, their HTTP statuses, and the XML body the SDKs parse.

The SDKs map errors by the ``x-ms-error-code`` header (the body is for people), so every
error carries both. HEAD responses carry the header only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from xml.sax.saxutils import escape

# code -> (HTTP status, message). From the Blob service error code reference.
ERRORS: dict[str, tuple[int, str]] = {
    "AccountIsDisabled": (403, "The specified account is disabled."),
    "AppendPositionConditionNotMet": (412, "The append position condition specified was not met."),
    "AuthenticationFailed": (403, "Server failed to authenticate the request. Make sure the value of the "
                             "Authorization header is formed correctly including the signature."),
    "AuthorizationFailure": (403, "This request is not authorized to perform this operation."),
    "AuthorizationPermissionMismatch": (403, "This request is not authorized to perform this operation using "
                                        "this permission."),
    "AuthorizationResourceTypeMismatch": (403, "This request is not authorized to perform this operation using "
                                          "this resource type."),
    "AuthorizationServiceMismatch": (403, "This request is not authorized to perform this operation using this "
                                     "service."),
    "AuthorizationSourceIPMismatch": (403, "This request is not authorized to perform this operation using this "
                                      "source IP."),
    "AuthorizationProtocolMismatch": (403, "This request is not authorized to perform this operation using this "
                                      "protocol."),
    "BlobAlreadyExists": (409, "The specified blob already exists."),
    "BlobIsSealed": (409, "The blob is sealed and its contents cannot be modified."),
    "BlobUsesCustomerSpecifiedEncryption": (409, "The blob is encrypted with customer specified encryption, "
                                            "but it was not provided in the request."),
    "BlobNotFound": (404, "The specified blob does not exist."),
    "BlobTierInadequateForContentLength": (409, "The blob's tier is inadequate for the content length."),
    "BlockCountExceedsLimit": (409, "The committed block count cannot exceed the maximum limit of 50,000 blocks."),
    "BlockListTooLong": (400, "The block list may not contain more than 50,000 blocks."),
    "CannotVerifyCopySource": (500, "Could not verify the copy source within the specified time."),
    "ConditionHeadersNotSupported": (400, "Condition headers are not supported."),
    "ConditionNotMet": (412, "The condition specified using HTTP conditional header(s) is not met."),
    "ContainerAlreadyExists": (409, "The specified container already exists."),
    "ContainerBeingDeleted": (409, "The specified container is being deleted."),
    "ContainerNotFound": (404, "The specified container does not exist."),
    "FeatureNotSupported": (409, "The requested feature is not supported by this server."),
    "InsufficientAccountPermissions": (403, "The account being accessed does not have sufficient permissions to "
                                       "execute this operation."),
    "InternalError": (500, "The server encountered an internal error. Please retry the request."),
    "InvalidAuthenticationInfo": (400, "Authentication information is not given in the correct format."),
    "InvalidBlobOrBlock": (400, "The specified blob or block content is invalid."),
    "InvalidBlobTier": (400, "The specified blob tier is invalid."),
    "InvalidBlobType": (409, "The blob type is invalid for this operation."),
    "InvalidBlockId": (400, "The specified block ID is invalid. The block ID must be Base64-encoded."),
    "InvalidBlockList": (400, "The specified block list is invalid."),
    "InvalidHeaderValue": (400, "The value for one of the HTTP headers is not in the correct format."),
    "InvalidInput": (400, "One of the request inputs is not valid."),
    "InvalidMd5": (400, "The MD5 value specified in the request is invalid. It must be 128 bits and Base64-encoded."),
    "InvalidMetadata": (400, "The metadata specified is invalid. It has characters that are not permitted."),
    "InvalidOperation": (400, "Invalid operation against a blob snapshot."),
    "InvalidQueryParameterValue": (400, "Value for one of the query parameters specified in the request URI is "
                                   "invalid."),
    "InvalidRange": (416, "The range specified is invalid for the current size of the resource."),
    "InvalidResourceName": (400, "The specified resource name contains invalid characters."),
    "InvalidUri": (400, "The requested URI does not represent any resource on the server."),
    "InvalidXmlDocument": (400, "XML specified is not syntactically valid."),
    "InvalidXmlNodeValue": (400, "The value for one of the XML nodes is not in the correct format."),
    "LeaseAlreadyPresent": (409, "There is already a lease present."),
    "LeaseAlreadyBroken": (409, "The lease has already been broken and cannot be broken again."),
    "LeaseIdMismatchWithBlobOperation": (412, "The lease ID specified did not match the lease ID for the blob."),
    "LeaseIdMismatchWithContainerOperation": (412, "The lease ID specified did not match the lease ID for the "
                                              "container."),
    "LeaseIdMismatchWithLeaseOperation": (409, "The lease ID specified did not match the lease ID for the blob/"
                                          "container."),
    "LeaseIdMissing": (412, "There is currently a lease on the blob/container and no lease ID was specified in "
                       "the request."),
    "LeaseIsBreakingAndCannotBeAcquired": (409, "The lease ID matched, but the lease is currently in breaking state "
                                           "and cannot be acquired until it is broken."),
    "LeaseIsBreakingAndCannotBeChanged": (409, "The lease ID matched, but the lease is currently in breaking state "
                                          "and cannot be changed."),
    "LeaseIsBrokenAndCannotBeRenewed": (409, "The lease ID matched, but the lease has been broken explicitly and "
                                        "cannot be renewed."),
    "LeaseLost": (412, "A lease ID was specified, but the lease for the blob/container has expired."),
    "LeaseNotPresentWithBlobOperation": (412, "There is currently no lease on the blob."),
    "LeaseNotPresentWithContainerOperation": (412, "There is currently no lease on the container."),
    "LeaseNotPresentWithLeaseOperation": (409, "There is currently no lease on the blob/container."),
    "MaxBlobSizeConditionNotMet": (412, "The max blob size condition specified was not met."),
    "Md5Mismatch": (400, "The MD5 value specified in the request did not match with the MD5 value calculated by "
                    "the server."),
    "Crc64Mismatch": (400, "The CRC64 value specified in the request did not match with the CRC64 value "
                      "calculated by the server."),
    "MissingRequiredHeader": (400, "An HTTP header that's mandatory for this request is not specified."),
    "MissingRequiredQueryParameter": (400, "A query parameter that's mandatory for this request is not specified."),
    "MissingRequiredXmlNode": (400, "An XML node that's mandatory for this request is not specified."),
    "NoAuthenticationInformation": (401, "Server failed to authenticate the request. Please refer to the "
                                    "information in the www-authenticate header."),
    "OperationNotAllowedOnSealedBlob": (409, "The operation is not allowed on a sealed blob."),
    "OutOfRangeInput": (400, "One of the request inputs is out of range."),
    "OutOfRangeQueryParameterValue": (400, "One of the query parameters specified in the request URI is outside "
                                      "the permissible range."),
    "PageBlobNotSupported": (400, "Page blobs are not supported by exastor (they serve VM disks, not data sets); "
                             "use block or append blobs."),
    "RequestBodyTooLarge": (413, "The request body is too large and exceeds the maximum permissible limit."),
    "ResourceNotFound": (404, "The specified resource does not exist."),
    "ServerBusy": (503, "The server is currently unable to receive requests. Please retry your request."),
    "InsufficientStorage": (507, "The server is out of space for this request."),
    # Not an Azure code (Azure has no container quotas): the same answer as exastor's S3 side.
    "QuotaExceeded": (403, "The container's or its owner's quota would be exceeded; nothing was written."),
    "SnapshotsPresent": (409, "This operation is not permitted because the blob has snapshots."),
    "UnsupportedHeader": (400, "One of the HTTP headers specified in the request is not supported."),
    "UnsupportedHttpVerb": (405, "The resource doesn't support the specified HTTP verb."),
    "UnsupportedQueryParameter": (400, "One of the query parameters specified in the request URI is not "
                                  "supported."),
    "NotImplemented": (501, "The requested operation is not implemented by exastor."),
}


class BlobError(Exception):
    """An error to send to a Blob client."""

    def __init__(self, code: str, message: str | None = None, *, status: int | None = None,
                 headers: dict[str, str] | None = None, **extra: str) -> None:
        default_status, default_message = ERRORS.get(code, (400, code))
        self.code = code
        self.status = status or default_status
        self.message = message or default_message
        self.headers = headers or {}
        self.extra = extra
        super().__init__(f"{code}: {self.message}")

    def to_xml(self, request_id: str) -> bytes:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
        extra = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in self.extra.items())
        return (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{self.code}</Code>'
                f"<Message>{escape(self.message)}\nRequestId:{request_id}\nTime:{now}</Message>{extra}</Error>"
                ).encode("utf-8", "replace")
