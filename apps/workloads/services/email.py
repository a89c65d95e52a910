"""Sending email through Django's email framework, telling permanent errors from passing ones."""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email

from apps.jobs.exceptions import PermanentFailure, TransientFailure

logger = logging.getLogger(__name__)


def email_send(
    *,
    to: list[str],
    subject: str,
    body: str,
    html_body: str | None = None,
    from_email: str | None = None,
    message_id: str | None = None,
) -> int:
    """Send one email; returns the number of recipients.

    Raises PermanentFailure for what retrying cannot fix (an invalid address, a header the message
    cannot carry, a 5xx answer, including a recipient or sender refused with one) and
    TransientFailure for what may pass (connection errors, timeouts, 4xx answers such as
    greylisting). `message_id` sets the Message-ID header, so a second send of the same job is
    recognisable as a duplicate by mail clients.
    """
    if not to:
        raise PermanentFailure("The email has no recipient.")
    for address in to:
        try:
            validate_email(address)
        except ValidationError:
            raise PermanentFailure(f"{address!r} is not a valid email address.") from None
    headers = {"Message-ID": f"<{message_id}@{settings.EMAIL_MESSAGE_ID_DOMAIN}>"} if message_id else {}
    message = EmailMultiAlternatives(
        subject=subject,
        body=body,
        from_email=from_email or settings.DEFAULT_FROM_EMAIL,
        to=to,
        headers=headers,
    )
    if html_body:
        message.attach_alternative(html_body, "text/html")
    try:
        return message.send()
    except ValueError as exc:
        # A header with a line break, an address the message cannot encode: the same every time.
        raise PermanentFailure(f"The email cannot be built: {exc}") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        # Every recipient was refused; a 4xx refusal (greylisting, a full mailbox) may pass.
        codes = [code for code, _ in exc.recipients.values()]
        if any(400 <= code < 500 for code in codes):
            raise TransientFailure(f"The mail server deferred the recipient(s): {exc.recipients}") from exc
        raise PermanentFailure(f"The mail server refused the recipient(s): {exc.recipients}") from exc
    except smtplib.SMTPSenderRefused as exc:
        if 400 <= exc.smtp_code < 500:
            raise TransientFailure(
                f"The mail server deferred the sender {exc.sender!r}: {exc.smtp_code} {exc.smtp_error!r}"
            ) from exc
        raise PermanentFailure(f"The mail server refused the sender {exc.sender!r}.") from exc
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentFailure(f"The mail server answered {exc.smtp_code}: {exc.smtp_error!r}") from exc
        raise TransientFailure(f"The mail server answered {exc.smtp_code}: {exc.smtp_error!r}") from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise TransientFailure(f"The mail server could not be reached: {exc}") from exc
