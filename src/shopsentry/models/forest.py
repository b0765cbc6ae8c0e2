"""An XGBoost binary classifier as plain arrays, and two evaluators built from them.

The hot path cannot afford XGBoost's per-call overhead (a DMatrix-free
``inplace_predict`` still costs ~250 µs for one row), so the fast scorer reads the
model's JSON once, keeps every tree as flat arrays and evaluates them either

* with a small branchless C kernel (compiled once by the system C compiler, cached,
  called through ``ctypes``) that walks the trees as an array of nodes; or
* with a vectorised NumPy walk of all rows through all trees at once, used when no C
  compiler is available.

Both follow XGBoost's own rules exactly: go left when ``x < threshold`` (float32
comparison), a missing value (NaN) follows the node's default direction, and the margin
is computed in XGBoost's own float32 arithmetic: ``base_score`` is rounded to float32,
turned into a margin with ``-logf(1 / base_score - 1)``, and the reached leaves are
added to it one tree at a time, in tree order, in float32. Only the final sigmoid is
taken in float64. Done this way the margins are bit-identical to
``Booster.inplace_predict(..., predict_type="margin")`` (the unit tests assert it), so
the 1e-5 agreement on probabilities holds for any model, including calibrated ones whose
base score sits close to 1, where the float64 logit of the decimal base score in the
JSON is up to ~1e-4 away from the margin XGBoost really starts from.

Anything the evaluators do not implement (categorical splits, multi-class, vector
leaves, other objectives) is refused with :class:`~shopsentry.errors.ModelError`
rather than scored wrongly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.errors import ModelError

logger = logging.getLogger(__name__)

_SUPPORTED_OBJECTIVES = ("binary:logistic",)


@dataclass(frozen=True)
class Forest:
    """Every tree of one model, padded to the same node count ``(T, N)``.

    Leaves point to themselves (``left == right == own index``), so a walk of
    ``max_depth`` steps lands every row on its leaf without branching per tree.
    """

    feature_names: tuple[str, ...]
    base_margin: float
    left: NDArray[np.int32]
    right: NDArray[np.int32]
    feature: NDArray[np.int32]
    threshold: NDArray[np.float32]
    default_left: NDArray[np.bool_]
    value: NDArray[np.float32]
    is_leaf: NDArray[np.bool_]
    max_depth: int
    sha256: str
    # Each node's expected value: its leaf value, or its children's cover-weighted mean
    # (what the path attributions credit each split with changing).
    mean: NDArray[np.float32]

    @property
    def num_trees(self) -> int:
        return int(self.left.shape[0])

    @property
    def num_features(self) -> int:
        return len(self.feature_names)


def base_margin(learner: dict[str, Any]) -> float:
    """The margin XGBoost starts every row from, exactly as XGBoost computes it.

    XGBoost keeps ``base_score`` as a float32 and converts it with the logistic
    objective's ``ProbToMargin``, ``-logf(1.0f / base_score - 1.0f)``, in float32. Taking
    the float64 logit of the decimal string instead is wrong by up to ~1e-4 in margin
    when the base score is near 1 (float32's spacing there is 6e-8, so ``1 - p`` =
    6e-4 keeps only ~4 digits), which is what a calibration folded into the base score
    with a large intercept produced.
    """
    raw = str(learner["learner_model_param"]["base_score"]).strip("[]")
    values = [np.float32(v) for v in raw.split(",") if v.strip()]
    if len(values) != 1:
        raise ModelError("model has more than one target", hint="train a binary classifier")
    base_score = values[0]
    if not np.float32(0.0) < base_score < np.float32(1.0):
        raise ModelError(
            f"base_score {float(base_score)} is not a probability in float32",
            hint="retrain the model",
        )
    one = np.float32(1.0)
    return float(-_logf(one / base_score - one))


@functools.lru_cache(maxsize=1)
def _libm_logf() -> Any:
    name = ctypes.util.find_library("m")
    try:
        logf = ctypes.CDLL(name).logf if name else None
    except (OSError, AttributeError):
        logf = None
    if logf is not None:
        logf.restype = ctypes.c_float
        logf.argtypes = (ctypes.c_float,)
    return logf


def _logf(x: np.float32) -> np.float32:
    """The C library's ``logf``, the very function XGBoost calls for its base margin.

    NumPy's own float32 ``log`` (a SIMD implementation) differs from it by one ulp for
    some inputs (e.g. base_score 0.99999); without a C library the correctly rounded
    float64 log is the closest stand-in.
    """
    logf = _libm_logf()
    if logf is not None:
        return np.float32(logf(float(x)))
    return np.float32(math.log(float(x)))


def parse_model(raw: bytes, expected_features: tuple[str, ...] | None = None) -> Forest:
    """Read an XGBoost JSON model, refusing what the evaluators cannot score exactly."""
    learner, trees, num_feature = _read_learner(raw)
    names = _feature_names(learner, num_feature, expected_features)
    if not trees:
        raise ModelError("model has no trees", hint="retrain the model")
    arrays, max_depth = _tree_arrays(trees, num_feature)
    if not np.all(np.isfinite(arrays["value"])) or not np.all(np.isfinite(arrays["threshold"])):
        raise ModelError(
            "model has non-finite split or leaf values", hint="the model file is corrupted"
        )
    return Forest(
        feature_names=names,
        base_margin=base_margin(learner),
        max_depth=max_depth,
        sha256=hashlib.sha256(raw).hexdigest(),
        **arrays,
    )


def _read_learner(raw: bytes) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """The learner, its trees and its feature count, of a supported model only."""
    try:
        doc = json.loads(raw)
        learner = doc["learner"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
        trees = booster["model"]["trees"]
        num_feature = int(learner["learner_model_param"]["num_feature"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"model file is not a readable XGBoost JSON model ({type(exc).__name__}: {exc})",
            hint="the file is corrupted or in another format; retrain or roll back",
        ) from None
    if objective not in _SUPPORTED_OBJECTIVES:
        raise ModelError(f"unsupported objective {objective!r}", hint="train with binary:logistic")
    if booster.get("name") != "gbtree":
        raise ModelError(
            f"unsupported booster {booster.get('name')!r}", hint="train a gbtree booster"
        )
    return learner, trees, num_feature


def _feature_names(
    learner: dict[str, Any], num_feature: int, expected: tuple[str, ...] | None
) -> tuple[str, ...]:
    """The model's feature names, checked against what this build computes."""
    names = tuple(learner.get("feature_names") or ())
    if names and len(names) != num_feature:
        raise ModelError(
            "model feature names disagree with its feature count", hint="retrain the model"
        )
    if expected is not None:
        if num_feature != len(expected):
            raise ModelError(
                f"model expects {num_feature} features, this build computes {len(expected)}",
                hint="retrain the model with the current feature definitions",
            )
        if names and names != expected:
            diff = next(f"{a!r} != {b!r}" for a, b in zip(names, expected, strict=True) if a != b)
            raise ModelError(
                f"model features differ from this build's ({diff})",
                hint="retrain the model with the current feature definitions",
            )
    return names or expected or tuple(f"f{i}" for i in range(num_feature))


