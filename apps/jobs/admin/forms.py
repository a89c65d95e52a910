"""Forms of the console's job actions: edit-and-retry, and deleting old finished jobs."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.jobs.api import registry
from apps.jobs.api.parsers import refuse_constant
from apps.jobs.api.serializers import JobSubmit
from apps.jobs.models import Job


def _json_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label,
        help_text=help_text,
        widget=forms.Textarea(
            attrs={"rows": 8, "cols": 80, "class": "vLargeTextField", "spellcheck": "false"}
        ),
    )


class EditAndRetryForm(forms.Form):
    """New arguments for a failed or cancelled job, validated as the REST API validates a submission."""

    args = _json_field("args", "A JSON list of positional arguments.")
    kwargs = _json_field("kwargs", "A JSON object of keyword arguments.")

    def __init__(self, *args: Any, job: Job, **kwargs: Any) -> None:
        self.job = job
        kwargs.setdefault(
            "initial", {"args": json.dumps(job.args, indent=2), "kwargs": json.dumps(job.kwargs, indent=2)}
        )
        super().__init__(*args, **kwargs)

    def _json(self, name: str, kind: type) -> Any:
        try:
            value = json.loads(self.cleaned_data[name], parse_constant=refuse_constant)
        except ValueError as exc:
            raise ValidationError(f"Not valid JSON: {exc}") from None
        if not isinstance(value, kind):
            raise ValidationError(f"Must be a JSON {'list' if kind is list else 'object'}.")
        return value

    def clean_args(self) -> list[Any]:
        return self._json("args", list)

    def clean_kwargs(self) -> dict[str, Any]:
        return self._json("kwargs", dict)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self.errors or registry.arguments_for(self.job.actor_name) is None:
            return cleaned  # actors the API does not offer are checked by job_submit's own validation
        submission = JobSubmit(
            data={"actor": self.job.actor_name, "args": cleaned["args"], "kwargs": cleaned["kwargs"]}
        )
        if not submission.is_valid():
            raise ValidationError(_flatten(submission.errors))
        cleaned["args"], cleaned["kwargs"] = [], submission.validated_data["kwargs"]
        return cleaned


class DeleteFinishedForm(forms.Form):
    before = forms.DateField(
        label="Finished before",
        help_text="Deletes succeeded, failed, cancelled and skipped jobs that finished before this day "
        "(in the server's time zone). Active jobs are never deleted.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )


def _flatten(errors: Any, path: str = "") -> list[str]:
    """DRF's nested errors as "kwargs.sleep_ms: message" lines."""
    if isinstance(errors, dict):
        return [
            line
            for key, value in errors.items()
            for line in _flatten(value, f"{path}.{key}" if path else key)
        ]
    if isinstance(errors, list):
        return [line for value in errors for line in _flatten(value, path)]
    return [f"{path}: {errors}" if path else str(errors)]
