"""Delivery over the network: outgoing webhooks (httpx, signed with the Standard
Webhooks scheme) and email (SMTP). Each returns a `Result` that says whether the
failure is worth retrying; nothing here touches the database."""

from __future__ import annotations

import email.utils
import smtplib
import time
from dataclasses import dataclass
from email.message import EmailMessage
from functools import lru_cache
from typing import Literal

import httpx

from service.events.signatures import sign_standard_webhooks
from service.settings import Destination, Settings

Outcome = Literal["sent", "retry", "failed"]


@dataclass(frozen=True)
class Result:
    outcome: Outcome  # failed: permanent, never retried
    detail: str
    retry_after_s: float | None = None


# --- webhooks -------------------------------------------------------------------------


@lru_cache
def _client() -> httpx.Client:
    # One pool per process: deliveries to a destination reuse its connections.
    return httpx.Client(follow_redirects=False)


def signed_headers(*, key: str, body: bytes, secret: str) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed now under `secret`."""
    timestamp = int(time.time())
    return {
        "content-type": "application/json",
        "webhook-id": key,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhooks(
            body, msg_id=key, timestamp=timestamp, secret=secret
        ),
    }


def post_webhook(*, destination: Destination, key: str, body: bytes) -> Result:
    """POST `body` to the destination; `webhook-id` is the action's idempotency key,
    the same on every attempt, so the receiver can drop a repeat."""
    headers = signed_headers(key=key, body=body, secret=destination.secret)
    try:
        response = _client().post(
            str(destination.url), content=body, headers=headers, timeout=destination.timeout_s
        )
    except httpx.TimeoutException:
        return Result("retry", f"no answer within {destination.timeout_s:g} s")
    except httpx.TransportError as exc:
        return Result("retry", f"connection failed: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return Result("sent", f"HTTP {status}")
    if status in (408, 425, 429) or status >= 500:
        return Result("retry", f"HTTP {status}", _retry_after(response.headers.get("retry-after")))
    return Result("failed", f"HTTP {status}")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# --- email ----------------------------------------------------------------------------


def send_email(*, settings: Settings, to: str, subject: str, text: str, key: str) -> Result:
    message = EmailMessage()
    message["From"] = settings.email_from
    message["To"] = to
    message["Subject"] = subject
    # The same on every attempt: mail systems drop a repeated Message-ID.
    message["Message-ID"] = f"<{key}@{settings.email_from.rpartition('@')[2] or 'localhost'}>"
    message["Date"] = email.utils.formatdate(localtime=False)
    message.set_content(text)
    try:
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_s
        ) as smtp:
            if settings.smtp_starttls:
                smtp.starttls()
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password or "")
            smtp.send_message(message)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {code for code, _ in exc.recipients.values()}
        if all(400 <= code < 500 for code in codes):
            return Result("retry", f"recipient refused for now: SMTP {sorted(codes)}")
        return Result("failed", f"recipient refused: SMTP {sorted(codes)}")
    except smtplib.SMTPResponseException as exc:
        outcome: Outcome = "retry" if 400 <= exc.smtp_code < 500 else "failed"
        return Result(outcome, f"SMTP {exc.smtp_code}")
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        return Result("retry", f"SMTP server unreachable: {type(exc).__name__}")
    return Result("sent", "accepted by the SMTP server")
