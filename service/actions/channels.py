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
from pathlib import Path
from typing import Any, Literal

import httpx
import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

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


def post_webhook(*, destination: Destination, key: str, body: bytes) -> Result:
    """POST `body` to the destination; `webhook-id` is the action's idempotency key,
    the same on every attempt, so the receiver can drop a repeat."""
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": key,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign_standard_webhooks(
            body, msg_id=key, timestamp=timestamp, secret=destination.secret
        ),
    }
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

_JINJA = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


@dataclass(frozen=True)
class EmailTemplate:
    subject: str
    text: str


class TemplateProblem(Exception):
    """A template that is missing or does not render: a configuration error."""


def load_template(directory: Path, name: str) -> EmailTemplate:
    path = directory / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise TemplateProblem(f"no email template {path}") from exc
    except yaml.YAMLError as exc:
        raise TemplateProblem(f"{path}: {exc}") from exc
    if not isinstance(data, dict) or not {"subject", "text"} <= data.keys():
        raise TemplateProblem(f"{path}: needs `subject` and `text`")
    return EmailTemplate(subject=str(data["subject"]), text=str(data["text"]))


def render_email(template: EmailTemplate, context: dict[str, Any]) -> tuple[str, str]:
    """Subject and body. Templates run in Jinja's sandbox: marketers' text never
    reaches Python; a missing value is an error, not an empty string."""
    try:
        subject = _JINJA.from_string(template.subject).render(context)
        text = _JINJA.from_string(template.text).render(context)
    except TemplateError as exc:
        raise TemplateProblem(f"template does not render: {exc}") from exc
    # One line: a value with a newline must not add headers.
    return " ".join(subject.split()), text


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
