"""The authorization is structural, not a convention (issue 12):

- the front-ends reach buckets and objects only through namespace calls that take the request's
  decision (no raw metadata access, no all-powerful grant);
- every namespace call that touches a bucket or an object takes a grant and checks it;
- a decision covers exactly what it names: another key, another bucket or a write under a read
  decision fails closed (AuthorizationMissing), and only the authorizer can make one.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path

import pytest

from exastor import errors
from exastor.auth.authorizer import Authorizer, RequestFacts, Source, Target
from exastor.auth.decision import Decision
from exastor.auth.operations import operation
from exastor.auth.principal import Principal
from exastor.datadir.opening import open_namespace
from exastor.namespace import multipart
from exastor.namespace.blobs import Blobs
from exastor.namespace.operations import Namespace, PutSpec, SystemGrant

SRC = Path(__file__).resolve().parents[2] / "src" / "exastor"
FRONT_ENDS = sorted([*(SRC / "s3").glob("*.py"), *(SRC / "blob").glob("*.py")])
# Reads a front-end makes before any decision exists, each for a reason written beside it.
ALLOWED = {("s3/cors.py", "cached_bucket"),   # CORS headers on every answer, errors included (public config)
           ("blob/app.py", "cached_bucket"),  # a container's stored access policies, to verify a SAS
           # QoS limits (operator settings, no stored data), read after the decision (http/qos.py)
           ("s3/app.py", "ns.meta"), ("blob/app.py", "ns.meta")}


def _holder(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _data_bypasses(path: Path) -> set[str]:
    """What a module uses that reaches stored data around the namespace's grant checks: the
    namespace's metadata or chunk store (``ns.meta``, ``call.blobs.meta``, ``ns.chunks``), its raw
    bucket cache, or the grant that covers everything."""
    tree = ast.parse(path.read_text())
    used = {f"{_holder(node.value)}.{node.attr}" for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and node.attr in ("meta", "chunks") and _holder(node.value) in ("ns", "blobs")}
    used |= {"cached_bucket" for node in ast.walk(tree) if isinstance(node, ast.Attribute)
             and node.attr == "cached_bucket"}
    used |= {"SystemGrant" for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "SystemGrant"}
    used |= {"SystemGrant" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             for a in node.names if a.name == "SystemGrant"}
    return used


@pytest.mark.parametrize("path", FRONT_ENDS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_front_ends_reach_data_only_with_a_decision(path: Path):
    where = f"{path.parent.name}/{path.name}"
    for found in _data_bypasses(path):
        if (where, found) not in ALLOWED:
            pytest.fail(f"{where} uses {found}: front-ends reach data only through namespace calls "
                        "that take the request's decision")


def test_the_bypass_check_sees_a_bypass(tmp_path):
    planted = tmp_path / "handler.py"
    planted.write_text("def h(call):\n    return call.ns.meta.get_object('b', 'k', None)\n")
    assert _data_bypasses(planted) == {"ns.meta"}


_NO_DATA = {"close", "user_by_access_key", "user_exists", "user_by_email", "data_version", "cached_bucket", "forget_bucket",
            "write_bytes", "md5_of", "purge_expired", "setting", "check_part_number"}


def _public_functions(owner: object) -> list[tuple[str, object]]:
    found = inspect.getmembers(owner, inspect.isfunction)
    if inspect.ismodule(owner):
        found = [(n, f) for n, f in found if f.__module__ == owner.__name__]
    return [(n, f) for n, f in found if not n.startswith("_") and n not in _NO_DATA]


@pytest.mark.parametrize("owner", [Namespace, Blobs, multipart], ids=lambda o: getattr(o, "__name__", str(o)))
def test_every_data_call_takes_a_grant(owner):
    functions = _public_functions(owner)
    assert len(functions) >= 8
    for name, fn in functions:
        params = [p for p in inspect.signature(fn).parameters if p not in ("self", "ns")]
        assert params and params[0] == "grant", f"{name} touches data without a grant: {params}"


def test_only_the_authorizer_makes_decisions():
    with pytest.raises(errors.AuthorizationMissing):
        Decision(object(), "s3", "GetObject", "admin", "admin", [])


@pytest.fixture
def ns(tmp_path):
    namespace = open_namespace(tmp_path / "data")
    admin = SystemGrant("admin")

    async def setup() -> None:
        await namespace.create_bucket(admin, "bkt")
        await namespace.create_bucket(admin, "other")
        for bucket, key in (("bkt", "k"), ("bkt", "k2"), ("other", "k")):
            await namespace.put_object(admin, bucket, key, _body(b"secret " + key.encode()), PutSpec())
    asyncio.run(setup())
    yield namespace
    namespace.close()


async def _src(data: bytes):
    yield data


def _body(data: bytes):
    return _src(data)


def _facts() -> RequestFacts:
    return RequestFacts({}, {}, "127.0.0.1", False)


def test_a_decision_covers_exactly_what_it_names(ns):
    authorizer = Authorizer(ns)
    admin = Principal.user("admin")
    get = authorizer.decide(operation("s3", "GetObject"), admin, _facts(), Target("bkt", "k"))
    assert ns.get_object(get, "bkt", "k").key == "k"
    for attempt in (lambda: ns.get_object(get, "bkt", "k2"),            # another key
                    lambda: ns.get_object(get, "other", "k"),           # another bucket
                    lambda: ns.list_objects(get, "bkt"),                # listing is not reading k
                    lambda: asyncio.run(ns.delete_object(get, "bkt", "k")),   # a write under a read
                    lambda: asyncio.run(ns.put_object(get, "bkt", "k", _body(b"x"), PutSpec()))):
        with pytest.raises(errors.AuthorizationMissing):
            attempt()
    put = authorizer.decide(operation("s3", "PutObject"), admin, _facts(), Target("bkt", "new"))
    with pytest.raises(errors.AuthorizationMissing):  # writing k is not reading it
        ns.read(put, ns.get_object(SystemGrant("admin"), "bkt", "k"))


def test_copy_sources_must_be_declared(ns):
    """A copy handler that reads a source its decision does not name fails closed: before issue 12,
    Blob copies read any source as the account."""
    authorizer = Authorizer(ns)
    admin = Principal.user("admin")
    copy = authorizer.decide(operation("s3", "CopyObject"), admin, _facts(), Target("bkt", "dst"),
                             Source(admin, "bkt", "k"))
    src = ns.get_object(copy, "bkt", "k")
    asyncio.run(ns.copy_object(copy, src, "bkt", "dst", attrs={}))
    undeclared = ns.get_object(SystemGrant("admin"), "other", "k")
    with pytest.raises(errors.AuthorizationMissing):
        asyncio.run(ns.copy_object(copy, undeclared, "bkt", "dst", attrs={}))
    blobs = Blobs(ns)
    with pytest.raises(errors.AuthorizationMissing):
        asyncio.run(blobs.stage_block_from(copy, "bkt", "dst", "QQ==", undeclared, 0, 3))


def test_pending_and_per_key_decisions(ns):
    authorizer = Authorizer(ns)
    admin = Principal.user("admin")
    tagging = authorizer.decide(operation("s3", "PutObjectTagging"), admin, _facts(), Target("bkt", "k"))
    with pytest.raises(errors.AuthorizationMissing):  # writes wait for the body's tags
        asyncio.run(ns.update_object_attrs(tagging, "bkt", "k", None, {"tags": {}}))
    done = tagging.refine(request_tags={"a": "b"})
    asyncio.run(ns.update_object_attrs(done, "bkt", "k", None, {"tags": {"a": "b"}}))
    multi = authorizer.decide(operation("s3", "DeleteObjects"), admin, _facts(), Target("bkt", None))
    with pytest.raises(errors.AuthorizationMissing):  # each key is decided before it is deleted
        asyncio.run(ns.delete_object(multi, "bkt", "k2"))
    multi.extend("k2")
    asyncio.run(ns.delete_object(multi, "bkt", "k2"))
    alt = authorizer.decide(operation("s3", "DeleteObjects"), Principal.user("alt"), _facts(), Target("bkt", None))
    with pytest.raises(errors.AccessDenied):
        alt.extend("k")