def _tree_arrays(
    trees: list[dict[str, Any]], num_feature: int
) -> tuple[dict[str, NDArray[Any]], int]:
    """The trees as padded node arrays (a leaf's children point at itself) and the
    deepest tree's depth."""
    width = max(int(t["tree_param"]["num_nodes"]) for t in trees)
    shape = (len(trees), width)
    arrays: dict[str, NDArray[Any]] = {
        "left": np.zeros(shape, np.int32),
        "right": np.zeros(shape, np.int32),
        "feature": np.zeros(shape, np.int32),
        "threshold": np.zeros(shape, np.float32),
        "default_left": np.zeros(shape, np.bool_),
        "value": np.zeros(shape, np.float32),
        "is_leaf": np.ones(shape, np.bool_),
        "mean": np.zeros(shape, np.float32),
    }
    idx = np.arange(width, dtype=np.int32)
    arrays["left"][:] = idx
    arrays["right"][:] = idx
    max_depth = 0
    for t, tree in enumerate(trees):
        max_depth = max(max_depth, _fill_tree(arrays, t, tree, num_feature))
    return arrays, max_depth


def _fill_tree(
    arrays: dict[str, NDArray[Any]], t: int, tree: dict[str, Any], num_feature: int
) -> int:
    """Row ``t`` of ``arrays`` from one tree, checked; returns the tree's depth."""
    if any(int(s) != 0 for s in tree.get("split_type", [])) or tree.get("categories_nodes"):
        raise ModelError("model uses categorical splits", hint="train on numeric features only")
    if int(tree["tree_param"].get("size_leaf_vector", "1")) > 1:
        raise ModelError("model has vector leaves", hint="train a single-target model")
    n = int(tree["tree_param"]["num_nodes"])
    lc = np.asarray(tree["left_children"], np.int64)
    rc = np.asarray(tree["right_children"], np.int64)
    if lc.shape != (n,) or rc.shape != (n,):
        raise ModelError(f"tree {t} is malformed", hint="the model file is corrupted")
    leaf = lc < 0
    nodes = np.arange(n)
    feats = np.asarray(tree["split_indices"], np.int64)
    if np.any(~leaf & ((feats < 0) | (feats >= num_feature))):
        raise ModelError(
            f"tree {t} splits on a feature outside 0..{num_feature - 1}",
            hint="the model file is corrupted",
        )
    if np.any(~leaf & ((lc >= n) | (rc >= n) | (lc <= nodes) | (rc <= nodes))):
        raise ModelError(
            f"tree {t} has child links out of order", hint="the model file is corrupted"
        )
    hessian = np.asarray(tree.get("sum_hessian") or np.ones(n), np.float32)
    if hessian.shape != (n,):
        raise ModelError(f"tree {t} is malformed", hint="the model file is corrupted")
    conditions = np.asarray(tree["split_conditions"], np.float32)
    arrays["left"][t, :n] = np.where(leaf, nodes, lc)
    arrays["right"][t, :n] = np.where(leaf, nodes, rc)
    arrays["feature"][t, :n] = np.where(leaf, 0, feats)
    arrays["threshold"][t, :n] = np.where(leaf, 0, conditions)
    arrays["value"][t, :n] = np.where(leaf, conditions, 0)
    arrays["default_left"][t, :n] = np.asarray(tree["default_left"], np.int64).astype(bool)
    arrays["is_leaf"][t, :n] = leaf
    arrays["mean"][t, :n] = _node_means(lc, rc, arrays["value"][t, :n], hessian)
    return _depth(lc, rc)


