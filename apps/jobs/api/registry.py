"""The actors the API may submit (`POST /api/jobs/`), each with the serializer of its arguments.

An actor is private until an app exposes it: the API must not become a way to run whatever code a
worker can, with whatever arguments. Apps expose theirs in their AppConfig.ready():

    registry.expose(actors.send_email, SendEmailInput)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import dramatiq

if TYPE_CHECKING:
    from apps.jobs.api.serializers import ActorInput

_PUBLIC: dict[str, type[ActorInput]] = {}


def expose(actor: dramatiq.Actor, arguments: type[ActorInput]) -> None:
    """Let API users submit `actor`, with keyword arguments validated by `arguments`."""
    _PUBLIC[actor.actor_name] = arguments


def public_actor_names() -> list[str]:
    return sorted(_PUBLIC)


def arguments_for(actor_name: str) -> type[ActorInput] | None:
    """The serializer of a public actor's arguments, or None for an actor the API does not offer."""
    return _PUBLIC.get(actor_name)
