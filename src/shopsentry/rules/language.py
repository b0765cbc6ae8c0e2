"""Rule expressions: CEL, parsed once, evaluated a whole micro-batch at a time.

Analysts write conditions in the Common Expression Language (the language of
Kubernetes admission policies and Envoy's RBAC): ``purchase.amount > 500.0 &&
features.new_device == 1.0``. The text is parsed by ``cel-python``'s standard grammar
(:mod:`shopsentry.rules.syntax`, which also says where in the text an error is); this
module type-checks the tree against the names a rule may use and compiles it into NumPy
operations over columns, so 50 rules cost a few microseconds per purchase instead of one
interpreter call per rule and purchase.

Names a rule may use:

- ``purchase.<field>``: a field of the purchase event (numbers and strings);
- ``features.<name>``: a model feature by its name in the model card;
- ``score``: the serving model's fraud probability (the champion's, or in split mode
  the challenger's for its users; docs/model-ops.md);
- ``lists.<block|allow>.<entity>``: a list of the analysts', as the right side of ``in``
  (``purchase.card_fingerprint in lists.block.card``).

Semantics follow CEL where it matters for fraud rules: reading a value that is not there
(an optional field the purchase does not carry, a feature that is missing) or dividing by
zero is an *error* for that purchase, not ``false``; ``&&`` and ``||`` absorb an error
when the other side decides (``false && error`` is ``false``, ``true || error`` is
``true``), as CEL's commutative logic does. ``has(purchase.x)`` / ``has(features.x)``
test presence without an error, and ``x == null`` / ``x != null`` do the same. A rule
that errs on a purchase does not fire there; the caller counts the error per rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from shopsentry.rules.columns import (
    ARITH,
    COMPARE,
    LIST_NAMES,
    STRING_METHODS,
    SYMBOL,
    Columns,
    Evaluator,
    Expr,
    Kind,
    ListName,
    Mask,
    Value,
    compare_strings,
    either,
    feature_reader,
    negation,
    negative,
    purchase_reader,
    score_reader,
)
from shopsentry.rules.syntax import (
    RuleSyntaxError,
    arguments,
    dotted_path,
    fail,
    literal_value,
    parse,
)

__all__ = [
    "LIST_NAMES", "Columns", "Compiled", "Kind", "ListName", "Mask", "RuleSyntaxError",
    "Vocabulary", "compile_rule",
]  # fmt: skip


@dataclass(frozen=True)
class Vocabulary:
    """The names rules may use: purchase fields with their kinds, feature names, entities."""

    purchase_fields: Mapping[str, Kind]
    features: frozenset[str]
    entities: frozenset[str]


@dataclass(frozen=True)
class Compiled:
    """A rule's condition, ready to run over a batch."""

    source: str
    references: frozenset[str]
    _run: Evaluator

    def evaluate(self, cols: Columns) -> tuple[Mask, Mask]:
        """(fires, errors) per row: a row in error does not fire."""
        values, err = self._run(cols)
        fires = np.broadcast_to(np.asarray(values, dtype=bool), (cols.size,)).copy()
        errors = np.zeros(cols.size, dtype=bool) if err is None else err.copy()
        fires &= ~errors
        return fires, errors


