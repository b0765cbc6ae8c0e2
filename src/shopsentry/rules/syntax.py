"""The syntax of rule expressions: CEL text to ``cel-python``'s parse tree, and the
reading of that tree that does not depend on what the names mean.

:func:`parse` runs the standard CEL grammar (one parser per process, built on first
use: building it costs a Lark grammar compile) and turns a parse error into a
:class:`RuleSyntaxError` that points at the text; :func:`fail` does the same for any
node a later check rejects. :func:`dotted_path`, :func:`arguments` and
:func:`literal_value` read names, call arguments and literals off the tree for the
compiler in :mod:`shopsentry.rules.language`, which gives them their meaning.
"""

from __future__ import annotations

import ast
from typing import Any

from shopsentry.errors import TerminalError
from shopsentry.rules.columns import Kind

__all__ = ["RuleSyntaxError", "arguments", "dotted_path", "fail", "literal_value", "parse"]


class RuleSyntaxError(TerminalError):
    """A rule that does not parse, names an unknown field or mixes types."""

    def __init__(self, reason: str, *, line: int = 1, column: int = 1) -> None:
        super().__init__(f"{line}:{column}: {reason}")
        self.reason = reason
        self.line = line
        self.column = column


def parse(source: str) -> Any:
    """The parse tree of ``source``; RuleSyntaxError (with the position and the text
    near it) if it is empty or does not parse."""
    from celpy.celparser import CELParseError, CELParser

    if not source.strip():
        raise RuleSyntaxError("the expression is empty")
    try:
        return _parser(CELParser).parse(source)
    except CELParseError as exc:
        line = getattr(exc, "line", None) or 1
        column = getattr(exc, "column", None) or 1
        raise RuleSyntaxError(
            f"syntax error near {_near(source, line, column)!r}", line=line, column=column
        ) from None


def _pos(node: Any) -> tuple[int, int]:
    meta = getattr(node, "meta", None)
    line = getattr(node, "line", None) or getattr(meta, "line", None) or 1
    column = getattr(node, "column", None) or getattr(meta, "column", None) or 1
    return int(line), int(column)


def fail(node: Any, reason: str) -> RuleSyntaxError:
    """The error for ``node`` (a tree or a token), at its line and column."""
    line, column = _pos(node)
    return RuleSyntaxError(reason, line=line, column=column)


def dotted_path(tree: Any) -> tuple[str, ...] | None:
    """``a.b.c`` as ('a', 'b', 'c'), or None if the member chain is not plain names."""
    if tree.data == "ident":
        return (str(tree.children[0]),)
    if tree.data == "member_dot":
        inner = dotted_path(tree.children[0])
        return None if inner is None else (*inner, str(tree.children[1]))
    if tree.data in ("member", "primary") and len(tree.children) == 1:
        return dotted_path(tree.children[0])
    return None


def arguments(exprlist: Any) -> list[Any]:
    """The argument nodes of a call or a list literal (none when it has no list)."""
    return [] if exprlist is None else list(exprlist.children)


def literal_value(token: Any) -> tuple[Kind, Any]:
    """A literal token's kind and Python value (CEL numbers are all floats here)."""
    text = str(token)
    kind = token.type
    if kind in ("INT_LIT", "FLOAT_LIT"):
        return "num", float(int(text, 0) if kind == "INT_LIT" else float(text))
    if kind == "BOOL_LIT":
        return "bool", text == "true"
    if kind == "NULL_LIT":
        return "null", None
    if kind in ("STRING_LIT", "MLSTRING_LIT"):
        value = ast.literal_eval(text)
        return "str", str(value)
    raise fail(token, f"{kind.lower().replace('_lit', '')} literals are not supported in rules")


_PARSER: Any = None


def _parser(factory: Any) -> Any:
    global _PARSER
    if _PARSER is None:
        _PARSER = factory()
    return _PARSER


def _near(source: str, line: int, column: int) -> str:
    lines = source.splitlines() or [source]
    text = lines[min(line, len(lines)) - 1]
    return text[max(column - 1, 0) : column + 11] or "the end"
