"""docs/security.md's operation x permission tables are the authorizer's own table, verbatim."""

from __future__ import annotations

from pathlib import Path

from exastor.auth.operations import markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_security_doc_tables_match_the_authorizer():
    text = DOC.read_text()
    for api in ("s3", "blob"):
        assert markdown_table(api) in text, (
            f"docs/security.md's {api} table is out of date: paste markdown_table({api!r}) from "
            "exastor.auth.operations")
