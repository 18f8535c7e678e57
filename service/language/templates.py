"""Email templates: `<RULES_DIR>/templates/<name>.yaml` with `subject` and `text`,
rendered in Jinja's sandbox, so marketers' text never reaches Python."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from service.language import suggest

DIRECTORY = "templates"  # under the rules directory

_JINJA = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class TemplateProblem(Exception):
    """A template that is missing, malformed or does not render."""


@dataclass(frozen=True)
class EmailTemplate:
    subject: str
    text: str


@dataclass(frozen=True)
class Use:
    """A value a template reads: its dotted path from the render context
    (`("profile", "traits", "first_name")`), the line in its part, and whether the
    template copes with it missing (`| default(…)`, `is defined`)."""

    path: tuple[str, ...]
    part: str  # subject or text
    line: int
    guarded: bool


def load(rules_dir: Path, name: str) -> EmailTemplate:
    path = rules_dir / DIRECTORY / f"{name}.yaml"
    where = f"{DIRECTORY}/{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        there = [p.stem for p in (rules_dir / DIRECTORY).glob("*.yaml")]
        raise TemplateProblem(f"no email template {where}{suggest.hint(name, there)}") from None
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


def email_context(offer: dict[str, Any], traits: dict[str, Any]) -> dict[str, Any]:
    """What a template sees: the offer action as the rule produced it (`offer.offer` is
    the code, `offer.expires_at` when it ends), its `params`, and the customer's
    traits. The same for an email sent and for a preview (`rules render-email`)."""
    return {"offer": offer, "params": offer.get("params", {}), "profile": {"traits": traits}}


GUARDS = frozenset({"default", "d"})  # filters that replace a missing value
GUARD_TESTS = frozenset({"defined", "undefined"})


def uses(template: EmailTemplate) -> list[Use]:
    """Every value the template reads from its context, by its longest dotted path
    (`params.product_name`, `offer.expires_at` in `offer.expires_at[:10]`); names the
    template sets itself (`{% set %}`, loops) are left out."""
    found: list[Use] = []
    for part, source in (("subject", template.subject), ("text", template.text)):
        tree = _JINJA.parse(source)
        free = meta.find_undeclared_variables(tree)
        found.extend(
            Use(path, part, line, guarded)
            for path, line, guarded in _walk(tree, guarded=False)
            if path[0] in free
        )
    return found


def _walk(node: nodes.Node, *, guarded: bool) -> list[tuple[tuple[str, ...], int, bool]]:
    if isinstance(node, nodes.Filter) and node.name in GUARDS and node.node is not None:
        rest = [child for child in node.iter_child_nodes() if child is not node.node]
        return _walk(node.node, guarded=True) + _walk_all(rest, guarded=guarded)
    if isinstance(node, nodes.Test) and node.name in GUARD_TESTS:
        rest = [child for child in node.iter_child_nodes() if child is not node.node]
        return _walk(node.node, guarded=True) + _walk_all(rest, guarded=guarded)
    method = _mapping_method(node)
    if method is not None:
        assert isinstance(node, nodes.Call)
        rest = [child for child in node.iter_child_nodes() if child is not node.node]
        return [method, *_walk_all(rest, guarded=guarded)]
    path = _dotted(node)
    if path is not None:
        return [(path, node.lineno, guarded)]
    return _walk_all(node.iter_child_nodes(), guarded=guarded)


def _mapping_method(node: nodes.Node) -> tuple[tuple[str, ...], int, bool] | None:
    """`params.get("x")` reads `params.x` and copes with it missing; `params.items()`
    (keys, values) reads `params`."""
    if not (isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr)):
        return None
    mapping = _dotted(node.node.node)
    if mapping is None:
        return None
    if node.node.attr in ("items", "keys", "values"):
        return mapping, node.lineno, False
    first = node.args[0] if node.args else None
    if node.node.attr == "get" and isinstance(first, nodes.Const) and isinstance(first.value, str):
        return (*mapping, first.value), node.lineno, True
    return None


def _walk_all(children: Any, *, guarded: bool) -> list[tuple[tuple[str, ...], int, bool]]:
    return [use for child in children for use in _walk(child, guarded=guarded)]


def _dotted(node: nodes.Node) -> tuple[str, ...] | None:
    """`a.b.c` (or `a["b"]`) as ("a", "b", "c"); None for anything else."""
    if isinstance(node, nodes.Name) and node.ctx == "load":
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        inner = _dotted(node.node)
        return None if inner is None else (*inner, node.attr)
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        inner = _dotted(node.node)
        return None if inner is None else (*inner, node.arg.value)
    return None
