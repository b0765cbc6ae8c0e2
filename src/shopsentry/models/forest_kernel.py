"""The compiled evaluator of a :class:`~shopsentry.models.forest.Forest`: a small
branchless C kernel, compiled once by the system C compiler, cached, and called through
``ctypes`` with raw pointers. It follows the arithmetic described in
:mod:`shopsentry.models.forest`, bit for bit with XGBoost's margins."""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shopsentry.errors import ModelError
from shopsentry.models.forest import Forest

logger = logging.getLogger(__name__)


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
