"""Hot reload of the champion (and the challenger) model, off the hot path.

A daemon thread polls the registry's cheap "which version is champion?" probe every
``model_poll_interval_s``. When it changes, the same thread loads the new scorer (which
may compile trees: seconds) while the worker keeps scoring with the old one; the worker
swaps models between micro-batches, so a batch is always scored by exactly one version
and no event is dropped or delayed by the load. A load that fails leaves the old model
serving; that version is not retried until the champion moves again.

The challenger has a holder of its own, made ``optional``: there may be none, and when
its alias is cleared (or promoted away) the probe answers None and the holder drops it
between batches, as it adopts a new one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from shopsentry.errors import NoChampion

logger = logging.getLogger(__name__)


class ScoringModel(Protocol):
    """What the detector needs of a model (implemented by ``shopsentry.models``)."""

    version: str

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Fraud probability per row of a float32 feature matrix."""
        ...

    def explain(self, rows: np.ndarray, top_k: int) -> Sequence[Sequence[Any]]:
        """The ``top_k`` feature contributions per row (FeatureContribution-like)."""
        ...


class ModelHolder:
    """The scorer in use plus a background poller that prepares the next one."""

    def __init__(
        self,
        load: Callable[[], ScoringModel],
        probe: Callable[[], str | None],
        *,
        interval_s: float,
        on_outcome: Callable[[str], None] | None = None,
        optional: bool = False,
        name: str = "champion",
    ) -> None:
        self._load = load
        self.optional = optional
        self.name = name
        self._probe = probe
        self.interval_s = interval_s
        self._on_outcome = on_outcome or (lambda _outcome: None)
        self._current: ScoringModel | None = None
        self._pending: ScoringModel | None = None
        self._drop = False  # optional holders: the alias is gone, drop the current model
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> ScoringModel | None:
        return self._current

    def load_initial(self, should_stop: Callable[[], bool]) -> ScoringModel | None:
        """Load the champion, waiting (polling) while none is registered yet.

        Returns None only if ``should_stop`` turned true while waiting.
        """
        warned = False
        while not should_stop():
            try:
                scorer = self._load()
            except NoChampion as exc:
                if not warned:
                    logger.warning(
                        "%s; waiting for one (polling every %.1fs)", exc.one_line(), self.interval_s
                    )
                    warned = True
                self._stop.wait(min(self.interval_s, 1.0))
                continue
            self._current = scorer
            self._on_outcome("loaded")
            logger.info("scoring with model version %s", scorer.version)
            return scorer
        return None

    def start(self) -> None:
        """Start polling for a new model in a daemon thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"model-reload-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def swap_if_ready(self) -> ScoringModel | None:
        """Between batches: take the newly loaded scorer if there is one (else None).

        An optional holder whose alias went away drops its model here (``current``
        becomes None; the return value is None then too)."""
        if self._pending is None and not self._drop:
            return None
        with self._lock:
            scorer, self._pending = self._pending, None
            drop, self._drop = self._drop, False
        previous = self._current.version if self._current is not None else None
        if scorer is None:
            if drop and self._current is not None:
                self._current = None
                logger.info("%s %s dropped: the alias is gone", self.name, previous)
            return None
        self._current = scorer
        logger.info("switched %s model %s -> %s", self.name, previous, scorer.version)
        return scorer

    def check_once(self) -> None:
        """One poll: load the aliased model if it is a version we neither use nor failed on."""
        try:
            version = self._probe()
        except Exception:  # the registry being down must not kill the worker
            logger.warning("%s probe failed; keeping the current model", self.name, exc_info=True)
            return
        current = self._current.version if self._current is not None else None
        pending = self._pending.version if self._pending is not None else None
        if version is None:
            if self.optional and (current is not None or pending is not None):
                with self._lock:
                    self._pending, self._drop = None, True
            return
        if version in (current, pending) or version in self._failed:
            if version == current and self._drop:  # the alias came back before the swap
                with self._lock:
                    self._drop = False
            return
        started = time.perf_counter()
        try:
            scorer = self._load()
        except Exception:  # any failure: log it, keep serving with the old model
            logger.exception(
                "loading %s %s failed; model %s keeps serving", self.name, version, current
            )
            self._failed.add(version)
            self._on_outcome("failed")
            return
        logger.info(
            "%s %s loaded in %.2fs (off the hot path)",
            self.name,
            scorer.version,
            time.perf_counter() - started,
        )
        with self._lock:
            self._pending, self._drop = scorer, False
        self._on_outcome("loaded")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.check_once()
