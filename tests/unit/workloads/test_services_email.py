"""email_send against a real local SMTP server: what is delivered, what is transient, what is permanent."""

from __future__ import annotations

from typing import Any

import pytest

from apps.jobs.exceptions import PermanentFailure, TransientFailure
from apps.workloads import services
from tests.unit.workloads.conftest import SmtpServer


@pytest.mark.django_db
def test_email_send__smtp_delivers_with_the_message_id(smtp_server: SmtpServer, settings: Any) -> None:
    sent = services.email_send(to=["ada@example.com"], subject="Hi", body="Body", message_id="abc-123")

    assert sent == 1
    assert len(smtp_server.messages) == 1
    assert f"Message-ID: <abc-123@{settings.EMAIL_MESSAGE_ID_DOMAIN}>".encode() in smtp_server.messages[0]


@pytest.mark.parametrize(
    ("command", "answer", "error"),
    [
        pytest.param("RCPT", "450 4.2.0 Greylisted, try again later", TransientFailure, id="rcpt-450"),
        pytest.param("RCPT", "452 4.2.2 Mailbox full", TransientFailure, id="rcpt-452"),
        pytest.param("RCPT", "550 5.1.1 No such user", PermanentFailure, id="rcpt-550"),
        pytest.param("MAIL", "451 4.3.0 Try again later", TransientFailure, id="mail-451"),
        pytest.param("MAIL", "421 4.3.2 Shutting down", TransientFailure, id="mail-421"),
        pytest.param("MAIL", "553 5.7.1 Sender not allowed", PermanentFailure, id="mail-553"),
        pytest.param("DATA_END", "452 4.3.1 Insufficient storage", TransientFailure, id="data-452"),
        pytest.param("DATA_END", "554 5.7.1 Rejected as spam", PermanentFailure, id="data-554"),
    ],
)
@pytest.mark.django_db
def test_email_send__smtp_answers_4xx_are_transient_and_5xx_permanent(
    smtp_server: SmtpServer, command: str, answer: str, error: type[Exception]
) -> None:
    # Given a mail server that answers `command` with `answer`
    smtp_server.replies[command].append(answer)

    # When an email is sent, the error says whether a retry may help
    with pytest.raises(error):
        services.email_send(to=["ada@example.com"], subject="Hi", body="Body")

    assert smtp_server.messages == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"subject": "Hello\nBcc: everyone@example.com"}, id="subject-line-break"),
        pytest.param({"from_email": "sender@example.com\nBcc: x@example.com"}, id="from-line-break"),
    ],
)
@pytest.mark.django_db
def test_email_send__header_that_cannot_be_built_is_permanent(
    mailoutbox: list[Any], headers: dict[str, str]
) -> None:
    fields = {"to": ["ada@example.com"], "subject": "Hello", "body": "Body", **headers}

    with pytest.raises(PermanentFailure, match="cannot be built"):
        services.email_send(**fields)

    assert mailoutbox == []
