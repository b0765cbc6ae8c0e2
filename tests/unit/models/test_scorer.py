"""The fast scorer agrees with XGBoost, handles missing values, and refuses bad models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xgboost as xgb

from shopsentry.errors import ModelError, NoChampion
from shopsentry.models.forest import NumpyEvaluator, parse_model
from shopsentry.models.scorer import (
    ModelFiles,
    build_scorer,
    champion_version,
    load_champion,
    write_pointer,
)
from tests.unit.models.conftest import FEATURES, synthetic, train_raw


def reference(raw: bytes, X: np.ndarray) -> np.ndarray:
    booster = xgb.Booster(model_file=bytearray(raw))
    return booster.inplace_predict(X)


@pytest.fixture
def scorer(model_raw, kernel_cache):
    return build_scorer(model_raw, version="1", cache_dir=kernel_cache, expected_features=FEATURES)


def test_compiled_scorer_matches_xgboost_batch_and_single_rows(scorer, model_raw):
    X, _ = synthetic(3000, seed=5)
    assert scorer.evaluator_kind == "compiled"
    expected = reference(model_raw, X)
    np.testing.assert_allclose(scorer.predict(X), expected, atol=1e-5, rtol=0)
    for i in range(0, 40):  # the single-row path interleaves trees instead of rows
        np.testing.assert_allclose(
            scorer.predict(X[i : i + 1]), expected[i : i + 1], atol=1e-5, rtol=0
        )
    for n in (7, 8, 9, 65):  # block and remainder boundaries
        np.testing.assert_allclose(scorer.predict(X[:n]), expected[:n], atol=1e-5, rtol=0)


def test_numpy_evaluator_matches_xgboost(model_raw):
    X, _ = synthetic(500, seed=6)
    evaluator = NumpyEvaluator(parse_model(model_raw, FEATURES))
    np.testing.assert_allclose(evaluator.predict(X), reference(model_raw, X), atol=1e-5, rtol=0)


def reference_margin(raw: bytes, X: np.ndarray) -> np.ndarray:
    booster = xgb.Booster(model_file=bytearray(raw))
    return booster.inplace_predict(X, predict_type="margin")


def with_base_score(raw: bytes, base_score: str) -> bytes:
    doc = json.loads(raw)
    doc["learner"]["learner_model_param"]["base_score"] = base_score
    return json.dumps(doc).encode()


@pytest.mark.parametrize("rows", [1, 3, 7, 8, 9, 64, 65, 3000])
def test_margins_are_xgboosts_to_the_last_bit(model_raw, kernel_cache, rows):
    """Both evaluators add float32 leaves in tree order from the float32 base margin,
    as XGBoost does, so they agree exactly (single-row, 8-row and block paths)."""
    X, _ = synthetic(rows, seed=21)
    expected = reference_margin(model_raw, X)
    forest = parse_model(model_raw, FEATURES)
    compiled = build_scorer(model_raw, version="m", cache_dir=kernel_cache)
    assert compiled.evaluator_kind == "compiled"
    np.testing.assert_array_equal(compiled.margin(X).astype(np.float32), expected)
    np.testing.assert_array_equal(NumpyEvaluator(forest).margin(X).astype(np.float32), expected)


@pytest.mark.parametrize("base_score", ["[9.993694645E-01]", "[3.1E-4]", "[9.99999E-1]"])
def test_extreme_base_scores_are_read_as_xgboost_reads_them(model_raw, kernel_cache, base_score):
    """A calibrated model's base score can sit within 1e-3 of 1 (the weekly retrain of
    2026-11-25 had 0.9993694645). XGBoost rounds it to float32 before the logit: the
    float64 logit of the decimal string was 6.6e-5 off in margin and failed the 1e-5
    release check. The scorer must load such a model and agree with XGBoost (margins
    exactly: the probabilities of such a model are near 0 or 1, where a margin error
    hardly shows in them)."""
    raw = with_base_score(model_raw, base_score)
    X, _ = synthetic(2000, seed=22)
    expected_margin = reference_margin(raw, X)
    for evaluator in ("compiled", "numpy"):
        if evaluator == "compiled":
            scorer = build_scorer(raw, version="b", cache_dir=kernel_cache)
            margin, prob = scorer.margin(X), scorer.predict(X)
        else:
            numpy_eval = NumpyEvaluator(parse_model(raw))
            margin, prob = numpy_eval.margin(X), numpy_eval.predict(X)
        np.testing.assert_array_equal(margin.astype(np.float32), expected_margin)
        np.testing.assert_allclose(prob, reference(raw, X), atol=1e-5, rtol=0)


def test_missing_features_follow_default_directions(scorer, model_raw):
    X = np.full((3, len(FEATURES)), np.nan, dtype=np.float32)
    X[1, :4] = [3.0, np.nan, 1.0, 0.0]
    X[2, 0] = -2.0
    got = scorer.predict(X)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, reference(model_raw, X), atol=1e-5, rtol=0)


def test_non_contiguous_and_float64_input_is_scored_the_same(scorer, model_raw):
    X, _ = synthetic(100, seed=8)
    wide = np.asfortranarray(X.astype(np.float64))
    np.testing.assert_allclose(scorer.predict(wide), reference(model_raw, X), atol=1e-5, rtol=0)


def test_wrong_width_input_is_an_error_not_garbage(scorer):
    with pytest.raises(ValueError, match="expected shape"):
        scorer.predict(np.zeros((2, len(FEATURES) - 1), np.float32))


def test_explain_gives_top_features_that_add_up_to_the_margin(scorer):
    X, _ = synthetic(5, seed=9)
    X[0, 0] = 4.0  # a row dominated by feat_0
    top = scorer.explain(X[:1], top_k=3)[0]
    assert len(top) == 3
    assert top[0].name == "feat_0" and top[0].value == pytest.approx(4.0)
    assert top[0].contribution >= top[1].contribution >= top[2].contribution
    full = scorer.explain(X, top_k=len(FEATURES))
    booster = xgb.Booster(model_file=bytearray(scorer._raw))
    bias = booster.predict(xgb.DMatrix(X, feature_names=list(FEATURES)), pred_contribs=True)[:, -1]
    for row, contributions in enumerate(full):
        total = sum(c.contribution for c in contributions) + bias[row]
        assert total == pytest.approx(scorer.margin(X[row : row + 1])[0], abs=1e-4)
        missing = [c for c in contributions if np.isnan(X[row, FEATURES.index(c.name)])]
        assert all(c.value is None for c in missing)


def test_path_attributions_are_xgboosts_own(scorer, model_raw):
    from shopsentry.models.forest import parse_model, path_contributions

    X, _ = synthetic(300, seed=10)
    X[::7, 1] = np.nan  # missing values follow each split's default direction
    X[3, :] = np.nan
    booster = xgb.Booster(model_file=bytearray(model_raw))
    dmatrix = xgb.DMatrix(X, missing=np.nan, feature_names=list(FEATURES))
    reference = booster.predict(dmatrix, pred_contribs=True, approx_contribs=True)
    got = path_contributions(parse_model(model_raw), X)
    np.testing.assert_allclose(got, reference, atol=1e-4, rtol=0)
    assert scorer.own_contributions  # the load-time check agreed, so explain uses them


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda raw: raw[: len(raw) // 2],
        lambda raw: b"\x00\x01garbage" + raw[10:],
        lambda raw: b"",
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_corrupted_model_bytes_are_refused(model_raw, kernel_cache, corrupt):
    with pytest.raises(ModelError):
        build_scorer(
            corrupt(model_raw), version="9", cache_dir=kernel_cache, expected_features=FEATURES
        )


def test_model_with_wrong_feature_count_is_refused(kernel_cache):
    X, y = synthetic(500, seed=3)
    raw = train_raw(X[:, :5], y, rounds=5, names=FEATURES[:5])
    with pytest.raises(ModelError, match="expects 5 features"):
        build_scorer(raw, version="2", cache_dir=kernel_cache, expected_features=FEATURES)


def test_model_with_renamed_features_is_refused(model_raw, kernel_cache):
    renamed = ("other", *FEATURES[1:])
    with pytest.raises(ModelError, match="differ"):
        build_scorer(model_raw, version="2", cache_dir=kernel_cache, expected_features=renamed)


def test_tampered_leaf_is_caught_by_the_checksum(model_raw, kernel_cache):
    doc = json.loads(model_raw)
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["split_conditions"][-1] += 1.0
    tampered = json.dumps(doc).encode()
    import hashlib

    with pytest.raises(ModelError, match="checksum"):
        build_scorer(
            tampered,
            version="3",
            cache_dir=kernel_cache,
            expected_sha256=hashlib.sha256(model_raw).hexdigest(),
        )


def test_unsupported_objective_is_refused(kernel_cache):
    X, y = synthetic(300, seed=4)
    booster = xgb.train(
        {"objective": "reg:squarederror", "nthread": 1}, xgb.DMatrix(X, label=y.astype(float)), 3
    )
    with pytest.raises(ModelError, match="objective"):
        build_scorer(bytes(booster.save_raw("json")), version="4", cache_dir=kernel_cache)


def test_numpy_fallback_when_no_compiler(model_raw, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no gcc/cc reachable
    monkeypatch.delenv("CC", raising=False)
    scorer = build_scorer(
        model_raw, version="5", cache_dir=tmp_path / "k", expected_features=FEATURES
    )
    assert scorer.evaluator_kind == "numpy"
    X, _ = synthetic(50, seed=2)
    np.testing.assert_allclose(scorer.predict(X), reference(model_raw, X), atol=1e-5, rtol=0)


def _publish(settings, version: str, raw: bytes) -> None:
    import hashlib

    path = settings.data_dir / "models" / "test" / f"v{version}" / "model.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    write_pointer(
        ModelFiles.from_settings(settings),
        "test",
        version,
        path,
        hashlib.sha256(raw).hexdigest(),
        FEATURES,
    )


def test_no_pointer_means_no_champion(settings):
    assert champion_version(ModelFiles.from_settings(settings)) is None
    with pytest.raises(NoChampion):
        load_champion(ModelFiles.from_settings(settings), FEATURES)


def test_holder_swaps_only_to_a_champion_file_that_loads(settings, model_raw):
    from shopsentry.detection.model_reload import ModelHolder

    holder = ModelHolder(
        lambda: load_champion(ModelFiles.from_settings(settings), FEATURES),
        lambda: champion_version(ModelFiles.from_settings(settings)),
        interval_s=60,
    )
    _publish(settings, "1", model_raw)
    assert holder.load_initial(lambda: False).version == "1"
    holder.check_once()
    assert holder.swap_if_ready() is None  # unchanged pointer: nothing reloaded

    _publish(settings, "2", model_raw[:-40])  # a corrupted champion is promoted
    holder.check_once()
    assert holder.swap_if_ready() is None
    assert holder.current.version == "1"  # the previous champion keeps serving

    X, _ = synthetic(200, seed=11)
    wrong = train_raw(X[:, :4], np.arange(200) % 7 == 0, rounds=3, names=FEATURES[:4])
    _publish(settings, "3", wrong)  # an incompatible champion (4 features)
    holder.check_once()
    assert holder.swap_if_ready() is None and holder.current.version == "1"

    _publish(settings, "4", model_raw)
    holder.check_once()
    assert holder.swap_if_ready().version == "4" and holder.current.version == "4"


def test_unwritable_kernel_cache_falls_back_to_numpy(model_raw, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    scorer = build_scorer(
        model_raw, version="6", cache_dir=blocker / "cache", expected_features=FEATURES
    )
    assert scorer.evaluator_kind == "numpy"
    X, _ = synthetic(20, seed=12)
    np.testing.assert_allclose(scorer.predict(X), reference(model_raw, X), atol=1e-5, rtol=0)
