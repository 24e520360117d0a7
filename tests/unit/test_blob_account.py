"""The Blob account key: given, else stored (0600), else generated and stored; and config checks."""

from __future__ import annotations

import base64
import stat

import pytest

from exastor.config import ConfigError, load
from exastor.datadir.opening import ACCOUNT_FILE, ensure_account


def test_generated_then_stored_then_given(tmp_path):
    first = ensure_account(tmp_path, None, None)
    assert first.generated and first.name == "exastor"
    assert len(base64.b64decode(first.key)) == 64
    path = tmp_path / ACCOUNT_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = ensure_account(tmp_path, None, None)
    assert (again.key, again.generated) == (first.key, False)
    given = ensure_account(tmp_path, "other", base64.b64encode(b"k" * 32).decode())
    assert given.name == "other" and given.key == base64.b64encode(b"k" * 32).decode() and not given.generated


def test_account_comes_back_from_the_database_when_the_file_is_gone(tmp_path):
    """After `fsck --restore-meta` into a new --data, Azure clients keep working with the old key."""
    from exastor.datadir import keys
    from exastor.datadir.opening import open_metadata

    meta = open_metadata(tmp_path)
    keys.ensure(tmp_path, meta)  # as `exastor serve` does: the key that seals the account key in the database
    try:
        first = ensure_account(tmp_path, None, None, meta)
        (tmp_path / ACCOUNT_FILE).unlink()
        again = ensure_account(tmp_path, None, None, meta)
        assert (again.name, again.key, again.generated) == (first.name, first.key, False)
        assert first.key in (tmp_path / ACCOUNT_FILE).read_text()
    finally:
        meta.close()


@pytest.mark.parametrize("name,key", [("UPPER", None), ("a", None), ("okname", "not base64!")])
def test_config_rejects_bad_account_settings(tmp_path, name, key):
    with pytest.raises(ConfigError):
        load(None, {"data": str(tmp_path), "account_name": name, "account_key": key}, env={})
