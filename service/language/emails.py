"""Email offers checked against their templates before they go live: the template
exists and reads well, and every value it reads is one the dispatch gives it, so an
action does not die when it is sent.

A template is rendered with `offer` (the offer action as stored: type, channel, offer,
template, params, expires_at, and placement and expires_in if the rule gives them),
`params` (the offer's params, a variant's added) and `profile.traits`. What it reads:

- `params.<name>`: given by the offer's params, and by them with each experiment
  variant's (a variant changes the template or adds params; outside the experiment's
  dates the rule sends as written);
- `offer.<field>`: one of the fields above;
- `profile.traits.<name>`: a standard trait or one the file lists under `traits:`.

A value the template guards (`| default(…)`, `is defined`, `params.get("x")`) may be
missing; any other missing value stops the email at send time.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from service.language import facts, suggest, templates, yamlcheck
from service.language.experiments import Changes, ExperimentSpec
from service.language.files import RuleFile
from service.language.parse import RulesInvalid, read_file
from service.language.schema import OfferSpec, Rule

Problem = tuple[tuple[Any, ...], str]
OFFER_FIELDS = frozenset({"type", "channel", "offer", "template", "params", "expires_at"})
ROOTS = ("offer", "params", "profile")


@dataclass(frozen=True)
class Sending:
    """One way an offer can be sent: its template and the params it is given."""

    label: str  # "rule r", or "rule r, variant v of e"
    path: tuple[Any, ...]  # where in the rule file
    template: str
    params: frozenset[str]
    offer: OfferSpec


def check(rf: RuleFile, directory: Path) -> Iterator[Problem]:
    """Problems of the file's email offers with their templates, each at the offer's
    (or the variant's) template."""
    traits = facts.STANDARD_TRAITS | set(rf.traits)
    read: dict[str, tuple[templates.EmailTemplate | None, str | None]] = {}
    reported: set[tuple[tuple[Any, ...], str]] = set()
    for sending in _sendings(rf):
        if sending.template not in read:
            read[sending.template] = _read(directory, sending.template)
        template, problem = read[sending.template]
        if problem is not None and (sending.path, problem) not in reported:
            reported.add((sending.path, problem))  # once for the cells sharing a level
            yield sending.path, f"{sending.label}: {problem}"
        elif template is not None and sending.offer.channel == "email":
            where = _where(directory, sending.template)
            for found in variable_problems(template, sending=sending, traits=traits):
                yield sending.path, f"{sending.label}: {where(found)}"


def _sendings(rf: RuleFile) -> Iterator[Sending]:
    for i, rule in enumerate(rf.rules):
        for j, action in enumerate(rule.actions):
            offer = getattr(action, "offer", None)
            if offer is None or offer.template is None:
                continue
            path = ("rules", i, "actions", j, "offer", "template")
            yield Sending(f"rule {rule.id}", path, offer.template, frozenset(offer.params), offer)
            for k, spec in enumerate(rf.experiments):
                if spec.target.rule == rule.id:
                    yield from _variant_sendings(rule, offer, spec, ("experiments", k))


def _variant_sendings(
    rule: Rule, offer: OfferSpec, spec: ExperimentSpec, at: tuple[Any, ...]
) -> Iterator[Sending]:
    """Each variant, or each cell of a multivariate design, as it changes the offer;
    located at the template it sends (else at the variant or the cell)."""
    arms: list[tuple[str, tuple[Any, ...], Changes]] = [
        (v.name, (*at, "variants", j, "template") if v.template else (*at, "variants", j), v)
        for j, v in enumerate(spec.variants)
    ]
    arms += list(_cells(spec, at))
    for name, path, changes in arms:
        if changes.suppress:
            continue
        template = changes.template or offer.template
        assert template is not None
        params = frozenset(offer.params) | frozenset(changes.params)
        yield Sending(
            f"rule {rule.id}, variant {name} of {spec.key}", path, template, params, offer
        )


def _cells(
    spec: ExperimentSpec, at: tuple[Any, ...]
) -> Iterator[tuple[str, tuple[Any, ...], Changes]]:
    """The cells of a multivariate design (those listed, else every combination of
    the factors' levels, named `factor=level,…`) with their merged changes."""
    if spec.cells:
        chosen = [(c.name, (*at, "cells", j), c.levels) for j, c in enumerate(spec.cells)]
    else:
        combos = itertools.product(*(f.levels for f in spec.factors))
        chosen = [
            (
                ",".join(f"{f.name}={lv.name}" for f, lv in zip(spec.factors, combo, strict=True)),
                (*at, "factors"),
                {f.name: lv.name for f, lv in zip(spec.factors, combo, strict=True)},
            )
            for combo in combos
        ]
    for name, path, levels in chosen:
        picked = [
            ((*at, "factors", i, "levels", k, "template"), level)
            for i, factor in enumerate(spec.factors)
            for k, level in enumerate(factor.levels)
            if levels.get(factor.name) == level.name
        ]
        where = next((p for p, level in reversed(picked) if level.template), path)
        yield name, where, _merge([level for _, level in picked])


def _merge(levels: Sequence[Changes]) -> Changes:
    """One cell's changes: a later factor's template over an earlier one's, params
    merged (as the experiments package applies them)."""
    template = next((lv.template for lv in reversed(levels) if lv.template), None)
    params: dict[str, Any] = {}
    for level in levels:
        params |= level.params
    suppress = any(level.suppress for level in levels)
    return Changes(template=template, params=params, suppress=suppress)


def variable_problems(
    template: templates.EmailTemplate, *, sending: Sending, traits: frozenset[str] | set[str]
) -> Iterator[tuple[str, int, str]]:
    """(part, line, what is wrong) for each value the template reads that this sending
    does not give it."""
    offer_fields = set(OFFER_FIELDS)
    offer_fields |= {name for name in ("placement", "expires_in") if getattr(sending.offer, name)}
    uses = templates.uses(template)
    guarded = {use.path for use in uses if use.guarded}
    seen: set[tuple[str, ...]] = set()
    for use in uses:
        if use.path in seen:
            continue
        seen.add(use.path)
        problem = _problem(
            use.path,
            guarded=use.path in guarded,
            params=sending.params,
            offer_fields=offer_fields,
            traits=traits,
        )
        if problem:
            yield use.part, use.line, problem


def _problem(
    path: tuple[str, ...],
    *,
    guarded: bool,
    params: frozenset[str],
    offer_fields: set[str],
    traits: frozenset[str] | set[str],
) -> str | None:
    shown = "{{ " + ".".join(path) + " }}"
    root, rest = path[0], path[1:]
    if root not in ROOTS:
        return f"{shown}: a template reads offer, params and profile{suggest.hint(root, ROOTS)}"
    if root == "profile":
        return _profile_problem(shown, rest, guarded=guarded, traits=traits)
    if root == "offer" and rest[:1] == ("params",):
        root, rest = "params", rest[1:]
    if not rest:
        return None
    if root == "params" and _missing(rest[0], params, guarded=guarded):
        given = ", ".join(sorted(params)) or "none"
        return (
            f"{shown}: the offer gives no param {rest[0]!r} (its params: {given})"
            f"{suggest.hint(rest[0], params)}"
        )
    if root == "offer" and _missing(rest[0], offer_fields, guarded=guarded):
        return (
            f"{shown}: an offer has {', '.join(sorted(offer_fields))}"
            f"{suggest.hint(rest[0], offer_fields)}"
        )
    return None


def _profile_problem(
    shown: str, rest: tuple[str, ...], *, guarded: bool, traits: frozenset[str] | set[str]
) -> str | None:
    if rest and rest[0] != "traits":
        return f"{shown}: a template reads the profile's traits only (profile.traits.<name>)"
    if len(rest) > 1 and _missing(rest[1], traits, guarded=guarded):
        return (
            f"{shown}: unknown trait {rest[1]!r}; list it under `traits:` or write "
            f"`| default(…)`{suggest.hint(rest[1], traits)}"
        )
    return None


def _missing(name: str, given: Iterable[str], *, guarded: bool) -> bool:
    """A name the template reads that is not given is an error, unless the template
    guards it (it may be optional), and even then when it is a misspelling of one that
    is given (`params.prodcut_name | default(…)` would always show the default)."""
    given = set(given)
    misspelt = suggest.closest(name, given, cutoff=suggest.MISSPELT) is not None
    return name not in given and (not guarded or misspelt)


# --- reading the templates ---------------------------------------------------------------


def _read(directory: Path, name: str) -> tuple[templates.EmailTemplate | None, str | None]:
    """The template, or what is wrong with it (checked as plain data like the rule files
    before it is read)."""
    where = f"{templates.DIRECTORY}/{name}.yaml"
    path = directory / where
    if path.is_file():
        try:
            problems = yamlcheck.problems(read_file(path, where))
        except RulesInvalid as exc:
            return None, str(exc)
        except yaml.YAMLError:
            problems = []  # templates.load says what is wrong, with the YAML's own words
        if problems:
            line, message = problems[0]
            return None, f"{where}:{line}: {message}"
    try:
        return templates.load(directory, name), None
    except templates.TemplateProblem as exc:
        return None, str(exc)


def _where(directory: Path, name: str) -> Callable[[tuple[str, int, str]], str]:
    """A function putting `templates/<name>.yaml:<line>` before a message about a line
    of the template's subject or text."""
    where = f"{templates.DIRECTORY}/{name}.yaml"
    starts = _starts(directory / where)

    def located(found: tuple[str, int, str]) -> str:
        part, line, message = found
        return f"{where}:{starts.get(part, 1) + line - 1}: {message}"

    return located


def _starts(path: Path) -> dict[str, int]:
    """The file line where the subject's and the text's content begin (a block scalar,
    `text: |`, begins on the line after its key)."""
    node = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    starts: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(value, yaml.ScalarNode):
                block = value.style in ("|", ">")
                starts[str(key.value)] = value.start_mark.line + 1 + block
    return starts
