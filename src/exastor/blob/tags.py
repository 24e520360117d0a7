"""Set/Get Blob Tags, Find Blobs by Tags, and the x-ms-if-tags condition.

Tags are the same attribute S3's object tagging uses, so a tag set over either API is seen by both.
Expressions follow Azure's rules (``_Parser``): Find Blobs by Tags takes ``"key" op 'value'`` terms
joined by AND plus ``@container``; x-ms-if-tags also takes <>, OR and parentheses.
"""

from __future__ import annotations

import re

from exastor.blob import xml as bx
from exastor.blob.common import BlobCall, blob_check, run_check, validate_tags
from exastor.blob.errors import BlobError
from exastor.blob.service import service_endpoint
from exastor.blob.xml import el, opt
from exastor.meta.records import ObjectVersion
from exastor.namespace.store import WRITE

_TAG_TEXT = re.compile(r"[A-Za-z0-9 +\-./:=_]*")   # what a tag key or value may hold (Set Blob Tags' rule)
_TOKEN = re.compile(r"""\s*(?:(?P<key>"(?:[^"]|"")*")|(?P<value>'(?:[^']|'')*')|(?P<op><>|>=|<=|=|<|>)"""
                    r"""|(?P<paren>[()])|(?P<word>[^\s=<>()'"]+))""")
MAX_FILTER_TAGS = 10   # Azure: at most 10 tag conditions in one expression

Term = tuple[str, str, str]   # (key, operator, value)
Expr = Term | tuple[str, list["Expr"]]   # a term, or ("and"|"or", operands)


def _invalid(header: bool, why: str) -> BlobError:
    if header:
        return BlobError("InvalidHeaderValue", f"x-ms-if-tags: {why}", HeaderName="x-ms-if-tags")
    return BlobError("InvalidQueryParameterValue", f"Invalid tag filter expression: {why}",
                     QueryParameterName="where")


class _Parser:
    """Azure's tag expressions. Find Blobs by Tags (``header=False``): ``"key" op 'value'`` terms,
    op one of = > >= < <=, joined by AND, ``@container = 'name'`` allowed, and two conditions on one
    key only as the two ends of a range. x-ms-if-tags (``header=True``): also <>, OR and
    parentheses, no @container. Keys and values follow the tag character rules (keys 1-128
    characters, values up to 256); a value quote is doubled to be literal."""

    def __init__(self, text: str, header: bool) -> None:
        self.header = header
        self.tokens: list[tuple[str, str]] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise _invalid(header, f"unexpected text at {pos}")
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.at = 0
        self.terms: list[Term] = []

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take_word(self, word: str) -> bool:
        t = self.peek()
        if t is not None and t[0] == "word" and t[1].upper() == word:
            self.at += 1
            return True
        return False

    def parse(self) -> Expr:
        if not self.tokens:
            raise _invalid(self.header, "empty expression")
        tree = self.disjunction()
        if self.peek() is not None:
            raise _invalid(self.header, f"unexpected {self.peek()[1][:32]!r}")  # type: ignore[index]
        if len(self.terms) > MAX_FILTER_TAGS:
            raise _invalid(self.header, f"at most {MAX_FILTER_TAGS} conditions")
        if not self.header:
            self._check_ranges()
        return tree

    def disjunction(self) -> Expr:
        parts = [self.conjunction()]
        while self.take_word("OR"):
            if not self.header:
                raise _invalid(self.header, "OR is not supported in Find Blobs by Tags")
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conjunction(self) -> Expr:
        parts = [self.primary()]
        while self.take_word("AND"):
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def primary(self) -> Expr:
        t = self.peek()
        if t == ("paren", "("):
            if not self.header:
                raise _invalid(self.header, "parentheses are not supported in Find Blobs by Tags")
            self.at += 1
            inner = self.disjunction()
            if self.peek() != ("paren", ")"):
                raise _invalid(self.header, "a '(' is not closed")
            self.at += 1
            return inner
        if t is None or t[0] not in ("key", "word"):
            raise _invalid(self.header, "a tag key was expected")
        self.at += 1
        key = t[1][1:-1].replace('""', '"') if t[0] == "key" else t[1]
        if key == "@container":
            if self.header:
                raise _invalid(self.header, "@container is not allowed in x-ms-if-tags")
        elif key.startswith("@") or not 1 <= len(key) <= 128 or not _TAG_TEXT.fullmatch(key):
            raise _invalid(self.header, "tag keys are 1-128 letters, digits, spaces or + - . / : = _")
        op = self.peek()
        if op is None or op[0] != "op":
            raise _invalid(self.header, "an operator was expected")
        self.at += 1
        if op[1] == "<>" and not self.header:
            raise _invalid(self.header, "<> is not supported in Find Blobs by Tags")
        if key == "@container" and op[1] != "=":
            raise _invalid(self.header, "@container takes = only")
        value = self.peek()
        if value is None or value[0] != "value":
            raise _invalid(self.header, "a value in single quotes was expected")
        self.at += 1
        text = value[1][1:-1].replace("''", "'")
        if len(text) > 256 or not _TAG_TEXT.fullmatch(text) and key != "@container":
            raise _invalid(self.header, "tag values are up to 256 letters, digits, spaces or + - . / : = _")
        term = (key, op[1], text)
        self.terms.append(term)
        return term

    def _check_ranges(self) -> None:
        """Two conditions on one key must be the two ends of a range (one > or >=, one < or <=)."""
        seen: dict[str, list[str]] = {}
        for key, op, _ in self.terms:
            seen.setdefault(key, []).append(op)
        for ops in seen.values():
            if len(ops) == 1:
                continue
            sides = sorted("lo" if o in (">", ">=") else "hi" if o in ("<", "<=") else "eq" for o in ops)
            if sides != ["hi", "lo"]:
                raise _invalid(False, "two conditions on one tag must define a range")