class _Compiler:
    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocab = vocabulary
        self.references: set[str] = set()

    # -- structure ------------------------------------------------------------------
    def node(self, tree: Any) -> Expr:
        handler = getattr(self, f"_{tree.data}", None)
        if handler is None:
            raise fail(tree, f"{tree.data.replace('_', ' ')} is not supported in rules")
        result: Expr = handler(tree)
        return result

    def _pass(self, tree: Any) -> Expr:
        if len(tree.children) != 1:
            raise fail(tree, f"unexpected {tree.data}")
        return self.node(tree.children[0])

    _member = _primary = _paren_expr = _pass

    def _expr(self, tree: Any) -> Expr:
        if len(tree.children) == 1:
            return self.node(tree.children[0])
        cond, yes, no = (self.node(c) for c in tree.children)
        self._want(tree.children[0], cond, "bool", "the condition of ?:")
        if yes.kind != no.kind:
            raise fail(tree, f"the two branches of ?: differ ({yes.kind} and {no.kind})")

        def run(cols: Columns) -> Value:
            c, ce = cond.run(cols)
            y, ye = yes.run(cols)
            n, ne = no.run(cols)
            c = np.broadcast_to(c, (cols.size,))
            values = np.where(c, y, n)
            err = either(ce, None)
            if ye is not None or ne is not None:
                pick = np.where(
                    c,
                    ye if ye is not None else False,
                    ne if ne is not None else False,
                )
                err = either(err, np.asarray(pick, dtype=bool))
            return values, err

        return Expr(yes.kind, run)

    def _conditionalor(self, tree: Any) -> Expr:
        return self._logic(tree, decisive=True)

    def _conditionaland(self, tree: Any) -> Expr:
        return self._logic(tree, decisive=False)

    def _logic(self, tree: Any, *, decisive: bool) -> Expr:
        """``||`` (a true side decides) and ``&&`` (a false side decides), with CEL's
        error absorption."""
        if len(tree.children) == 1:
            return self.node(tree.children[0])
        left, right = (self.node(c) for c in tree.children)
        op = "||" if decisive else "&&"
        self._want(tree.children[0], left, "bool", f"the left side of {op}")
        self._want(tree.children[1], right, "bool", f"the right side of {op}")

        def run(cols: Columns) -> Value:
            a, ae = left.run(cols)
            b, be = right.run(cols)
            a_ok = a if ae is None else a & ~ae  # a is decisive where it is valid
            b_ok = b if be is None else b & ~be
            if decisive:
                values = a_ok | b_ok
                decided = values
            else:
                a_false = ~a if ae is None else ~a & ~ae
                b_false = ~b if be is None else ~b & ~be
                decided = a_false | b_false
                values = a & b & ~decided
            err = either(ae, be)
            if err is not None:
                err = err & ~np.broadcast_to(decided, (cols.size,))
            return values, err

        return Expr("bool", run)

    # -- relations ------------------------------------------------------------------
    def _relation(self, tree: Any) -> Expr:
        if len(tree.children) == 1:
            return self.node(tree.children[0])
        op_node, right_node = tree.children
        op = op_node.data.removeprefix("relation_")
        left = self.node(op_node.children[0])
        right = self.node(right_node)
        if op == "in":
            return self._in(tree, left, right)
        if "null" in (left.kind, right.kind):
            return self._null_test(tree, op, left, right)
        if left.kind != right.kind:
            raise fail(tree, f"cannot compare {left.kind} with {right.kind}")
        if left.kind == "bool" and op not in ("eq", "ne"):
            raise fail(tree, "true/false values compare only with == and !=")
        if left.kind in ("list", "set"):
            raise fail(tree, "lists can only be the right side of 'in'")
        compare = COMPARE[op]

        def run(cols: Columns) -> Value:
            a, ae = left.run(cols)
            b, be = right.run(cols)
            err = either(ae, be)
            if left.kind == "str":
                values = compare_strings(compare, a, b, cols.size, err)
            else:
                with np.errstate(invalid="ignore"):
                    values = compare(a, b)
            return values, err

        return Expr("bool", run)

    def _in(self, tree: Any, left: Expr, right: Expr) -> Expr:
        if right.kind not in ("list", "set"):
            raise fail(tree, "the right side of 'in' must be a list or lists.<list>.<entity>")
        if left.kind not in ("num", "str"):
            raise fail(tree, f"'in' needs a number or a string on the left, not {left.kind}")

        # The same membership (a field in a list) appears in many rules: computed once
        # per batch when the left side is a field and the right a named or literal list.
        key = (left.path, right.path or right.constant) if left.path else None

        def run(cols: Columns) -> Value:
            if key is not None and key in cols.memo:
                return cast(Value, cols.memo[key])
            a, ae = left.run(cols)
            members, _ = right.run(cols)
            column = np.broadcast_to(np.asarray(a, dtype=object), (cols.size,))
            values = np.fromiter((v in members for v in column), dtype=bool, count=cols.size)
            if key is not None:
                cols.memo[key] = (values, ae)
            return values, ae

        return Expr("bool", run)

    def _null_test(self, tree: Any, op: str, left: Expr, right: Expr) -> Expr:
        field = left if right.kind == "null" else right
        if op not in ("eq", "ne") or field.path is None:
            raise fail(tree, "null compares only with == or != against a field")
        present = self._presence(tree, field.path)
        negate = op == "eq"

        def run(cols: Columns) -> Value:
            mask = present(cols)
            return (~mask if negate else mask), None

        return Expr("bool", run)

    # -- arithmetic -----------------------------------------------------------------
    def _addition(self, tree: Any) -> Expr:
        return self._arith(tree)

    def _multiplication(self, tree: Any) -> Expr:
        return self._arith(tree)

    def _arith(self, tree: Any) -> Expr:
        if len(tree.children) == 1:
            return self.node(tree.children[0])
        op_node, right_node = tree.children
        op = op_node.data.split("_", 1)[1]
        left = self.node(op_node.children[0])
        right = self.node(right_node)
        self._want(op_node.children[0], left, "num", f"the left side of {SYMBOL[op]}")
        self._want(right_node, right, "num", f"the right side of {SYMBOL[op]}")

        def run(cols: Columns) -> Value:
            a, ae = left.run(cols)
            b, be = right.run(cols)
            err = either(ae, be)
            if op in ("div", "mod"):
                zero = np.broadcast_to(np.asarray(b) == 0, (cols.size,))
                if zero.any():
                    err = either(err, zero.copy())
                    b = np.where(zero, 1.0, b)
            with np.errstate(all="ignore"):
                values = ARITH[op](a, b)
            return values, err

        return Expr("num", run)

    def _unary(self, tree: Any) -> Expr:
        if len(tree.children) == 1:
            return self.node(tree.children[0])
        op, operand_node = tree.children
        operand = self.node(operand_node)
        if op.data == "unary_not":
            self._want(operand_node, operand, "bool", "'!'")
            return Expr("bool", negation(operand))
        self._want(operand_node, operand, "num", "unary '-'")
        return Expr("num", negative(operand))

    # -- names ----------------------------------------------------------------------
    def _member_dot(self, tree: Any) -> Expr:
        return self._reference(tree.children[-1], dotted_path(tree))

    def _ident(self, tree: Any) -> Expr:
        return self._reference(tree, dotted_path(tree))

    def _reference(self, tree: Any, path: tuple[str, ...] | None) -> Expr:
        if path is None:
            raise fail(tree, "only purchase.<field>, features.<name>, score and lists.* exist")
        name = ".".join(path)
        if path == ("score",):
            self.references.add(name)
            return Expr("num", score_reader, path=path)
        if len(path) == 2 and path[0] == "purchase":
            kind = self.vocab.purchase_fields.get(path[1])
            if kind is None:
                raise fail(tree, _unknown(name, sorted(self.vocab.purchase_fields), "purchase."))
            self.references.add(name)
            return Expr(kind, purchase_reader(path[1]), path=path)
        if len(path) == 2 and path[0] == "features":
            if path[1] not in self.vocab.features:
                raise fail(tree, _unknown(name, sorted(self.vocab.features), "features."))
            self.references.add(name)
            return Expr("num", feature_reader(path[1]), path=path)
        if len(path) == 3 and path[0] == "lists":
            list_name, entity = path[1], path[2]
            if list_name not in LIST_NAMES:
                raise fail(tree, f"unknown list {list_name!r} (lists: block, allow)")
            if entity not in self.vocab.entities:
                raise fail(tree, _unknown(name, sorted(self.vocab.entities), f"lists.{list_name}."))
            self.references.add(name)
            chosen = cast(ListName, list_name)
            return Expr("set", lambda cols: (cols.listed(chosen, entity), None), path=path)
        raise fail(
            tree, f"unknown name {name!r} (purchase.<field>, features.<name>, score, lists.*)"
        )

    def _presence(self, tree: Any, path: tuple[str, ...]) -> Callable[[Columns], Mask]:
        if path[0] == "purchase":
            field = path[1]
            return lambda cols: cols.purchase(field)[1]
        if path[0] == "features":
            name = path[1]
            return lambda cols: ~np.isnan(cols.feature(name))
        if path == ("score",):
            return lambda cols: ~np.isnan(cols.score())
        raise fail(tree, "has() takes purchase.<field> or features.<name>")

    def _ident_arg(self, tree: Any) -> Expr:
        name = str(tree.children[0])
        args = arguments(tree.children[1] if len(tree.children) > 1 else None)
        if name != "has":
            raise fail(tree, f"unknown function {name!r} (rules may call has())")
        if len(args) != 1:
            raise fail(tree, "has() takes exactly one field")
        target = self.node(args[0])
        if target.path is None:
            raise fail(args[0], "has() takes purchase.<field> or features.<name>")
        present = self._presence(tree, target.path)
        return Expr("bool", lambda cols: (present(cols), None))

    def _member_dot_arg(self, tree: Any) -> Expr:
        receiver_node, method = tree.children[0], str(tree.children[1])
        args = arguments(tree.children[2] if len(tree.children) > 2 else None)
        if method not in STRING_METHODS:
            raise fail(tree, f"unknown method {method!r} (startsWith, endsWith, contains)")
        receiver = self.node(receiver_node)
        self._want(receiver_node, receiver, "str", f".{method}()")
        if len(args) != 1:
            raise fail(tree, f".{method}() takes one string")
        arg = self.node(args[0])
        if arg.kind != "str" or arg.constant is None:
            raise fail(args[0], f".{method}() takes a string literal")
        test, needle = STRING_METHODS[method], arg.constant

        def run(cols: Columns) -> Value:
            v, e = receiver.run(cols)
            column = np.broadcast_to(np.asarray(v, dtype=object), (cols.size,))
            values = np.fromiter(
                (isinstance(s, str) and test(s, needle) for s in column),
                dtype=bool,
                count=cols.size,
            )
            return values, e

        return Expr("bool", run)

    # -- literals -------------------------------------------------------------------
    def _literal(self, tree: Any) -> Expr:
        token = tree.children[0]
        kind, value = literal_value(token)
        if kind == "null":
            return Expr("null", lambda cols: (None, None))
        return Expr(kind, lambda cols: (value, None), constant=value)

    def _list_lit(self, tree: Any) -> Expr:
        nodes = arguments(tree.children[0] if tree.children else None)
        items = [self.node(n) for n in nodes]
        for node, item in zip(nodes, items, strict=True):
            if item.constant is None or item.kind not in ("num", "str"):
                raise fail(node, "a list in a rule holds literal numbers or strings")
        members = frozenset(item.constant for item in items)
        return Expr("list", lambda cols: (members, None), constant=members)

    def _want(self, node: Any, expr: Expr, kind: Kind, where: str) -> None:
        if expr.kind != kind:
            raise fail(node, f"{where} must be {_KIND_WORDS[kind]}, not {_KIND_WORDS[expr.kind]}")


def _unknown(name: str, known: Sequence[str], prefix: str) -> str:
    shown = ", ".join(prefix + k for k in known[:12])
    more = f" and {len(known) - 12} more" if len(known) > 12 else ""
    return f"unknown field {name!r} (known: {shown}{more})"


_KIND_WORDS: dict[Kind, str] = {
    "num": "a number",
    "bool": "true or false",
    "str": "a string",
    "null": "null",
    "list": "a list",
    "set": "a list",
}


def compile_rule(source: str, vocabulary: Vocabulary) -> Compiled:
    """Parse and check ``source``; raise RuleSyntaxError with the position and the reason."""
    tree = parse(source)
    compiler = _Compiler(vocabulary)
    expr = compiler.node(tree)
    if expr.kind != "bool":
        raise RuleSyntaxError(f"a rule must be true or false, this is {_KIND_WORDS[expr.kind]}")
    return Compiled(source, frozenset(compiler.references), expr.run)
