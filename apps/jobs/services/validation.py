"""What job_submit accepts: the actor, arguments that survive JSON and the database, bounded options."""

from __future__ import annotations

import json
import reprlib
from datetime import timedelta
from typing import Any

import dramatiq
from django.conf import settings
from dramatiq.errors import ActorNotFound

from apps.jobs.exceptions import (
    InvalidJobArguments,
    InvalidJobOptions,
    MessageTooLarge,
    UnknownActor,
)
from apps.jobs.models import Job

#: Dramatiq options a submitter may set per job (all JSON values; code-valued ones stay on the actor).
SUBMIT_OPTIONS = frozenset(
    {
        "max_retries",
        "min_backoff",
        "max_backoff",
        "time_limit",
        "soft_time_limit",
        "max_age",
        "notify_shutdown",
        "on_success",
        "on_failure",
    }
)
#: The most retries one job may ask for (options={"max_retries": ...}): each retry is a ledger row and
#: a broker round-trip, and past this many a job is broken, not unlucky.
MAX_RETRIES_PER_JOB = 100


def message_check_size(message: dramatiq.Message) -> None:
    """Raise MessageTooLarge when `message` encodes to more than settings.JOBS_MAX_MESSAGE_BYTES.

    RabbitMQ refuses a body over its max_message_size; such a job would stay pending while every
    relay publishes it again. The error names the limit, the size, and the biggest part of the
    message (args, kwargs or options) in `extra["field"]`.
    """
    limit = settings.JOBS_MAX_MESSAGE_BYTES
    size = len(message.encode())
    if size <= limit:
        return
    parts = {"args": message.args, "kwargs": message.kwargs, "options": message.options}
    field = max(parts, key=lambda name: len(json.dumps(parts[name], default=str)))
    raise MessageTooLarge(
        f"The message of {message.actor_name} is {size} bytes, more than the {limit} bytes "
        f"JOBS_MAX_MESSAGE_BYTES allows; most of it is its {field}. Pass ids, not data.",
        actor=message.actor_name,
        field=field,
        size=size,
        limit=limit,
    )


def actor_get(broker: dramatiq.Broker, actor: str | dramatiq.Actor) -> dramatiq.Actor:
    if isinstance(actor, dramatiq.Actor):
        return actor
    try:
        return broker.get_actor(actor)
    except ActorNotFound:
        raise UnknownActor(f"No actor is registered under the name {actor!r}.", actor=actor) from None


