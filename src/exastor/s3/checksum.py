"""Flexible checksums as S3 speaks them: which the client asked for, which are computed and kept,
and what a multipart object's checksum is (docs/compatibility.md, "Flexible checksums").

- A request names at most one algorithm: an ``x-amz-checksum-<alg>`` header with its value, or an
  ``x-amz-trailer: x-amz-checksum-<alg>`` whose value follows the aws-chunked body, optionally
  repeated by ``x-amz-sdk-checksum-algorithm``. Anything else is S3's InvalidRequest, with S3's
  message; a value that is not base64 of the algorithm's digest size too; a value that does not
  match the body is BadDigest.
- Every object is stored with one full-object checksum: the one the client sent, else CRC64NVME
  (what S3 computes since 2025 for uploads without one). Parts keep theirs, and CRC64NVME besides
  when their upload names no algorithm, so the completed object's CRC64NVME is combined from them.
- A multipart upload names an algorithm and a type at CreateMultipartUpload: FULL_OBJECT (CRCs only:
  the parts' CRCs combined, as if the whole object had been hashed) or COMPOSITE (the algorithm
  over the parts' digests, ``<base64>-<parts>``); CRC64NVME is FULL_OBJECT only, the SHAs, MD5 and
  xxHashes COMPOSITE only.

The stored record is ``attrs["checksum"] = {"algorithm", "type", "value"}`` on an object, with
``attrs["part_checksums"]`` (one value per part) when its upload named an algorithm; a part's attrs
hold ``{"checksums": {ALGORITHM: value}}``. Objects written before this kept ``attrs["checksums"]``.
Hashing is the compiled code in http/checksums.py.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from exastor.http import checksums
from exastor.s3.errors import S3Error

FULL_OBJECT, COMPOSITE = "FULL_OBJECT", "COMPOSITE"
DEFAULT_ALGORITHM = "CRC64NVME"
_NOT_ALGORITHMS = ("type", "algorithm", "mode")  # x-amz-checksum-<these> are not digests


def invalid_value(header: str, *, trailing: bool = False) -> S3Error:
    return S3Error("InvalidRequest", f"Value for {header} {'trailing header' if trailing else 'header'} is invalid.")


def unsupported_algorithm() -> S3Error:
    return S3Error("InvalidRequest", "Checksum algorithm provided is unsupported. Please try again with any of the "
                   f"valid types: [{', '.join(sorted(checksums.ALGORITHMS))}]")


def bad_digest(algorithm: str) -> S3Error:
    return S3Error("BadDigest", f"The {algorithm} you specified did not match the calculated checksum.")


def algorithm_name(value: str) -> str:
    """An algorithm as a client names it (any case), or InvalidRequest."""
    name = value.strip().upper()
    if not checksums.is_algorithm(name):
        raise unsupported_algorithm()
    return name


def valid_value(algorithm: str, value: str) -> bool:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == checksums.digest_size(algorithm)


@dataclass
class Requested:
    """The checksum a request carries for its body."""

    algorithm: str | None = None     # what the client named
    value: str | None = None         # its value from a header (checked once the body is read)
    trailer: str | None = None       # the trailer that will carry the value instead


def digest_headers(h: Mapping[str, str]) -> dict[str, str]:
    """{ALGORITHM: value} of the x-amz-checksum-<alg> headers; an unknown algorithm there is S3's
    InvalidRequest, and so are two of them."""
    found: dict[str, str] = {}
    for name, value in h.items():
        if not name.startswith("x-amz-checksum-"):
            continue
        suffix = name[len("x-amz-checksum-"):]
        if suffix in _NOT_ALGORITHMS:
            continue
        if not checksums.is_algorithm(suffix):
            raise S3Error("InvalidRequest", "The algorithm type you specified in x-amz-checksum- header is invalid.")
        found[suffix.upper()] = value
    if len(found) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are "
                      "not allowed.")
    return found


def requested(h: Mapping[str, str]) -> Requested:
    """The checksum of a PutObject / UploadPart body, validated as S3 does, before the body is read."""
    sdk = h.get("x-amz-sdk-checksum-algorithm") or h.get("x-amz-checksum-algorithm")
    sdk_algorithm = algorithm_name(sdk) if sdk else None
    found = digest_headers(h)
    trailer = h.get("x-amz-trailer", "").strip().lower()
    trailer_algorithm = None
    if trailer:
        if found:
            raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple checksum Types are "
                          "not allowed.")
        if not trailer.startswith("x-amz-checksum-") or not checksums.is_algorithm(trailer[len("x-amz-checksum-"):]):
            raise S3Error("InvalidRequest", "The value specified in the x-amz-trailer header is not supported")
        trailer_algorithm = trailer[len("x-amz-checksum-"):].upper()
    if sdk_algorithm is not None:
        if not found and trailer_algorithm is None:
            raise S3Error("InvalidRequest", "x-amz-sdk-checksum-algorithm specified, but no corresponding "
                          "x-amz-checksum-* or x-amz-trailer headers were found.")
        if trailer_algorithm is not None and trailer_algorithm != sdk_algorithm:
            raise invalid_value("x-amz-sdk-checksum-algorithm")
    if trailer_algorithm is not None:
        return Requested(trailer_algorithm, None, trailer)
    for algorithm, value in found.items():
        if not valid_value(algorithm, value):
            raise invalid_value(checksums.header_name(algorithm))
        if sdk_algorithm is not None and sdk_algorithm != algorithm:
            raise invalid_value("x-amz-sdk-checksum-algorithm")
        return Requested(algorithm, value.strip(), None)
    return Requested()


@dataclass
class BodyChecksums:
    """Running checksums over one body (the spec's digesters) and the check once it is read."""

    request: Requested
    running: dict[str, checksums.Checksum] = field(default_factory=dict)

    @classmethod
    def over(cls, request: Requested, algorithms: set[str]) -> BodyChecksums:
        wanted = set(algorithms) | ({request.algorithm} if request.algorithm else set())
        return cls(request, {alg: checksums.new_checksum(alg) for alg in sorted(wanted)})

    def finish(self, trailers: Mapping[str, str]) -> dict[str, str]:
        """{ALGORITHM: base64} of the body, once the client's own value is verified (BadDigest)."""
        values = {alg: ck.b64() for alg, ck in self.running.items()}
        req = self.request
        sent = req.value
        if req.trailer is not None:
            sent = trailers.get(req.trailer)
            if sent is None or not valid_value(req.algorithm or "", sent):
                raise invalid_value(req.trailer, trailing=True)
        if sent is not None and req.algorithm is not None and \
                not hmac.compare_digest(sent.strip(), values[req.algorithm]):
            raise bad_digest(req.algorithm)
        return values


# --- multipart uploads ---------------------------------------------------------------------------

_TYPES = {"CRC32": (FULL_OBJECT, COMPOSITE), "CRC32C": (FULL_OBJECT, COMPOSITE), "CRC64NVME": (FULL_OBJECT,)}


def upload_settings(h: Mapping[str, str]) -> dict[str, str]:
    """CreateMultipartUpload's x-amz-checksum-algorithm and x-amz-checksum-type, as the upload's attrs."""
    raw_algorithm, raw_type = h.get("x-amz-checksum-algorithm"), h.get("x-amz-checksum-type")
    algorithm = algorithm_name(raw_algorithm) if raw_algorithm else None
    kind = raw_type.strip().upper() if raw_type else None
    if kind is not None and kind not in (FULL_OBJECT, COMPOSITE):
        raise invalid_value("x-amz-checksum-type")
    if kind is not None and algorithm is None:
        raise S3Error("InvalidRequest", "The x-amz-checksum-type header can only be used with the "
                      "x-amz-checksum-algorithm header.")
    if algorithm is None:
        return {}
    allowed = _TYPES.get(algorithm, (COMPOSITE,))
    if kind is None:
        kind = allowed[-1] if algorithm != "CRC64NVME" else FULL_OBJECT
    if kind not in allowed:
        raise S3Error("InvalidRequest", f"The {kind} checksum type cannot be used with the {algorithm.lower()} "
                      "checksum algorithm.")
    return {"checksum_algorithm": algorithm, "checksum_type": kind}


def part_algorithms(upload_attrs: Mapping[str, Any], request: Requested) -> set[str]:
    """What a part of this upload is hashed with, or InvalidRequest when its checksum cannot belong
    to the upload (S3: "Checksum Type mismatch occurred")."""
    algorithm = upload_attrs.get("checksum_algorithm")
    if algorithm is None:
        return {DEFAULT_ALGORITHM}  # the completed object's default checksum is combined from these
    if request.algorithm is None and upload_attrs.get("checksum_type") == COMPOSITE:
        raise _type_mismatch(algorithm, None)
    if request.algorithm is not None and request.algorithm != algorithm:
        raise _type_mismatch(algorithm, request.algorithm)
    return {algorithm}


def _type_mismatch(expected: str | None, actual: str | None) -> S3Error:
    return S3Error("InvalidRequest", "Checksum Type mismatch occurred, expected checksum Type: "
                   f"{(expected or 'null').lower()}, actual checksum Type: {(actual or 'null').lower()}")


@dataclass
class CompleteRequest:
    """What CompleteMultipartUpload says about checksums: the header value and type, per part."""

    algorithm: str | None = None
    value: str | None = None
    kind: str | None = None
    parts: dict[int, tuple[str, str]] = field(default_factory=dict)   # part number -> (ALGORITHM, value)


def complete_request(h: Mapping[str, str]) -> CompleteRequest:
    req = CompleteRequest()
    for algorithm, value in digest_headers(h).items():
        base, dash, count = value.strip().partition("-")
        if (dash and (algorithm in ("CRC64NVME",) or not count.isdigit())) or not valid_value(algorithm, base):
            raise invalid_value(checksums.header_name(algorithm))
        req.algorithm, req.value = algorithm, value.strip()
    raw_type = h.get("x-amz-checksum-type")
    if raw_type:
        req.kind = raw_type.strip().upper()
        if req.kind not in (FULL_OBJECT, COMPOSITE):
            raise invalid_value("x-amz-checksum-type")
    return req


def part_checksum_elements(part: Any, text: Any) -> tuple[str, str] | None:
    """The Checksum<ALG> element of a <Part> in CompleteMultipartUpload (at most one)."""
    found = [(alg, text(part, f"Checksum{alg}")) for alg in checksums.ALGORITHMS]
    found = [(alg, v.strip()) for alg, v in found if v is not None]
    if len(found) > 1:
        raise S3Error("InvalidArgument", "The provided checksum is invalid: a part lists more than one checksum",
                      ArgumentName="Checksum")
    return found[0] if found else None


def completed_checksum(upload_attrs: Mapping[str, Any], req: CompleteRequest,
                       chosen: list[tuple[int, int, Mapping[str, str]]], upload_id: str) -> dict[str, Any]:
    """The completed object's checksum attrs from its chosen parts ``(number, size, checksums)``,
    after S3's checks: the request's type is the upload's, each listed part checksum is the part's
    (InvalidPart), an upload with an algorithm lists one per part (InvalidRequest), and the
    request's object checksum is the computed one (BadDigest)."""
    algorithm = upload_attrs.get("checksum_algorithm")
    kind = upload_attrs.get("checksum_type")
    if req.kind is not None and req.kind != kind:
        raise S3Error("InvalidRequest", f"The upload was created using the {kind or 'null'} checksum mode. The "
                      "complete request must use the same checksum mode.")
    for number, _size, stored in chosen:
        listed = req.parts.get(number)
        if algorithm is None:
            if listed is not None:
                raise S3Error("InvalidPart", UploadId=upload_id, PartNumber=str(number))
            continue
        if listed is None:
            raise S3Error("InvalidRequest", f"The upload was created using a {algorithm.lower()} checksum. The "
                          "complete request must include the checksum for each part. It was missing for part "
                          f"{number} in the request.")
        if listed[0] != algorithm or listed[1] != stored.get(algorithm):
            raise S3Error("InvalidPart", UploadId=upload_id, PartNumber=str(number))
    used = algorithm or DEFAULT_ALGORITHM
    if any(used not in stored for _n, _s, stored in chosen):
        return {}  # parts from before checksums were kept: the object gets none rather than a wrong one
    digests = [(base64.b64decode(stored[used]), size) for _n, size, stored in chosen]
    if (kind or FULL_OBJECT) == FULL_OBJECT:
        value = base64.b64encode(checksums.combine(used, digests)).decode("ascii")
    else:
        value = checksums.composite(used, [d for d, _ in digests])
    if algorithm is not None and req.value is not None:
        sent = req.value if "-" in req.value or kind != COMPOSITE else f"{req.value}-{len(chosen)}"
        if req.algorithm != algorithm or sent != value:
            raise bad_digest(req.algorithm or algorithm)
    out: dict[str, Any] = {"checksum": {"algorithm": used, "type": kind or FULL_OBJECT, "value": value}}
    if algorithm is not None:
        out["part_checksums"] = [stored[used] for _n, _s, stored in chosen]
    return out


# --- stored records and response headers --------------------------------------------------------

def record(attrs: Mapping[str, Any]) -> dict[str, str] | None:
    """An object's checksum {"algorithm", "type", "value"} (objects from before: their first stored one)."""
    rec = attrs.get("checksum")
    if rec:
        return rec
    legacy = attrs.get("checksums")
    if legacy:
        algorithm, value = next(iter(legacy.items()))
        return {"algorithm": algorithm, "type": FULL_OBJECT, "value": value}
    return None


def object_record(values: Mapping[str, str], request: Requested) -> dict[str, str]:
    """A single-PUT object's record: the algorithm the client named, else the default."""
    algorithm = request.algorithm or DEFAULT_ALGORITHM
    return {"algorithm": algorithm, "type": FULL_OBJECT, "value": values[algorithm]}


def headers(rec: Mapping[str, str] | None, *, with_type: bool = True) -> list[tuple[str, str]]:
    if not rec:
        return []
    out = [(checksums.header_name(rec["algorithm"]), rec["value"])]
    if with_type:
        out.append(("x-amz-checksum-type", rec["type"]))
    return out


def part_record(attrs: Mapping[str, Any], number: int) -> dict[str, str] | None:
    """The checksum of one part of a multipart object (GET/HEAD with partNumber), when its upload
    named an algorithm; the type is the object's."""
    rec = record(attrs)
    values = attrs.get("part_checksums")
    if not rec or not values or not 1 <= number <= len(values):
        return None
    return {"algorithm": rec["algorithm"], "type": rec["type"], "value": values[number - 1]}


def xml_elements(rec: Mapping[str, str] | None) -> str:
    """<ChecksumCRC32>...</ChecksumCRC32><ChecksumType>...</ChecksumType> (GetObjectAttributes, results)."""
    if not rec:
        return ""
    return (f"<Checksum{rec['algorithm']}>{rec['value']}</Checksum{rec['algorithm']}>"
            f"<ChecksumType>{rec['type']}</ChecksumType>")


def checksum_mode(h: Mapping[str, str]) -> bool:
    """x-amz-checksum-mode: ENABLED asks GET/HEAD for the stored checksum; any other value is invalid."""
    raw = h.get("x-amz-checksum-mode")
    if raw is None:
        return False
    if raw.strip().upper() != "ENABLED":
        raise invalid_value("x-amz-checksum-mode")
    return True
