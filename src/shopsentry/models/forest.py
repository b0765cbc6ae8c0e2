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
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
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
    try:
        doc = json.loads(raw)
        learner = doc["learner"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
        model = booster["model"]
        trees = model["trees"]
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
    names = tuple(learner.get("feature_names") or ())
    if names and len(names) != num_feature:
        raise ModelError(
            "model feature names disagree with its feature count", hint="retrain the model"
        )
    if expected_features is not None:
        if num_feature != len(expected_features):
            raise ModelError(
                f"model expects {num_feature} features,"
                f" this build computes {len(expected_features)}",
                hint="retrain the model with the current feature definitions",
            )
        if names and names != expected_features:
            diff = next(
                f"{a!r} != {b!r}" for a, b in zip(names, expected_features, strict=True) if a != b
            )
            raise ModelError(
                f"model features differ from this build's ({diff})",
                hint="retrain the model with the current feature definitions",
            )
    if not names:
        names = expected_features or tuple(f"f{i}" for i in range(num_feature))
    if not trees:
        raise ModelError("model has no trees", hint="retrain the model")

    width = max(int(t["tree_param"]["num_nodes"]) for t in trees)
    shape = (len(trees), width)
    left = np.zeros(shape, np.int32)
    right = np.zeros(shape, np.int32)
    feature = np.zeros(shape, np.int32)
    threshold = np.zeros(shape, np.float32)
    default_left = np.zeros(shape, np.bool_)
    value = np.zeros(shape, np.float32)
    is_leaf = np.ones(shape, np.bool_)
    mean = np.zeros(shape, np.float32)
    max_depth = 0
    for t, tree in enumerate(trees):
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
        idx = np.arange(width, dtype=np.int32)
        left[t] = idx
        right[t] = idx
        left[t, :n] = np.where(leaf, np.arange(n), lc)
        right[t, :n] = np.where(leaf, np.arange(n), rc)
        feats = np.asarray(tree["split_indices"], np.int64)
        if np.any(~leaf & ((feats < 0) | (feats >= num_feature))):
            raise ModelError(
                f"tree {t} splits on a feature outside 0..{num_feature - 1}",
                hint="the model file is corrupted",
            )
        if np.any(~leaf & ((lc >= n) | (rc >= n) | (lc <= np.arange(n)) | (rc <= np.arange(n)))):
            raise ModelError(
                f"tree {t} has child links out of order", hint="the model file is corrupted"
            )
        feature[t, :n] = np.where(leaf, 0, feats)
        conditions = np.asarray(tree["split_conditions"], np.float32)
        threshold[t, :n] = np.where(leaf, 0, conditions)
        value[t, :n] = np.where(leaf, conditions, 0)
        default_left[t, :n] = np.asarray(tree["default_left"], np.int64).astype(bool)
        is_leaf[t, :n] = leaf
        hessian = np.asarray(tree.get("sum_hessian") or np.ones(n), np.float32)
        if hessian.shape != (n,):
            raise ModelError(f"tree {t} is malformed", hint="the model file is corrupted")
        mean[t, :n] = _node_means(lc, rc, value[t, :n], hessian)
        max_depth = max(max_depth, _depth(lc, rc))
    if not np.all(np.isfinite(value)) or not np.all(np.isfinite(threshold)):
        raise ModelError(
            "model has non-finite split or leaf values", hint="the model file is corrupted"
        )
    return Forest(
        feature_names=names,
        base_margin=base_margin(learner),
        left=left,
        right=right,
        feature=feature,
        threshold=threshold,
        default_left=default_left,
        value=value,
        is_leaf=is_leaf,
        max_depth=max_depth,
        sha256=hashlib.sha256(raw).hexdigest(),
        mean=mean,
    )


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


# One branchless kernel serves every model: the trees are data (an array of nodes), not
# code. A data-dependent branch per split mispredicts about half the time; computing
# ``go_left`` arithmetically and indexing ``child[go_left]`` has no branch at all, and
# walking eight rows (or, for a single row, eight trees) side by side lets the CPU
# overlap their independent load chains. Measured on a 200-tree depth-6 model this is
# ~3x XGBoost's batch throughput, where generated nested ``if``s were slower than it.
#
# Margins are accumulated like XGBoost's CPU predictor does: a float32 running sum per
# row, starting from the float32 base margin, one tree after the other in tree order.
# Summing in double (as this kernel first did) is more precise but *different*: over
# ~400 trees it drifted up to ~7e-6 in margin from XGBoost, and the release check
# compares against XGBoost, not against exact arithmetic. The kernel is compiled with
# -fno-fast-math -ffp-contract=off, so every float add is rounded to float32 as written.
KERNEL_SOURCE = r"""
#include <math.h>
typedef struct { int feat; float thr; int child[2]; int dl; float value; } Node;
/* go left when x < thr; NaN (x != x) goes to the default side. Leaves loop to
   themselves, so exactly `depth` steps land every walk on its leaf. */
#define STEP(tree, i, x) { const Node* nd = (tree) + (i); float v = (x)[nd->feat]; \
  int gl = (v < nd->thr) | (nd->dl & (v != v)); (i) = nd->child[gl]; }
#define BLOCK 64

/* Margins in float32, tree by tree in tree order per row (XGBoost's order): rows are
   walked eight at a time, but each row's sum still sees the trees one after another. */
static void margin_rows(const Node* nodes, long T, long W, int depth, float base,
                        const float* X, long n, long stride, double* out) {
  float acc[BLOCK];
  for (long start = 0; start < n; start += BLOCK) {
    long end = start + BLOCK < n ? start + BLOCK : n;
    for (long r = start; r < end; ++r) acc[r - start] = base;
    for (long t = 0; t < T; ++t) {
      const Node* tree = nodes + t * W;
      long r = start;
      for (; r + 8 <= end; r += 8) {
        int a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0;
        const float *xa = X + r * stride, *xb = xa + stride, *xc = xb + stride, *xd = xc + stride;
        const float *xe = xd + stride, *xf = xe + stride, *xg = xf + stride, *xh = xg + stride;
        for (int k = 0; k < depth; ++k) {
          STEP(tree, a, xa) STEP(tree, b, xb) STEP(tree, c, xc) STEP(tree, d, xd)
          STEP(tree, e, xe) STEP(tree, f, xf) STEP(tree, g, xg) STEP(tree, h, xh)
        }
        float* s = acc + (r - start);
        s[0] += tree[a].value; s[1] += tree[b].value; s[2] += tree[c].value;
        s[3] += tree[d].value; s[4] += tree[e].value; s[5] += tree[f].value;
        s[6] += tree[g].value; s[7] += tree[h].value;
      }
      for (; r < end; ++r) {
        int a = 0;
        const float* xa = X + r * stride;
        for (int k = 0; k < depth; ++k) STEP(tree, a, xa)
        acc[r - start] += tree[a].value;
      }
    }
    for (long r = start; r < end; ++r) out[r] = (double)acc[r - start];
  }
}

/* One row: eight trees side by side instead of eight rows. The leaves are still added
   to the float32 sum in tree order, so the result is XGBoost's to the last bit. */
static double margin_one(const Node* nodes, long T, long W, int depth, float base,
                         const float* x) {
  float s = base;
  long t = 0;
  for (; t + 8 <= T; t += 8) {
    const Node* t0 = nodes + t * W;
    int a = 0, b = 0, c = 0, d = 0, e = 0, f = 0, g = 0, h = 0;
    for (int k = 0; k < depth; ++k) {
      STEP(t0, a, x) STEP(t0 + W, b, x) STEP(t0 + 2 * W, c, x) STEP(t0 + 3 * W, d, x)
      STEP(t0 + 4 * W, e, x) STEP(t0 + 5 * W, f, x) STEP(t0 + 6 * W, g, x) STEP(t0 + 7 * W, h, x)
    }
    s += t0[a].value; s += t0[W + b].value; s += t0[2 * W + c].value; s += t0[3 * W + d].value;
    s += t0[4 * W + e].value; s += t0[5 * W + f].value;
    s += t0[6 * W + g].value; s += t0[7 * W + h].value;
  }
  for (; t < T; ++t) {
    const Node* tree = nodes + t * W;
    int a = 0;
    for (int k = 0; k < depth; ++k) STEP(tree, a, x)
    s += tree[a].value;
  }
  return (double)s;
}

/* `base` is the float32 base margin passed as a double (exactly representable). */
void ss_margin(const Node* nodes, long T, long W, int depth, double base,
               const float* X, long n, long stride, double* out) {
  const float b = (float)base;
  if (n < 8) {
    for (long r = 0; r < n; ++r) out[r] = margin_one(nodes, T, W, depth, b, X + r * stride);
  } else {
    margin_rows(nodes, T, W, depth, b, X, n, stride, out);
  }
}

/* The sigmoid of the float32 margin is taken in double: XGBoost's own float32 sigmoid
   is within one float32 rounding (< 1.2e-7) of it. */
void ss_predict(const Node* nodes, long T, long W, int depth, double base,
                const float* X, long n, long stride, double* out) {
  ss_margin(nodes, T, W, depth, base, X, n, stride, out);
  for (long r = 0; r < n; ++r) out[r] = 1.0 / (1.0 + exp(-out[r]));
}
"""

NODE_DTYPE = np.dtype(
    [("feat", "<i4"), ("thr", "<f4"), ("child", "<i4", (2,)), ("dl", "<i4"), ("value", "<f4")]
)


def compiler() -> str | None:
    """The C compiler to use (``$CC`` or gcc/cc on PATH), or None."""
    for candidate in (os.environ.get("CC"), "gcc", "cc"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


# No fast-math and no FMA contraction: the float32 sums must round exactly as written.
_CFLAGS = ("-O2", "-fPIC", "-shared", "-fno-fast-math", "-ffp-contract=off")


def kernel_path(cache_dir: Path) -> Path:
    """The cached library for this kernel source and these flags."""
    digest = hashlib.sha256((KERNEL_SOURCE + " ".join(_CFLAGS)).encode()).hexdigest()[:16]
    return cache_dir / f"forest-kernel-{digest}.so"


def compile_kernel(cache_dir: Path, timeout_s: float = 120.0) -> Path:
    """Compile the kernel once into ``cache_dir`` (keyed by its source hash, reused).

    Written under a temporary name and renamed into place, so concurrent loaders never
    open a half-written library.
    """
    target = kernel_path(cache_dir)
    if target.exists():
        return target
    cc = compiler()
    if cc is None:
        raise ModelError(
            "no C compiler found",
            hint="install gcc or set CC; the NumPy evaluator is used meanwhile",
        )
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".build-") as tmp:
        src = Path(tmp) / "kernel.c"
        src.write_text(KERNEL_SOURCE)
        out = Path(tmp) / "kernel.so"
        cmd = [cc, *_CFLAGS, "-o", str(out), str(src), "-lm"]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ModelError(
                f"compiling the scoring kernel failed: {exc}", hint="check the C compiler"
            ) from None
        if done.returncode != 0:
            tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
            raise ModelError(
                f"compiling the scoring kernel failed: {tail[0]}", hint="check the C compiler"
            )
        os.replace(out, target)
    logger.info("compiled the scoring kernel to %s", target)
    return target


class CompiledEvaluator:
    """The C kernel over the forest's node array, called through ctypes with raw
    pointers: no copy of the input, one call per batch."""

    kind = "compiled"

    def __init__(self, forest: Forest, library: Path) -> None:
        try:
            lib = ctypes.CDLL(str(library))
            predict = lib.ss_predict
            margin = lib.ss_margin
        except (OSError, AttributeError) as exc:
            raise ModelError(
                f"scoring kernel {library} cannot be loaded: {exc}", hint="delete it to rebuild"
            ) from None
        for fn in (predict, margin):
            fn.restype = None
            fn.argtypes = (
                ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_int, ctypes.c_double,
                ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
            )  # fmt: skip
        nodes = np.zeros(forest.left.shape, NODE_DTYPE)
        nodes["feat"] = forest.feature
        nodes["thr"] = forest.threshold
        nodes["child"][..., 1] = forest.left
        nodes["child"][..., 0] = forest.right
        nodes["dl"] = forest.default_left
        nodes["value"] = forest.value
        self.forest = forest
        self.library = library
        self._lib = lib  # keeps the library mapped while the functions are in use
        self._nodes = nodes
        self._head = (
            nodes.ctypes.data,
            int(forest.left.shape[0]),
            int(forest.left.shape[1]),
            forest.max_depth,
            forest.base_margin,
        )
        self._predict = predict
        self._margin = margin
        self._stride = forest.num_features

    def _call(self, fn: Any, X: NDArray[np.float32]) -> NDArray[np.float64]:
        if X.dtype != np.float32 or not X.flags.c_contiguous:
            X = np.ascontiguousarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self._stride:
            raise ValueError(f"expected shape (n, {self._stride}), got {X.shape}")
        out = np.empty(X.shape[0], np.float64)
        fn(*self._head, X.ctypes.data, X.shape[0], self._stride, out.ctypes.data)
        return out

    def predict(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        return self._call(self._predict, X)

    def margin(self, X: NDArray[np.float32]) -> NDArray[np.float64]:
        return self._call(self._margin, X)
