"""All SQL behind meta/ (issue 13, item 1): engine, services, the front-ends and the gateway call named
operations of the metadata contract in meta/ (contract.py, blob.py, placement.py, ...), never a cursor's execute().

A file that must hold SQL outside meta/ is listed below with why and how many calls: the check fails
when SQL appears in any other file, or when a listed file gains calls; moving a file's SQL into meta/
lowers its number here (the check says so when a number is higher than the file's calls), down to
removing its entry. The list is empty: there is none."""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "exastor"
SQL_CALLS = {"execute", "executemany", "executescript"}

# file (relative to src/exastor) -> (calls at most, why it still has them)
NOT_YET_MOVED: dict[str, tuple[int, str]] = {
    # none left: every SQL call of src/exastor is in meta/ (list a file here only with its reason)
}


def _sql_calls(path: Path) -> list[int]:
    tree = ast.parse(path.read_text())
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SQL_CALLS]


def _calls_outside_meta() -> Counter[str]:
    found: Counter[str] = Counter()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("meta/"):
            continue
        lines = _sql_calls(path)
        if lines:
            found[rel] = len(lines)
    return found


def test_no_sql_outside_meta_except_the_files_not_yet_moved():
    found = _calls_outside_meta()
    new = {f: n for f, n in found.items() if f not in NOT_YET_MOVED}
    assert not new, (f"SQL outside meta/ in {new}: add a named operation to the metadata contract "
                     "(meta/contract.py or meta/blob.py) and call it")
    grown = {f: (n, NOT_YET_MOVED[f][0]) for f, n in found.items() if n > NOT_YET_MOVED[f][0]}
    assert not grown, f"more SQL calls than allowed (found, allowed): {grown}; move them into meta/ instead"


def test_the_list_of_files_not_yet_moved_is_current():
    """A file whose SQL moved into meta/ leaves the list, and a lower count lowers its number: the list
    only ever says what is true."""
    found = _calls_outside_meta()
    stale = {f: (found.get(f, 0), allowed) for f, (allowed, _) in NOT_YET_MOVED.items()
             if found.get(f, 0) < allowed}
    assert not stale, f"lower these numbers in NOT_YET_MOVED (found, listed): {stale}"


# Transaction bodies (functions of a cursor) written above meta/ would decide a transaction's bounds
# where the contract should, even holding no SQL: the same ratchet. The list is empty: there is none
# (the Blob transactions of namespace/blobs.py and blob/lease.py are named operations of meta/blob.py).
CURSOR_FUNCTIONS_NOT_YET_MOVED: dict[str, tuple[int, str]] = {
    # none left (list a file here only with its count and reason)
}


def _cursor_functions_outside_meta() -> Counter[str]:
    found: Counter[str] = Counter()
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("meta/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) and node.args.args \
                    and node.args.args[0].arg == "cur":
                found[rel] += 1
    return found


def test_transaction_bodies_stay_in_meta_except_the_files_not_yet_moved():
    found = _cursor_functions_outside_meta()
    listed = CURSOR_FUNCTIONS_NOT_YET_MOVED
    new = {f: n for f, n in found.items() if f not in listed}
    assert not new, f"functions of a cursor outside meta/ in {new}: make them named operations in meta/"
    grown = {f: (n, listed[f][0]) for f, n in found.items() if f in listed and n > listed[f][0]}
    assert not grown, f"more functions of a cursor than allowed (found, allowed): {grown}"
    stale = {f: (found.get(f, 0), allowed) for f, (allowed, _) in listed.items() if found.get(f, 0) < allowed}
    assert not stale, f"lower these numbers in CURSOR_FUNCTIONS_NOT_YET_MOVED (found, listed): {stale}"
