"""The challenger beside the champion on the hot path: shadow scoring and the user split.

The micro-batch's feature matrix is scored twice, once per model (two batch calls, never
one per purchase). In ``shadow`` mode the challenger's probability and band are recorded
on each decision and nothing else changes: the champion and the rules decide exactly as
without it. In ``split`` mode the challenger decides for the users whose stable hash
falls in its ``share`` (:func:`in_challenger_share`): the same user is always on the
same side, on every worker and whatever the partitioning, because the hash depends on
the user id and the configured salt only. The rules apply on top of whichever model
served, as they do on top of the champion. See ``docs/model-ops.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from shopsentry.detection.model_reload import ScoringModel
from shopsentry.events.schema import Purchase

ChallengerMode = Literal["off", "shadow", "split"]
_HASH_SPACE = float(1 << 64)


@dataclass(frozen=True, slots=True)
class ChallengerConfig:
    mode: ChallengerMode = "off"
    share: float = 0.0
    salt: str = "shopsentry-challenger"


def user_position(user_id: str, salt: str) -> float:
    """Where a user falls in [0, 1): a keyed BLAKE2b of the id, stable across processes."""
    digest = hashlib.blake2b(user_id.encode(), digest_size=8, key=salt.encode()[:64]).digest()
    return int.from_bytes(digest, "big") / _HASH_SPACE


def in_challenger_share(user_id: str, share: float, salt: str) -> bool:
    """Whether the challenger decides for this user in ``split`` mode."""
    return user_position(user_id, salt) < share


@dataclass(frozen=True, slots=True)
class ChallengerScores:
    """The challenger's view of one micro-batch, aligned with the champion's rows."""

    model: ScoringModel
    probs: np.ndarray  # float64, one per decided purchase
    serves: np.ndarray | None  # bool per purchase: the challenger decides (split), or None

    @property
    def version(self) -> str:
        return self.model.version

    def acting(self, champion_probs: np.ndarray) -> np.ndarray:
        """The probability that decides each purchase (the serving model's)."""
        if self.serves is None:
            return champion_probs
        return np.where(self.serves, self.probs, champion_probs)


def score_challenger(
    cfg: ChallengerConfig,
    model: ScoringModel | None,
    X: np.ndarray,
    decided: Sequence[tuple[Any, Purchase]],
) -> ChallengerScores | None:
    """Score the batch's matrix with the challenger (None when off or there is none);
    ``decided`` holds the batch's (record, purchase) pairs, one per row of ``X``."""
    if model is None or cfg.mode == "off":
        return None
    probs = np.clip(np.asarray(model.predict(X), dtype=np.float64).reshape(-1), 0.0, 1.0)
    serves = None
    if cfg.mode == "split":
        share, salt = cfg.share, cfg.salt
        serves = np.fromiter(
            (in_challenger_share(p.user_id, share, salt) for _, p in decided),
            dtype=bool,
            count=len(decided),
        )
    return ChallengerScores(model, probs, serves)
