"""Message decoding: a body no worker can decode is a visible failed job, not a silent dead letter."""

from __future__ import annotations

import dramatiq
import pytest

from apps.jobs.encoding import LedgerJSONEncoder
from apps.jobs.models import Job


@pytest.mark.django_db
def test_decode__an_undecodable_message_becomes_a_visible_failed_job() -> None:
    with pytest.raises(dramatiq.errors.DecodeError):
        LedgerJSONEncoder().decode(b'{"not": "a message"}')
    job = Job.objects.get(actor_name="(undecodable message)")
    assert job.status == Job.Status.FAILED
    assert "missing" in job.last_error
    assert job.args == ['{"not": "a message"}']
