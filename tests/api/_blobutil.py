"""Raw Blob requests for tests that must control every header (dates, signatures) themselves."""

from __future__ import annotations

import http.client


def blob_signed(server, method: str, path: str, headers: dict | None = None, *, date: str | None = None,
                body: bytes = b"") -> tuple[int, dict, bytes]:
    """A raw Blob request signed with Shared Key by the SDK's own policy, sent exactly as written
    (``date``: the x-ms-date to sign and send instead of now)."""
    from datetime import UTC, datetime
    from email.utils import format_datetime

    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.transport import HttpRequest
    from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy

    req = HttpRequest(method, f"http://127.0.0.1:{server.blob_port}{path}")
    req.headers.update({"x-ms-date": date or format_datetime(datetime.now(UTC), usegmt=True),
                        "x-ms-version": "2025-11-05", **(headers or {})})
    SharedKeyCredentialPolicy(server.account_name, server.account_key).on_request(
        PipelineRequest(req, PipelineContext(None)))
    conn = http.client.HTTPConnection("127.0.0.1", server.blob_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(req.headers))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
