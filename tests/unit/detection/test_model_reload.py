"""The model holder: hot reload of a new champion, a failed load kept out, a probe error
survived, and the initial wait for a champion; the challenger's holder is optional (there
may be none) and follows its alias being set, moved and cleared."""

from __future__ import annotations

import threading

from shopsentry.detection.model_reload import ModelHolder
from shopsentry.errors import ModelError, NoChampion

from .fakes import FakeScorer


def test_holder_loads_a_new_champion_and_swaps_only_when_asked() -> None:
    champion = {"v": "1"}
    loads: list[str] = []

    def load() -> FakeScorer:
        loads.append(champion["v"])
        return FakeScorer(version=champion["v"])

    holder = ModelHolder(load, lambda: champion["v"], interval_s=60)
    assert holder.load_initial(lambda: False).version == "1"  # type: ignore[union-attr]
    holder.check_once()
    assert holder.swap_if_ready() is None and loads == ["1"]  # same version: nothing loaded
    champion["v"] = "2"
    holder.check_once()
    assert holder.current.version == "1"  # type: ignore[union-attr]  # not swapped mid-batch
    assert holder.swap_if_ready().version == "2"  # type: ignore[union-attr]
    assert holder.current.version == "2"  # type: ignore[union-attr]


def test_a_failed_load_keeps_the_old_model_and_is_not_retried() -> None:
    champion = {"v": "1"}
    attempts: list[str] = []

    def load() -> FakeScorer:
        attempts.append(champion["v"])
        if champion["v"] == "bad":
            raise ModelError("corrupted model file")
        return FakeScorer(version=champion["v"])

    outcomes: list[str] = []
    holder = ModelHolder(load, lambda: champion["v"], interval_s=60, on_outcome=outcomes.append)
    holder.load_initial(lambda: False)
    champion["v"] = "bad"
    holder.check_once()
    holder.check_once()
    assert holder.swap_if_ready() is None and holder.current.version == "1"  # type: ignore[union-attr]
    assert attempts == ["1", "bad"] and outcomes == ["loaded", "failed"]


def test_a_probe_error_is_survived() -> None:
    def probe() -> str:
        raise OSError("registry down")

    holder = ModelHolder(lambda: FakeScorer(), probe, interval_s=60)
    holder.load_initial(lambda: False)
    holder.check_once()
    assert holder.current.version == "1"  # type: ignore[union-attr]


def test_initial_load_waits_for_a_champion_and_honours_stop() -> None:
    calls = {"n": 0}

    def load() -> FakeScorer:
        calls["n"] += 1
        if calls["n"] < 3:
            raise NoChampion("m")
        return FakeScorer(version="9")

    holder = ModelHolder(load, lambda: None, interval_s=0.01)
    assert holder.load_initial(lambda: False).version == "9"  # type: ignore[union-attr]

    def never() -> FakeScorer:
        raise NoChampion("m")

    stop = threading.Event()
    holder2 = ModelHolder(never, lambda: None, interval_s=0.01)
    threading.Timer(0.05, stop.set).start()
    assert holder2.load_initial(stop.is_set) is None


def optional_holder(alias: dict[str, str | None], loads: list[str]) -> ModelHolder:
    def load() -> FakeScorer:
        version = alias["v"]
        assert version is not None
        if version == "bad":
            raise ModelError("corrupted model file")
        loads.append(version)
        return FakeScorer(version=version)

    return ModelHolder(load, lambda: alias["v"], interval_s=60, optional=True, name="challenger")


def test_an_optional_holder_follows_its_alias_set_moved_and_cleared() -> None:
    alias: dict[str, str | None] = {"v": None}
    loads: list[str] = []
    holder = optional_holder(alias, loads)
    holder.check_once()
    assert holder.swap_if_ready() is None and holder.current is None  # no challenger yet
    alias["v"] = "2"
    holder.check_once()
    assert holder.current is None  # loaded, not swapped mid-batch
    assert holder.swap_if_ready().version == "2"  # type: ignore[union-attr]
    alias["v"] = "3"
    holder.check_once()
    assert holder.swap_if_ready().version == "3"  # type: ignore[union-attr]
    alias["v"] = None  # cleared, or promoted to champion
    holder.check_once()
    assert holder.current.version == "3"  # type: ignore[union-attr]  # until the batch ends
    assert holder.swap_if_ready() is None and holder.current is None
    assert loads == ["2", "3"]


def test_a_cleared_alias_that_comes_back_before_the_swap_keeps_its_model() -> None:
    alias: dict[str, str | None] = {"v": "2"}
    loads: list[str] = []
    holder = optional_holder(alias, loads)
    holder.check_once()
    holder.swap_if_ready()
    alias["v"] = None
    holder.check_once()
    alias["v"] = "2"
    holder.check_once()
    holder.swap_if_ready()
    assert holder.current is not None and holder.current.version == "2" and loads == ["2"]


def test_a_challenger_that_fails_to_load_is_not_scored_nor_retried() -> None:
    alias: dict[str, str | None] = {"v": "bad"}
    loads: list[str] = []
    holder = optional_holder(alias, loads)
    holder.check_once()
    holder.check_once()
    assert holder.swap_if_ready() is None and holder.current is None and loads == []


def test_the_champion_holder_ignores_a_missing_alias() -> None:
    alias: dict[str, str | None] = {"v": "1"}
    holder = ModelHolder(lambda: FakeScorer(version="1"), lambda: alias["v"], interval_s=60)
    holder.load_initial(lambda: False)
    alias["v"] = None
    holder.check_once()
    holder.swap_if_ready()
    assert holder.current is not None and holder.current.version == "1"
