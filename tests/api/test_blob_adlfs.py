"""adlfs / fsspec over the Blob endpoint: the way data tools (pandas, pyarrow, dask) reach Azure."""

from __future__ import annotations

import os

import pytest
from _blob_target import BlobTarget, external_target, unique


@pytest.fixture(scope="module")
def target(request) -> BlobTarget:
    ext = external_target()
    if ext is not None:
        return ext
    server = request.getfixturevalue("exastor_server")
    return BlobTarget.from_connection_string(server.connection_string, is_exastor=True)


@pytest.fixture
def fs(target):
    adlfs = pytest.importorskip("adlfs")
    return adlfs.AzureBlobFileSystem(connection_string=target.connection_string, skip_instance_cache=True)


def test_adlfs_files_dirs_and_streams(fs):
    root = unique("fs")
    fs.mkdir(root)
    try:
        fs.pipe(f"{root}/a/small.txt", b"hello adlfs")
        assert fs.cat(f"{root}/a/small.txt") == b"hello adlfs"
        big = os.urandom(3 * 1024 * 1024 + 123)
        with fs.open(f"{root}/a/b/big.bin", "wb", block_size=1024 * 1024) as f:
            for i in range(0, len(big), 700_000):
                f.write(big[i:i + 700_000])
        with fs.open(f"{root}/a/b/big.bin", "rb") as f:
            f.seek(1_000_000)
            assert f.read(5000) == big[1_000_000:1_005_000]
        assert fs.cat(f"{root}/a/b/big.bin") == big
        assert fs.info(f"{root}/a/b/big.bin")["size"] == len(big)
        assert fs.info(f"{root}/a")["type"] == "directory"
        assert sorted(fs.ls(f"{root}/a", detail=False)) == [f"{root}/a/b", f"{root}/a/small.txt"]
        assert sorted(fs.find(root)) == [f"{root}/a/b/big.bin", f"{root}/a/small.txt"]
        assert fs.glob(f"{root}/a/*.txt") == [f"{root}/a/small.txt"]
        fs.cp_file(f"{root}/a/small.txt", f"{root}/copy.txt")
        assert fs.cat(f"{root}/copy.txt") == b"hello adlfs"
        fs.rm(f"{root}/a", recursive=True)
        assert not fs.exists(f"{root}/a/small.txt")
        assert fs.exists(f"{root}/copy.txt")
    finally:
        fs.rm(root, recursive=True)
