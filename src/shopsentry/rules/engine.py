"""A rule set compiled once, applied to a batch of purchases in the documented order.

Precedence (the first that applies decides; `docs/rules.md`):

1. **allow**: the purchase names an entity on the allow list, or an active allow rule fires;
2. **block**: an entity on the block list, or an active block rule;
3. **the model**: the score against the threshold bands (approve / review / decline);
4. **review**: an active review rule turns an approval into a review.

Shadow rules are evaluated and counted exactly like active ones and never change the
outcome. A rule that errs on a purchase (a missing value, a division by zero) does not
fire there; the error is counted for that rule and the purchase is decided by the rest.
"""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.events.schema import Band, Purchase
from shopsentry.rules.language import (
    LIST_NAMES,
    Columns,
    Compiled,
    Kind,
    Mask,
    RuleSyntaxError,
    Vocabulary,
    compile_rule,
)
from shopsentry.rules.lists import ListIndex
from shopsentry.rules.model import Action, Rule, RuleSet, purchase_entities

logger = logging.getLogger(__name__)

Override = Action | None


def _kind_of(annotation: Any) -> Kind | None:
    """num for int/float fields, str for strings and string literals, None otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _kind_of(args[0])
    if origin is typing.Annotated:
        return _kind_of(args[0])
    if origin is typing.Literal:
        return "str" if all(isinstance(a, str) for a in args) else None
    if annotation in (int, float) and annotation is not bool:
        return "num"
    if annotation is str:
        return "str"
    return None


def purchase_field_kinds() -> dict[str, Kind]:
    kinds: dict[str, Kind] = {}
    for name, info in Purchase.model_fields.items():
        if name in ("schema_version", "event_type"):
            continue
        kind = _kind_of(info.annotation)
        if kind is not None:
            kinds[name] = kind
    return kinds


def vocabulary(feature_names: Sequence[str]) -> Vocabulary:
    return Vocabulary(
        purchase_fields=purchase_field_kinds(),
        features=frozenset(feature_names),
        entities=frozenset(purchase_entities()),
    )


@dataclass(frozen=True)
class CompiledRule:
    rule: Rule
    condition: Compiled


@dataclass
class Verdicts:
    """The rules' and lists' say on one batch, row by row."""

    overrides: list[Override]
    rules_fired: list[tuple[str, ...]]  # active rules that fired, per row
    shadow_fired: list[tuple[str, ...]]
    list_hits: list[tuple[str, ...]]  # "block:card", "allow:user", ... per row
    hits: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, mode) → rows
    errors: dict[str, int] = field(default_factory=dict)  # rule → rows in error

    def final_band(self, row: int, model_band: Band) -> Band:
        """The band after precedence: allow and block override the model; review upgrades
        an approval."""
        override = self.overrides[row]
        if override == "allow":
            return "approve"
        if override == "block":
            return "decline"
        if override == "review" and model_band == "approve":
            return "review"
        return model_band


class CompiledRuleSet:
    """A :class:`RuleSet` at one version, compiled against the model's feature names."""

    def __init__(self, rule_set: RuleSet, feature_names: Sequence[str]) -> None:
        self.version = rule_set.version
        vocab = vocabulary(feature_names)
        compiled: list[CompiledRule] = []
        for rule in sorted(rule_set.rules, key=lambda r: (r.priority, r.name)):
            if not rule.enabled:
                continue
            try:
                compiled.append(CompiledRule(rule, compile_rule(rule.expression, vocab)))
            except RuleSyntaxError as exc:
                # Rules are checked when saved; one that no longer compiles (a feature
                # the new model dropped) is left out, loudly, and the rest still apply.
                logger.error("rule %s left out: %s", rule.name, exc.one_line())
        self.rules = tuple(compiled)
        self.lists = ListIndex(rule_set.entries)
        self.entities = purchase_entities()

    def evaluate(self, cols: Columns, now_s: float) -> Verdicts:
        n = cols.size
        self.lists.refresh(now_s)
        overrides: list[Override] = [None] * n
        verdicts = Verdicts(overrides, [()] * n, [()] * n, [()] * n)
        allow = np.zeros(n, dtype=bool)
        block = np.zeros(n, dtype=bool)
        review = np.zeros(n, dtype=bool)
        self._apply_lists(cols, verdicts, allow, block)
        if self.rules:
            results = [item.condition.evaluate(cols) for item in self.rules]
            fired = np.vstack([fires for fires, _ in results])
            for item, (fires, errors) in zip(self.rules, results, strict=True):
                rule = item.rule
                verdicts.hits[(rule.name, rule.mode)] = int(fires.sum())
                if errors.any():
                    verdicts.errors[rule.name] = int(errors.sum())
                if rule.acting:
                    {"allow": allow, "block": block, "review": review}[rule.action] |= fires
            self._name_rows(fired, verdicts)
        for i in np.flatnonzero(allow | block | review):
            overrides[i] = "allow" if allow[i] else "block" if block[i] else "review"
        return verdicts

    def _name_rows(self, fired: NDArray[np.bool_], verdicts: Verdicts) -> None:
        """Per purchase, the names of the rules that fired: one pass over the hits."""
        names = [(item.rule.name, item.rule.acting) for item in self.rules]
        active: dict[int, list[str]] = {}
        shadow: dict[int, list[str]] = {}
        for row, j in np.argwhere(fired.T).tolist():  # row-major: rules in priority order
            name, acting = names[j]
            (active if acting else shadow).setdefault(row, []).append(name)
        for row, found in active.items():
            verdicts.rules_fired[row] = tuple(found)
        for row, found in shadow.items():
            verdicts.shadow_fired[row] = tuple(found)

    def _apply_lists(self, cols: Columns, verdicts: Verdicts, allow: Mask, block: Mask) -> None:
        if not self.lists:
            return
        hits: dict[int, list[str]] = {}
        for entity, fieldname in self.entities.items():
            lists = [(name, self.lists.listed(name, entity)) for name in LIST_NAMES]
            lists = [(name, members) for name, members in lists if members]
            if not lists:
                continue
            values = cols.purchase(fieldname)[0]  # an absent value (None) is on no list
            for list_name, members in lists:
                key = (("purchase", fieldname), ("lists", list_name, entity))
                if key in cols.memo:  # a rule tested the same membership already
                    listed = cols.memo[key][0]
                else:
                    listed = np.fromiter((v in members for v in values), bool, count=cols.size)
                    cols.memo[key] = (listed, None)
                if not listed.any():
                    continue
                (allow if list_name == "allow" else block)[listed] = True
                for row in np.flatnonzero(listed).tolist():
                    hits.setdefault(row, []).append(f"{list_name}:{entity}")
        for row, names in hits.items():
            verdicts.list_hits[row] = tuple(names)


