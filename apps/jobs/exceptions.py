"""Errors raised by the jobs app; the edges (admin, commands, actors) translate them."""

from __future__ import annotations

from typing import Any


class JobsError(Exception):
    """Something went wrong in the jobs system."""

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.extra = extra
        super().__init__(self.message)


class JobNotFound(JobsError):
    """No job has this id."""


class UnknownActor(JobsError):
    """No actor is registered under this name."""


class UnknownQueue(JobsError):
    """No queue is declared under this name."""


class InvalidJobArguments(JobsError):
    """The job's arguments cannot be sent as JSON."""


class MessageTooLarge(InvalidJobArguments):
    """The job's message is larger than RabbitMQ accepts (settings.JOBS_MAX_MESSAGE_BYTES); pass ids."""


class InvalidJobOptions(JobsError):
    """An option of the job is unknown or out of range."""


class InvalidTransition(JobsError):
    """The job cannot move to this status from the one it is in."""


class JobQuarantined(JobsError):
    """The job's worker died on its last allowed attempt; it was failed instead of run again."""


class BrokerUnavailable(JobsError):
    """RabbitMQ cannot be reached."""


class PermanentFailure(JobsError):
    """The job failed in a way that retrying cannot fix."""


class ResultNotStorable(PermanentFailure):
    """The job's result cannot be stored in the ledger (the database refused it)."""


class TransientFailure(JobsError):
    """The job failed for a reason that may pass; it is retried with backoff."""


class SoftTimeLimitExceeded(Exception):
    """The job ran past its soft time limit; clean up and stop before the hard limit."""
