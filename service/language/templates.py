"""Email templates: `<RULES_DIR>/templates/<name>.yaml` with `subject` and `text`,
rendered in Jinja's sandbox, so marketers' text never reaches Python."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

DIRECTORY = "templates"  # under the rules directory

_JINJA = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class TemplateProblem(Exception):
    """A template that is missing, malformed or does not render."""


@dataclass(frozen=True)
class EmailTemplate:
    subject: str
    text: str


def load(rules_dir: Path, name: str) -> EmailTemplate:
    path = rules_dir / DIRECTORY / f"{name}.yaml"
    where = f"{DIRECTORY}/{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateProblem(f"no email template {where}") from None
    except yaml.YAMLError as exc:
        raise TemplateProblem(f"{where}: YAML: {exc}") from None
    if not isinstance(data, dict) or not {"subject", "text"} <= data.keys():
        raise TemplateProblem(f"{where}: needs `subject` and `text`")
    template = EmailTemplate(subject=str(data["subject"]), text=str(data["text"]))
    for part in (template.subject, template.text):
        try:
            _JINJA.parse(part)
        except TemplateError as exc:
            raise TemplateProblem(f"{where}: {exc}") from None
    return template


def render(template: EmailTemplate, context: dict[str, Any]) -> tuple[str, str]:
    """Subject and body. A value that is missing is an error, not an empty string."""
    try:
        subject = _JINJA.from_string(template.subject).render(context)
        text = _JINJA.from_string(template.text).render(context)
    except TemplateError as exc:
        raise TemplateProblem(f"the template does not render: {exc}") from None
    # One line: a value with a newline must not add headers.
    return " ".join(subject.split()), text
