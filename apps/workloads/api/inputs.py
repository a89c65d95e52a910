"""The arguments API users may give the example actors: types, bounds, required and unknown fields.

Only what is safe to let any API user choose: the probe's crash and database-hold modes, and the
email's sender address, stay out.
"""

from __future__ import annotations

from rest_framework import serializers

from apps.jobs.api.serializers import ActorInput
from apps.workloads.services.batch import BATCH_OPERATIONS

#: Most recipients of one email job.
MAX_RECIPIENTS = 50
#: Most items of one batch job submitted through the API.
MAX_BATCH_ITEMS = 10_000


class ProbeInput(ActorInput):
    sleep_ms = serializers.IntegerField(
        required=False, min_value=0, max_value=10 * 60_000, help_text="Sleep this long, reporting progress."
    )
    fail_attempts = serializers.IntegerField(
        required=False, min_value=0, max_value=10, help_text="Fail the first N attempts (they are retried)."
    )
    permanent = serializers.BooleanField(required=False, help_text="Fail for good, without retries.")


class SendEmailInput(ActorInput):
    to = serializers.ListField(
        child=serializers.EmailField(), min_length=1, max_length=MAX_RECIPIENTS, help_text="Recipients."
    )
    subject = serializers.CharField(max_length=998)
    body = serializers.CharField(max_length=100_000, trim_whitespace=False)
    html_body = serializers.CharField(required=False, max_length=200_000, trim_whitespace=False)


class ProcessBatchInput(ActorInput):
    items = serializers.ListField(
        child=serializers.JSONField(), min_length=1, max_length=MAX_BATCH_ITEMS, help_text="The items."
    )
    operation = serializers.ChoiceField(
        choices=sorted(BATCH_OPERATIONS), required=False, help_text="What to do with each item."
    )
