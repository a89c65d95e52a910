"""Message encoding: Dramatiq's JSON, with undecodable messages made visible in the ledger."""

from __future__ import annotations

import logging
from typing import Any

from dramatiq.encoder import JSONEncoder
from dramatiq.errors import DecodeError

from apps.jobs import db

logger = logging.getLogger(__name__)

#: What every Dramatiq message carries.
MESSAGE_FIELDS = frozenset({"queue_name", "actor_name", "args", "kwargs", "options", "message_id"})
#: Bytes of an undecodable body kept on its ledger row.
EXCERPT_BYTES = 500


class LedgerJSONEncoder(JSONEncoder):
    """JSONEncoder that records a body it cannot decode as a failed job before Dramatiq dead-letters it."""

    def decode(self, data: bytes) -> Any:
        try:
            fields = super().decode(data)
            missing = MESSAGE_FIELDS - set(fields) if isinstance(fields, dict) else MESSAGE_FIELDS
            if missing:
                raise ValueError(f"not a job message: missing {', '.join(sorted(missing))}")
        except Exception as exc:
            _record_undecodable(data, exc)
            raise DecodeError(str(exc), data, exc) from exc
        return fields


def _record_undecodable(data: bytes, error: Exception) -> None:
    from apps.jobs import services  # models are not importable when the encoder is built

    try:
        # Decoding runs on a consumer thread, which no request cycle tidies: reconnect after a restart.
        db.with_reconnect(
            lambda: services.job_record_dead_letter(
                job_id=None,
                actor_name="(undecodable message)",
                queue_name="(unknown)",
                reason=f"Undecodable message body ({type(error).__name__}: {error}); dead-lettered.",
                payload=data[:EXCERPT_BYTES].decode("utf-8", errors="replace"),
            )
        )
    except Exception:
        logger.exception("Could not record an undecodable message.")
