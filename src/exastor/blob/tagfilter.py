"""Tag filter expressions, after Azure's rules (``_Parser``): Find Blobs by Tags takes ``"key" op
'value'`` terms joined by AND plus ``@container``; x-ms-if-tags also takes <>, OR and parentheses.
Below common.py, which evaluates x-ms-if-tags, and tags.py, which serves the tag operations: both
import it, it imports neither."""

from __future__ import annotations

import re

from exastor.blob.errors import BlobError

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
        left = self.peek()
        if left is not None:
            raise _invalid(self.header, f"unexpected {left[1][:32]!r}")
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


def term_holds(value: str | None, op: str, want: str) -> bool:
    if value is None:
        return False
    return {"=": value == want, "<>": value != want, ">": value > want, ">=": value >= want, "<": value < want,
            "<=": value <= want}[op]


def _evaluate(tree: Expr, tags: dict[str, str]) -> bool:
    if len(tree) == 2:  # ("and"|"or", operands); a term has three parts
        junction, operands = tree
        results = (_evaluate(part, tags) for part in operands)
        return all(results) if junction == "and" else any(results)
    key, op, want = tree
    return term_holds(tags.get(key), op, want)


def tags_match(expr: str, tags: dict[str, str]) -> bool:
    """Whether a blob's tags satisfy an x-ms-if-tags condition (400 InvalidHeaderValue if invalid)."""
    return _evaluate(_Parser(expr, header=True).parse(), tags)