_FIELD_KINDS = purchase_field_kinds()


class PurchaseColumns:
    """A micro-batch of the hot path as rule columns: decoded purchases, their feature
    rows and their scores."""

    def __init__(
        self,
        purchases: Sequence[Purchase],
        X: NDArray[np.float32],
        feature_index: Mapping[str, int],
        scores: NDArray[np.float64],
        lists: ListIndex,
    ) -> None:
        self.size = len(purchases)
        self._purchases = purchases
        self._X = X
        self._index = feature_index
        self._scores = scores
        self._lists = lists
        self._fields: dict[str, tuple[NDArray[Any], Mask]] = {}
        self._kinds = _FIELD_KINDS
        self.memo: dict[Any, Any] = {}

    def purchase(self, name: str) -> tuple[NDArray[Any], Mask]:
        cached = self._fields.get(name)
        if cached is None:
            raw = [getattr(p, name, None) for p in self._purchases]
            present = np.fromiter((v is not None for v in raw), dtype=bool, count=self.size)
            if self._kinds.get(name) == "num":
                values: NDArray[Any] = np.array(
                    [v if v is not None else np.nan for v in raw], dtype=np.float64
                )
            else:
                values = np.array(raw, dtype=object)
            cached = self._fields[name] = (values, present)
        return cached

    def feature(self, name: str) -> NDArray[np.float64]:
        return self._X[:, self._index[name]].astype(np.float64)

    def score(self) -> NDArray[np.float64]:
        return self._scores

    def listed(self, list_name: str, entity: str) -> frozenset[str]:
        return self._lists.listed(list_name, entity)


class TableColumns:
    """Rule columns over tables of equal-length arrays: the warehouse's point-in-time
    history for backtests, or a feature matrix for the model card's baseline."""

    def __init__(
        self,
        size: int,
        *,
        purchases: Mapping[str, NDArray[Any]] | None = None,
        features: Mapping[str, NDArray[Any]] | None = None,
        scores: NDArray[Any] | None = None,
        lists: ListIndex | None = None,
    ) -> None:
        self.size = size
        self._purchases = purchases or {}
        self._features = features or {}
        self._scores = scores
        self._lists = lists or ListIndex(())
        self.memo: dict[Any, Any] = {}

    def purchase(self, name: str) -> tuple[NDArray[Any], Mask]:
        values = self._purchases.get(name)
        if values is None:
            return np.full(self.size, None, dtype=object), np.zeros(self.size, dtype=bool)
        if values.dtype.kind in "fiu":
            as_float = values.astype(np.float64)
            return as_float, ~np.isnan(as_float)
        present = np.fromiter((v is not None for v in values), dtype=bool, count=self.size)
        return values, present

    def feature(self, name: str) -> NDArray[np.float64]:
        return np.asarray(self._features[name], dtype=np.float64)

    def score(self) -> NDArray[np.float64]:
        if self._scores is None:
            return np.full(self.size, np.nan)
        return np.asarray(self._scores, dtype=np.float64)

    def listed(self, list_name: str, entity: str) -> frozenset[str]:
        return self._lists.listed(list_name, entity)