def _node_means(
    left: NDArray[np.int64],
    right: NDArray[np.int64],
    leaf_value: NDArray[np.float32],
    hessian: NDArray[np.float32],
) -> NDArray[np.float32]:
    """XGBoost's ``FillNodeMeanValues``, in its float32 arithmetic: bottom up (children
    always follow their parent), a leaf's mean is its value, a split's the hessian-weighted
    mean of its children's."""
    mean = leaf_value.astype(np.float32).copy()
    for node in range(left.shape[0] - 1, -1, -1):
        lc, rc = left[node], right[node]
        if lc >= 0:
            total = mean[lc] * hessian[lc] + mean[rc] * hessian[rc]
            mean[node] = np.float32(total / hessian[node]) if hessian[node] else np.float32(0)
    return mean


def path_contributions(forest: Forest, X: NDArray[np.float32]) -> NDArray[np.float64]:
    """Saabas path attributions, ``(rows, features + 1)``, the last column the bias.

    The same numbers as XGBoost's ``pred_contribs=True, approx_contribs=True``: along
    each tree's path, every split is credited with the change in the node mean it causes,
    and each tree's root mean goes to the bias; per row they add up to the margin (less
    the base margin, which XGBoost also adds to the bias). All rows through all trees at
    once, ``max_depth`` rounds of gathers: a few hundred microseconds for a batch's
    flagged rows, against ~1 ms of DMatrix set-up and call through XGBoost.
    """
    f = forest
    n, width = X.shape[0], f.num_features + 1
    trees = np.arange(f.num_trees)[None, :]
    rows = np.broadcast_to(np.arange(n)[:, None], (n, f.num_trees))
    node = np.zeros((n, f.num_trees), np.int32)
    current = f.mean[trees, node]
    contributions = np.zeros(n * width, np.float64)
    contributions[np.arange(n) * width + f.num_features] = current.sum(axis=1, dtype=np.float64)
    for _ in range(f.max_depth):
        feat, node = _step(f, trees, rows, node, X)
        reached = f.mean[trees, node]
        # A leaf points to itself: its "step" changes nothing and adds zero.
        contributions += np.bincount(
            (rows * width + feat).ravel(),
            weights=(reached - current).astype(np.float64).ravel(),
            minlength=n * width,
        )
        current = reached
    out: NDArray[np.float64] = contributions.reshape(n, width)
    out[:, -1] += f.base_margin
    return out


def _depth(left: NDArray[np.int64], right: NDArray[np.int64]) -> int:
    depth = np.zeros(left.shape[0], np.int64)
    for node in range(left.shape[0]):  # children always follow their parent
        if left[node] >= 0:
            depth[left[node]] = depth[node] + 1
            depth[right[node]] = depth[node] + 1
    return int(depth.max())


def _step(
    f: Forest, trees: NDArray[Any], rows: NDArray[Any], node: NDArray[np.int32], X: NDArray[Any]
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """One level of every row's walk through every tree, XGBoost's rules: left when
    ``x < threshold``, a missing value the default way. Returns (split feature, next node);
    a leaf points to itself, so a walk of ``max_depth`` steps ends on every leaf."""
    feat = f.feature[trees, node]
    x = X[rows, feat]
    go_left = np.where(np.isnan(x), f.default_left[trees, node], x < f.threshold[trees, node])
    return feat, np.where(go_left, f.left[trees, node], f.right[trees, node])


def _sigmoid(margin: NDArray[np.float64]) -> NDArray[np.float64]:
    out: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-margin))
    return out


class NumpyEvaluator:
    """All rows through all trees at once: ``max_depth`` rounds of gathers."""

    kind = "numpy"

    def __init__(self, forest: Forest) -> None:
        self.forest = forest
        self._trees = np.arange(forest.num_trees)[None, :]

    def margin(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        f = self.forest
        n = X.shape[0]
        node = np.zeros((n, f.num_trees), np.int32)
        rows = np.arange(n)[:, None]
        for _ in range(f.max_depth):
            node = _step(f, self._trees, rows, node, X)[1]
        # XGBoost's order and precision: the float32 base margin, then each tree's leaf
        # added in float32 in tree order. ``add.accumulate`` is sequential by definition
        # (``sum`` would be pairwise, and in float64 it drifts from XGBoost by ~1e-5).
        terms = np.empty((n, f.num_trees + 1), np.float32)
        terms[:, 0] = np.float32(f.base_margin)
        terms[:, 1:] = f.value[self._trees, node]
        out: NDArray[np.float64] = np.add.accumulate(terms, axis=1)[:, -1].astype(np.float64)
        return out

    def predict(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        return _sigmoid(self.margin(X))
