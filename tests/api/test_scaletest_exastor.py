"""The scale test against a real exastor server (the session fixture ``exastor_server``)."""

import _scaletest_checks as checks
import pytest


@pytest.fixture
def exastor(request):
    try:
        return request.getfixturevalue("exastor_server")
    except pytest.FixtureLookupError:
        pytest.skip("no exastor_server fixture in tests/conftest.py yet")


def test_training_run(tmp_path, exastor):
    checks.check_training_compute_bound(tmp_path, exastor.endpoint, exastor.access_key, exastor.secret_key,
                                        "scaletest-train")


def test_ranged_reads_and_reuse(exastor):
    checks.check_ranged_reads_and_content(exastor.endpoint, exastor.access_key, exastor.secret_key,
                                          "scaletest-ranged")


def test_checkpoint(tmp_path, exastor):
    checks.check_checkpoint_multipart(tmp_path, exastor.endpoint, exastor.access_key, exastor.secret_key,
                                      "scaletest-ckpt")


def test_wrong_secret_is_refused(exastor):
    """exastor verifies SigV4: a correctly shaped request with the wrong key must fail (so the good ones prove the signer)."""
    import asyncio

    from exastor.tools.scaletest.s3client import S3Client, S3Error

    async def go():
        async with S3Client(exastor.endpoint, "scaletest-train", exastor.access_key, "wrong-secret") as client:
            await client.get_bytes("anything")

    with pytest.raises(S3Error) as info:
        asyncio.run(go())
    assert info.value.status == 403
