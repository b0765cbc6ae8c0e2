"""The rules a fraud team writes by hand before it has a model: the bar to beat.

They are the default rule set (:mod:`shopsentry.rules.defaults`, shadow mode), evaluated
by the same engine as on the hot path, over the same features the model sees (so the
comparison is about the learning, not about the inputs). A purchase is flagged when any
rule fires; the score ``1 - 0.5 ** fired`` (0.5 for one rule, 0.75 for two, ...) ranks
purchases that break several rules first, which gives the rules a PR curve too.

A rule whose features this build does not compute is skipped and reported as such,
never silently treated as "did not fire".
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray

from shopsentry.rules.defaults import DEFAULT_RULES
from shopsentry.rules.engine import TableColumns, vocabulary
from shopsentry.rules.language import Compiled, RuleSyntaxError, compile_rule
from shopsentry.rules.model import Rule

logger = logging.getLogger(__name__)

# Flag when at least one rule fires.
RULES_THRESHOLD = 0.5
RULES = DEFAULT_RULES


def _compiled(feature_names: tuple[str, ...]) -> list[tuple[Rule, Compiled]]:
    vocab = vocabulary(feature_names)
    out = []
    for rule in RULES:
        try:
            out.append((rule, compile_rule(rule.expression, vocab)))
        except RuleSyntaxError:
            continue  # a feature this build lacks: reported by describe_rules
    return out


def describe_rules(feature_names: tuple[str, ...]) -> list[str]:
    """The rules as a person reads them, noting any this build cannot evaluate."""
    active = {rule.name for rule, _ in _compiled(feature_names)}
    out = [r.note for r in RULES if r.name in active]
    out += [f"(skipped: {r.note}; features missing)" for r in RULES if r.name not in active]
    return out


def rules_fired(X: NDArray[np.float32], feature_names: tuple[str, ...]) -> NDArray[np.int32]:
    """How many rules fire per row."""
    cols = TableColumns(
        X.shape[0], features={name: X[:, i] for i, name in enumerate(feature_names)}
    )
    compiled = _compiled(feature_names)
    if len(compiled) < len(RULES):
        skipped = len(RULES) - len(compiled)
        logger.warning(
            "rules baseline: %d of %d rules skipped (features missing)", skipped, len(RULES)
        )
    fired = np.zeros(X.shape[0], np.int32)
    for _, condition in compiled:
        fires, _errors = condition.evaluate(cols)
        fired += fires.astype(np.int32)
    return fired


def rules_score(X: NDArray[np.float32], feature_names: tuple[str, ...]) -> NDArray[np.float64]:
    """``1 - 0.5 ** fired``: 0 when no rule fires, >= 0.5 when any does."""
    score: NDArray[np.float64] = 1.0 - 0.5 ** rules_fired(X, feature_names).astype(np.float64)
    return score