def json_arguments(
    actor_name: str, args: list[Any] | tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """Arguments as they will arrive in the worker (tuples become lists), or InvalidJobArguments."""
    if not isinstance(args, list | tuple):
        raise InvalidJobArguments(
            f"args of {actor_name} must be a list, not {type(args).__name__}.", actor=actor_name, field="args"
        )
    if not isinstance(kwargs, dict):
        raise InvalidJobArguments(
            f"kwargs of {actor_name} must be an object, not {type(kwargs).__name__}.",
            actor=actor_name,
            field="kwargs",
        )
    try:
        encoded = json.dumps([list(args), kwargs], allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJobArguments(
            f"The arguments of {actor_name} cannot be sent as JSON: {exc}. "
            "Pass ids, strings, numbers, lists and objects.",
            actor=actor_name,
        ) from exc
    decoded_args, decoded_kwargs = json.loads(encoded)
    # JSON writes NUL as \u0000, which PostgreSQL's jsonb refuses; the text test is cheap, the walk exact.
    if "\\u0000" in encoded:
        for field, value in (("args", decoded_args), ("kwargs", decoded_kwargs)):
            where = _nul_path(value, field)
            if where is not None:
                raise InvalidJobArguments(
                    f"{where} of {actor_name} contains a NUL character (\\x00), which PostgreSQL "
                    "cannot store; remove it, or send binary data base64-encoded.",
                    actor=actor_name,
                    field=field,
                )
    return decoded_args, decoded_kwargs


def _nul_path(value: Any, path: str) -> str | None:
    """Where a NUL character is in the JSON value `value` (keys included), or None."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return where
        elif isinstance(item, list):
            stack.extend((element, f"{where}[{index}]") for index, element in enumerate(item))
        elif isinstance(item, dict):
            for key, element in item.items():
                if "\x00" in key:
                    return f"{where} key {key!r}"
                stack.append((element, f"{where}[{key!r}]"))
    return None


def valid_options(actor: dramatiq.Actor, options: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise InvalidJobOptions(
            f"options must be an object of option names to values, not {type(options).__name__}.",
            field="options",
        )
    unknown = sorted(str(name) for name in set(options) - SUBMIT_OPTIONS)
    if unknown:
        raise InvalidJobOptions(
            f"Unknown job option(s): {', '.join(unknown)}; allowed: {', '.join(sorted(SUBMIT_OPTIONS))}.",
            options=unknown,
            field="options",
        )
    for name, value in options.items():
        if value is None:
            raise InvalidJobOptions(
                f"Option {name} is None; leave it out to use the actor's default.", field=name
            )
    ranges = {  # name: (lowest, highest, where the highest comes from)
        "max_retries": (0, MAX_RETRIES_PER_JOB, "MAX_RETRIES_PER_JOB"),
        "min_backoff": (0, settings.RETRY_MAX_BACKOFF_MS, "RETRY_MAX_BACKOFF_MS"),
        "max_backoff": (0, settings.RETRY_MAX_BACKOFF_MS, "RETRY_MAX_BACKOFF_MS"),
        "time_limit": (1, settings.JOBS_MAX_TIME_LIMIT_MS, "JOBS_MAX_TIME_LIMIT_MS"),
        "soft_time_limit": (1, settings.JOBS_MAX_TIME_LIMIT_MS, "JOBS_MAX_TIME_LIMIT_MS"),
        "max_age": (0, settings.JOBS_MAX_DELAY_MS, "JOBS_MAX_DELAY_MS"),
    }
    for name, (lowest, highest, source) in ranges.items():
        if name in options and not _whole_number_in(options[name], lowest, highest):
            raise InvalidJobOptions(
                f"Option {name} must be a whole number from {lowest} to {highest} ({source}), "
                f"not {reprlib.repr(options[name])}.",
                field=name,
            )
    if "notify_shutdown" in options and not isinstance(options["notify_shutdown"], bool):
        raise InvalidJobOptions(
            f"Option notify_shutdown must be true or false, not {reprlib.repr(options['notify_shutdown'])}.",
            field="notify_shutdown",
        )
    for name in ("on_success", "on_failure"):
        if name in options and not _actor_exists(actor.broker, options[name]):
            raise InvalidJobOptions(
                f"Option {name} must name a registered actor, not {reprlib.repr(options[name])}.",
                field=name,
            )
    return options


def _whole_number_in(value: Any, lowest: int, highest: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= highest


def _actor_exists(broker: dramatiq.Broker, name: Any) -> bool:
    if not isinstance(name, str):
        return False
    try:
        broker.get_actor(name)
    except ActorNotFound:
        return False
    return True


def valid_priority(priority: Any) -> int:
    top = settings.BROKER_MAX_PRIORITY
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= top:
        raise InvalidJobOptions(
            f"priority must be a whole number from 0 to {top}, not {reprlib.repr(priority)}.",
            field="priority",
        )
    return priority


def valid_delay_ms(delay: Any) -> int:
    if delay is None:
        return 0
    if isinstance(delay, timedelta):
        delay = delay // timedelta(milliseconds=1)  # exact for any timedelta, unlike total_seconds()
    if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
        raise InvalidJobOptions(
            f"delay must be a whole number of milliseconds >= 0, not {reprlib.repr(delay)}.", field="delay"
        )
    limit = settings.JOBS_MAX_DELAY_MS
    if delay > limit:
        raise InvalidJobOptions(
            f"delay must be at most {limit} ms (JOBS_MAX_DELAY_MS), not {reprlib.repr(delay)}; "
            "submit the job nearer the time it should run.",
            field="delay",
        )
    return delay


def valid_idempotency_key(key: Any) -> str | None:
    """The key, None for no key (None or ""), or InvalidJobOptions for what the column cannot hold."""
    if key is None or key == "":
        return None
    if not isinstance(key, str):
        raise InvalidJobOptions(
            f"idempotency_key must be a string, not {type(key).__name__}.", field="idempotency_key"
        )
    longest = Job._meta.get_field("idempotency_key").max_length
    if longest is not None and len(key) > longest:
        raise InvalidJobOptions(
            f"idempotency_key must be at most {longest} characters, not {len(key)}.", field="idempotency_key"
        )
    if "\x00" in key:
        raise InvalidJobOptions(
            "idempotency_key contains a NUL character (\\x00), which PostgreSQL cannot store.",
            field="idempotency_key",
        )
    return key
