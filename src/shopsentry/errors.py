"""One exception tree for the whole package.

Every error says whether retrying can help (``retryable``), so callers (the CLI, the
stream workers, Airflow tasks) can decide between backing off and giving up without
parsing messages.
"""

from __future__ import annotations


class ShopsentryError(Exception):
    """Base of every error raised on purpose by shopsentry."""

    retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message a person sees at the CLI edge: what is wrong and what to do."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class TerminalError(ShopsentryError):
    """Retrying the same call cannot help (bad config, bad input, missing file)."""

    retryable = False


class TransientError(ShopsentryError):
    """Retrying later may help (broker unreachable, not enough in-sync replicas)."""

    retryable = True


class ConfigError(TerminalError):
    """A setting has a value that cannot work."""


class InvalidEvent(TerminalError):
    """An event failed validation; ``field`` names the first offending field."""

    def __init__(
        self, reason: str, *, field: str | None = None, errors: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.reason = reason
        self.field = field
        self.errors = errors or ([{"field": field or "", "reason": reason}])


class BusError(ShopsentryError):
    """The event log refused or failed an operation."""


class BrokerUnavailable(TransientError, BusError):
    """No broker answered within the timeout."""


class NotEnoughReplicas(TransientError, BusError):
    """Fewer in-sync replicas than min.insync.replicas: nothing was acknowledged."""


class AuthenticationFailed(TerminalError, BusError):
    """The broker refused our credentials."""


class UnknownTopic(TerminalError, BusError):
    """The topic does not exist."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            f"unknown topic {topic!r}", hint="create it with `shopsentry topics create`"
        )
        self.topic = topic


class ProduceError(BusError):
    """Some records were not acknowledged; ``failed`` counts them."""

    def __init__(
        self, message: str, *, failed: int, retryable: bool = True, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.failed = failed
        self.retryable = retryable


class CommitFailed(TransientError, BusError):
    """An offset commit was refused, usually because the partition moved to another member."""


class StateError(ShopsentryError):
    """A consumer's state (feature state, read model, warehouse offsets, ledger) failed."""


class StateUnavailable(TransientError, StateError):
    """The state could not be read or written now (a lock, a full map, a store that does
    not answer): every state backend raises this one, whatever its engine."""


class StateCorrupted(TerminalError, StateError):
    """Stored state cannot be read back (retrying cannot help)."""


class StateFenced(TransientError, StateError):
    """A state save was refused: another worker has applied records of a partition this
    one still thought it owned (the partition moved while a batch ran)."""


class ModelError(TerminalError):
    """A model file is missing, corrupted or incompatible."""


class NoChampion(TerminalError):
    """No model version carries the champion alias yet."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"no champion model registered under {name!r}",
            hint="train one with `shopsentry train`",
        )


class NoModelRegistered(TerminalError):
    """The registry holds no version of the model yet (a fresh machine: `shopsentry train`
    never ran, or ran against another registry); ``registry`` says where we looked."""

    def __init__(self, name: str, registry: str) -> None:
        super().__init__(
            f"no model registered yet under {name!r} in {registry}",
            hint="run `shopsentry train` first",
        )
        self.name = name
        self.registry = registry


class TrainingDataError(TerminalError):
    """The labelled data set cannot be built or is unusable for training (too small,
    no known fraud, missing columns)."""


class NotEnoughReplicasProduceError(ProduceError, NotEnoughReplicas):
    """Records were refused because a partition's in-sync replicas fell below
    min.insync.replicas: catchable both as ProduceError and as NotEnoughReplicas."""


def is_retryable(error: BaseException) -> bool:
    """Whether retrying can help: the one question every retrying caller asks (the stream
    runtime, DAG tasks, the notifier). Only a ShopsentryError can say yes."""
    return isinstance(error, ShopsentryError) and error.retryable
