from __future__ import annotations

import random

import celpy
import numpy as np
import pytest

from shopsentry.rules.language import RuleSyntaxError, compile_rule

from .conftest import Rows

ROWS = Rows(
    [
        {
            "purchase": {"amount": 10.0, "country": "US", "card_fingerprint": "c1"},
            "score": 0.1,
            "features": {"new_device": 1.0, "amount_ratio": 1.0},
        },
        {
            "purchase": {"amount": 600.0, "country": "FR", "card_fingerprint": "c2"},
            "score": 0.9,
            "features": {"new_device": 0.0, "amount_ratio": 8.0},
        },
        {
            "purchase": {"amount": 700.0, "country": "US"},
            "score": 0.5,
            "features": {"new_device": 1.0, "amount_ratio": 9.0},
        },
        {
            "purchase": {"amount": 50.0, "country": "DE", "card_fingerprint": "c4"},
            "score": 0.2,
            "features": {},
        },
    ],
    lists={("block", "card"): frozenset({"c2"})},
)


def run(source, vocab, cols=ROWS):
    fires, errors = compile_rule(source, vocab).evaluate(cols)
    return fires.tolist(), errors.tolist()


@pytest.mark.parametrize(
    ("source", "fires", "errors"),
    [
        (
            "purchase.amount > 500.0 && features.new_device == 1.0",
            [False, False, True, False],
            [False] * 4,
        ),  # false && missing = false
        (
            "purchase.amount > 500.0 || features.amount_ratio > 5.0",
            [False, True, True, False],
            [False, False, False, True],
        ),  # false || missing = error
        (
            "has(features.amount_ratio) && features.amount_ratio > 5.0",
            [False, True, True, False],
            [False] * 4,
        ),
        (
            "purchase.card_fingerprint in lists.block.card",
            [False, True, False, False],
            [False, False, True, False],
        ),
        ("purchase.card_fingerprint == null", [False, False, True, False], [False] * 4),
        (
            "purchase.country in ['US', 'DE'] && score < 0.3",
            [True, False, False, True],
            [False] * 4,
        ),
        (
            "purchase.amount / (score - 0.5) > 0.0",
            [False, True, False, False],
            [False, False, True, False],
        ),  # division by zero
        (
            "purchase.country.startsWith('F') || purchase.country.endsWith('E')",
            [False, True, False, True],
            [False] * 4,
        ),
        (
            "!(score > 0.5) ? purchase.amount > 20.0 : false",
            [False, False, True, True],
            [False] * 4,
        ),
        ("-purchase.amount < -100.0", [False, True, True, False], [False] * 4),
    ],
)
def test_conditions_follow_cel_semantics(source, fires, errors, vocab):
    assert run(source, vocab) == (fires, errors)


@pytest.mark.parametrize(
    ("source", "column", "needle"),
    [
        ("purchase.amount >", 17, "syntax error"),
        ("purchase.amout > 1.0", 10, "unknown field 'purchase.amout'"),
        ("features.nope > 1.0", 10, "unknown field 'features.nope'"),
        ("score > 0.5 && lists.grey.card == 'x'", 27, "unknown list 'grey'"),
        ("purchase.country > 1.0", 1, "cannot compare str with num"),
        ("purchase.amount + 1.0", 1, "must be true or false"),
        ("eval('1')", 1, "unknown function 'eval'"),
        ("purchase.amount in lists.block.card && 1.0", 40, "right side of &&"),
    ],
)
def test_bad_rules_are_refused_with_position_and_reason(source, column, needle, vocab):
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule(source, vocab)
    assert needle in info.value.reason
    assert info.value.column == column


def test_unknown_field_lists_the_known_ones(vocab):
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule("features.new_devcie > 0.5", vocab)
    assert "features.new_device" in info.value.reason


# -- agreement with a reference CEL interpreter ------------------------------------
EXPRESSIONS = [
    "purchase.amount > 100.0 && features.new_device > 0.5",
    "purchase.amount > 100.0 || features.amount_ratio > 3.0",
    "!(features.purchases_10m >= 2.0) && score < 0.7",
    "purchase.country == 'US' || purchase.card_fingerprint in ['c1', 'c3']",
    "has(features.amount_ratio)"
    " ? features.amount_ratio * 2.0 > purchase.amount / 100.0 : score > 0.5",
    "purchase.amount - features.amount_ratio * 10.0 <= 50.0 || !has(purchase.card_fingerprint)",
    "purchase.country != 'FR' && (features.new_device == 1.0 || score > 0.4)",
]


def _random_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        purchase = {
            "amount": round(rng.uniform(1, 400), 2),
            "country": rng.choice(["US", "FR", "DE"]),
        }
        if rng.random() < 0.7:
            purchase["card_fingerprint"] = rng.choice(["c1", "c2", "c3"])
        features = {}
        for name, low, high in (
            ("new_device", 0, 1),
            ("amount_ratio", 0, 10),
            ("purchases_10m", 0, 4),
        ):
            if rng.random() < 0.8:
                features[name] = float(rng.randint(low, high))
        rows.append({"purchase": purchase, "features": features, "score": round(rng.random(), 3)})
    return rows


@pytest.mark.parametrize("source", EXPRESSIONS)
def test_vectorised_evaluation_agrees_with_the_reference_interpreter(source, vocab):
    """cel-python's interpreter is the reference: for every row our batch evaluation
    fires where it says true, and errs exactly where it raises."""
    rows = _random_rows(300, seed=len(source))
    fires, errors = compile_rule(source, vocab).evaluate(Rows(rows))
    env = celpy.Environment()
    program = env.program(env.compile(source))
    for i, row in enumerate(rows):
        activation = {k: celpy.json_to_cel(v) for k, v in row.items()}
        try:
            expected = program.evaluate(activation)
        except celpy.CELEvalError:
            expected = "error"
        if isinstance(expected, celpy.CELEvalError):
            expected = "error"
        got = "error" if errors[i] else bool(fires[i])
        assert got == (expected if expected == "error" else bool(expected)), (i, row)


def test_a_batch_of_one_and_constant_rules(vocab):
    one = Rows([{"purchase": {"amount": 5.0, "country": "US"}, "score": 0.2, "features": {}}])
    assert run("true", vocab, one) == ([True], [False])
    assert run("score > 0.1", vocab, one) == ([True], [False])
    assert np.asarray(run("1.0 / 0.0 > 1.0", vocab, one)[1]).all()
