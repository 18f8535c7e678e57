"""`validate` reads each email template an offer sends and refuses one that reads a
value the dispatch would not give it (the action would die at send time): params the
offer (and each experiment variant) gives, the offer's fields, and known traits."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from service.language import emails, loader, templates
from service.language.engine import Engine
from service.language.loader import load_source
from service.language.parse import RulesInvalid
from service.language.templates import EmailTemplate
from service.rules.evaluator import actions_of


def write(directory: Path, *, rule: str, template: str, extra: str = "") -> None:
    (directory / "templates").mkdir(exist_ok=True)
    (directory / "templates" / "nudge.yaml").write_text(textwrap.dedent(template))
    (directory / "t.yaml").write_text(
        "ruleset: t\nversion: 1\ntraits: [shoe_size]\nrules:\n"
        "  - id: r\n    trigger: {event: Product Added}\n    actions:\n"
        f"      - offer: {rule}\n" + textwrap.dedent(extra)
    )


EMAIL = "{channel: email, offer: X, template: nudge, params: {product_name: p, cart_id: c}}"


def errors(directory: Path) -> list[str]:
    with pytest.raises(RulesInvalid) as caught:
        loader.load_directory(directory)
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "{{ params.product_nme }}",
            "{{ params.product_nme }}: the offer gives no param 'product_nme' "
            "(its params: cart_id, product_name); did you mean 'product_name'?",
        ),
        (
            "{{ params.product_nme | default('it') }}",  # a misspelling, default or not
            "did you mean 'product_name'?",
        ),
        ("{{ offer.params.colour }}", "the offer gives no param 'colour'"),
        ("{{ offer.expire_at[:10] }}", "did you mean 'expires_at'?"),
        ("{{ offer.placement }}", "an offer has channel, expires_at, offer, params,"),
        ("{{ profile.traits.frist_name }}", "unknown trait 'frist_name'"),
        ("{{ profile.orders_count }}", "a template reads the profile's traits only"),
        ("{{ first_name }}", "a template reads offer, params and profile"),
    ],
)
def test_a_template_reading_what_the_offer_does_not_give_is_an_error(
    tmp_path: Path, line: str, expected: str
) -> None:
    write(tmp_path, rule=EMAIL, template=f"subject: Hi\ntext: |\n  Dear you,\n  {line}\n")
    (error,) = errors(tmp_path)
    # At the offer's template in the rule file, and the line of the template's text.
    assert error.startswith("t.yaml:8: rule r: templates/nudge.yaml:4: "), error
    assert expected in error, error


@pytest.mark.parametrize(
    "line",
    [
        "{{ params.product_name }} {{ offer.params.cart_id }} {{ params }}",
        "{{ offer.offer }} until {{ offer.expires_at[:10] }} ({{ offer.channel }})",
        "{{ profile.traits.first_name }} {{ profile.traits.shoe_size }}",  # listed in traits:
        "{{ profile.traits.nickname | default('you') }}",  # guarded: may be missing
        "{% if profile.traits.nickname is defined %}{{ profile.traits.nickname }}{% endif %}",
        "{{ params.colour | default('') }} {{ params.get('size') }}",  # optional params
        "{% for key, value in params.items() %}{{ key }}={{ value }}{% endfor %}",
        "{% set who = profile.traits.first_name %}{{ who }}",
    ],
)
def test_a_template_reading_what_is_given_or_guarded_passes(tmp_path: Path, line: str) -> None:
    write(tmp_path, rule=EMAIL, template=f"subject: Hi\ntext: |\n  {line}\n")
    (loaded,) = loader.load_directory(tmp_path)
    assert loaded.name == "t"


def test_the_subject_is_checked_and_located_too(tmp_path: Path) -> None:
    write(tmp_path, rule=EMAIL, template='subject: "{{ params.titel }}"\ntext: ok\n')
    (error,) = errors(tmp_path)
    assert error.startswith("t.yaml:8: rule r: templates/nudge.yaml:1: {{ params.titel }}"), error


def test_offer_fields_the_rule_gives_are_readable(tmp_path: Path) -> None:
    offer = "{channel: email, offer: X, template: nudge, placement: cart, expires_in: 2d}"
    write(
        tmp_path,
        rule=offer,
        template="subject: s\ntext: '{{ offer.placement }} {{ offer.expires_in }}'\n",
    )
    (loaded,) = loader.load_directory(tmp_path)
    assert loaded.name == "t"


def test_every_variant_of_an_experiment_gives_what_its_template_reads(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "nudge_15.yaml").write_text(
        "subject: s\ntext: '{{ params.product_name }} {{ params.percent }}'\n"
    )
    write(
        tmp_path,
        rule=EMAIL,
        template="subject: s\ntext: '{{ params.product_name }}'\n",
        extra="""
        experiments:
          - key: discount
            target: {rule: r}
            variants:
              - {name: control}
              - {name: fifteen, template: nudge_15, params: {percent: "15"}}
              - {name: twenty, template: nudge_15}
        """,
    )
    (error,) = errors(tmp_path)
    # The variant that gives `percent` passes; the one that does not is named, at its line.
    assert error.startswith(
        "t.yaml:16: rule r, variant twenty of discount: templates/nudge_15.yaml:2: "
        "{{ params.percent }}: the offer gives no param 'percent'"
    ), error


def test_each_cell_of_a_multivariate_design_is_checked(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "nudge_b.yaml").write_text(
        "subject: s\ntext: '{{ params.headline }}'\n"
    )
    write(
        tmp_path,
        rule=EMAIL,
        template="subject: s\ntext: ok\n",
        extra="""
        experiments:
          - key: mv
            target: {rule: r}
            factors:
              - name: look
                levels: [{name: a}, {name: b, template: nudge_b}]
              - name: words
                levels: [{name: plain}, {name: bold, params: {headline: Now}}]
        """,
    )
    (error,) = errors(tmp_path)
    assert "variant look=b,words=plain of mv" in error, error
    assert "{{ params.headline }}" in error, error


def test_uses_follows_dotted_paths_and_guards() -> None:
    template = EmailTemplate(
        subject="{{ params.a | default('x') }}",
        text="{{ offer.expires_at[:10] }}\n{{ params['b'] }} {{ params.get('c') }}",
    )
    found = {(u.path, u.part, u.line, u.guarded) for u in templates.uses(template)}
    assert found == {
        (("params", "a"), "subject", 1, True),
        (("offer", "expires_at"), "text", 1, False),
        (("params", "b"), "text", 2, False),
        (("params", "c"), "text", 2, True),
    }


def test_the_offer_fields_checked_are_those_the_dispatch_renders_with() -> None:
    """`offer` in a template is the offer action as the rule renders it, with the
    `expires_at` the actions service adds when it stores it."""
    source = (
        "ruleset: t\nversion: 1\nrules:\n  - id: r\n    trigger: {event: Product Added}\n"
        f"    actions:\n      - offer: {EMAIL}\n"
    )
    compiled = Engine().compile(load_source("t.yaml", source))
    tree: dict = {"event": {"properties": {}}, "context": {}, "profile": {}}
    (action,) = actions_of(compiled.rules["r"], tree)
    assert set(action) | {"expires_at"} == emails.OFFER_FIELDS


def test_a_factor_levels_missing_template_is_named_once_at_its_line(tmp_path: Path) -> None:
    write(
        tmp_path,
        rule=EMAIL,
        template="subject: s\ntext: ok\n",
        extra="""
        experiments:
          - key: mv
            target: {rule: r}
            factors:
              - name: look
                levels: [{name: a}, {name: b, template: nudge_bb}]
              - name: words
                levels: [{name: plain}, {name: bold}, {name: loud}]
        """,
    )
    (error,) = errors(tmp_path)  # three cells send it: one error
    assert error.startswith("t.yaml:15: rule r, variant look=b,words=plain of mv: "), error
    assert error.endswith("no email template templates/nudge_bb.yaml; did you mean 'nudge'?")