def parse_filter(expr: str) -> list[Term]:
    """A Find Blobs by Tags expression as its AND-ed terms (400 InvalidQueryParameterValue if invalid)."""
    parser = _Parser(expr, header=False)
    parser.parse()
    return parser.terms


def _holds(value: str | None, op: str, want: str) -> bool:
    if value is None:
        return False
    return {"=": value == want, "<>": value != want, ">": value > want, ">=": value >= want, "<": value < want,
            "<=": value <= want}[op]


def _evaluate(tree: Expr, tags: dict[str, str]) -> bool:
    if tree[0] in ("and", "or") and isinstance(tree[1], list):
        results = (_evaluate(part, tags) for part in tree[1])
        return all(results) if tree[0] == "and" else any(results)
    key, op, want = tree  # type: ignore[misc]
    return _holds(tags.get(key), op, want)


def tags_match(expr: str, tags: dict[str, str]) -> bool:
    """Whether a blob's tags satisfy an x-ms-if-tags condition (400 InvalidHeaderValue if invalid)."""
    return _evaluate(_Parser(expr, header=True).parse(), tags)


def _tags_body(tags: dict[str, str]) -> bytes:
    items = "".join(f"<Tag>{el('Key', k)}{el('Value', v)}</Tag>" for k, v in tags.items())
    return bx.doc(f"<Tags><TagSet>{items}</TagSet></Tags>")


async def set_tags(call: BlobCall) -> None:
    if "snapshot" in call.q:
        raise BlobError("InvalidOperation")
    obj = call.ns.get_object(call.grant, call.container, call.blob, access=WRITE)
    if call.h.get("x-ms-lease-id"):
        call.lease_guard(call.blob, write=False)
    if_tags = call.h.get("x-ms-if-tags")

    def tags_condition(current: ObjectVersion) -> None:
        if if_tags and not tags_match(if_tags, current.attrs.get("tags") or {}):
            raise BlobError("ConditionNotMet")
    tags_condition(obj)  # early; checked again (with the lease) in the update's transaction
    body = await call.read_small_body()
    tags: dict[str, str] = {}
    if body.strip():
        root = bx.parse(body)
        for tag in root.iter("Tag"):
            key, value = bx.text(tag, "Key"), bx.text(tag, "Value", "")
            if key is None or key in tags:
                raise BlobError("InvalidTag", "Tag keys must be present and unique.", status=400)
            tags[key] = value or ""
    validate_tags(tags)
    await call.ns.update_object_attrs(call.grant, call.container, call.blob, None, {"tags": tags or None},
                                      check=blob_check(call, tags_condition if if_tags else None, lease="read"))
    await call.reply(204)


async def get_tags(call: BlobCall) -> None:
    if "snapshot" in call.q:
        obj = call.blobs.get_snapshot(call.grant, call.container, call.blob, call.q["snapshot"])
    else:
        obj = call.ns.get_object(call.grant, call.container, call.blob)
        if call.h.get("x-ms-lease-id"):
            call.lease_guard(call.blob, write=False)
        run_check(call, obj) if call.h.get("x-ms-if-tags") else None
    await call.reply(200, _tags_body(obj.attrs.get("tags") or {}))


async def find_blobs(call: BlobCall) -> None:
    expr = call.q.get("where")
    if not expr:
        raise BlobError("MissingRequiredQueryParameter", "where is required.")
    terms = parse_filter(expr)
    try:
        max_results = int(call.q.get("maxresults", "5000"))
    except ValueError as exc:
        raise BlobError("InvalidQueryParameterValue") from exc
    marker = call.q.get("marker", "")
    containers = [call.container] if call.container else [b.name for b in call.ns.list_buckets(call.grant)]
    for key, op, want in terms:
        if key == "@container" and op == "=":
            containers = [c for c in containers if c == want]
    found: list[tuple[str, str, dict[str, str]]] = []
    for name in containers:
        call.ns.bucket(call.grant, name)
        after = None
        while True:
            rows = call.ns.list_latest(call.grant, name, after, 1000)
            for o in rows:
                tags = o.attrs.get("tags") or {}
                if tags and all(_holds(name if k == "@container" else tags.get(k), op, v) for k, op, v in terms):
                    found.append((name, o.key, {k: tags[k] for k, _, _ in terms if k in tags}))
            if len(rows) < 1000:
                break
            after = rows[-1].key
    found.sort()
    found = [f for f in found if not marker or f"{f[0]}/{f[1]}" > marker]
    page, rest = found[:max_results], found[max_results:]
    items = "".join(
        f"<Blob>{el('Name', key)}{el('ContainerName', c)}<Tags><TagSet>"
        + "".join(f"<Tag>{el('Key', k)}{el('Value', v)}</Tag>" for k, v in tags.items())
        + "</TagSet></Tags></Blob>" for c, key, tags in page)
    next_marker = f"{page[-1][0]}/{page[-1][1]}" if rest else None
    body = (f'<EnumerationResults ServiceEndpoint="{service_endpoint(call)}">{el("Where", expr)}'
            f"<Blobs>{items}</Blobs>{opt('NextMarker', next_marker)}</EnumerationResults>")
    await call.reply(200, bx.doc(body))
