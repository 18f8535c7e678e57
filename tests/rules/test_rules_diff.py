"""`rules diff`'s comparison, on loaded files: what is added, removed and changed, and
which fields; and the files on disk beside the live ones, file by file."""

from __future__ import annotations

import textwrap

from service.language.loader import load_segment_source, load_source
from service.rules import diff, live

CART = """
ruleset: cart
version: 1
placements:
  cart_drawer: {content: plain}
rules:
  - id: cart_abandoned
    priority: 10
    trigger: {event: Product Added}
    when:
      - profile.consent.marketing: true
    delay: 24h
    actions:
      - segment: {add: abandoners}
  - id: cart_viewed
    trigger: {event: Cart Viewed}
    actions:
      - segment: {add: viewers}
experiments:
  - key: cart_offer
    target: {rule: cart_abandoned}
    variants:
      - {name: control, suppress: true}
      - {name: treated}
"""

SEGMENT = """
segment: big
version: 1
when:
  - profile.total_spent: {gte: 500}
"""


def ruleset(*, file: str = "cart.yaml"):  # type: ignore[no-untyped-def]
    return load_source(file, textwrap.dedent(CART))


def edit(*pairs: tuple[str, str]):  # type: ignore[no-untyped-def]
    """CART with each (old, new) replaced, once."""
    text = textwrap.dedent(CART)
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return load_source("cart.yaml", text)


def test_the_same_files_make_no_changes() -> None:
    segment = load_segment_source("segments/big.yaml", SEGMENT)
    assert diff.diff([ruleset(), segment], [ruleset(), segment]) == []
    assert diff.summary([]) == "no changes: the files are what is live"


def test_a_changed_rule_names_its_fields_with_single_values_before_and_after() -> None:
    after = edit(
        ("version: 1", "version: 2"),
        ("priority: 10", "priority: 20"),
        ("delay: 24h", "delay: 48h"),
        ("marketing: true", "marketing: false"),
    )
    (change,) = diff.diff([ruleset()], [after])
    assert (change.kind, change.name, change.change, change.file) == (
        "ruleset",
        "cart",
        "changed",
        "cart.yaml",
    )
    assert [str(f) for f in change.fields] == ["version 1 → 2"]
    (rule,) = change.items
    assert (rule.kind, rule.name, rule.change) == ("rule", "cart_abandoned", "changed")
    assert [str(f) for f in rule.fields] == [
        "priority 10 → 20",
        "when.0.profile.consent.marketing.eq True → False",
        "delay 24h → 48h",
    ]
    assert diff.lines([change]) == [
        "ruleset cart (cart.yaml): changed: version 1 → 2",
        "  rule cart_abandoned: changed: priority 10 → 20, "
        "when.0.profile.consent.marketing.eq True → False, delay 24h → 48h",
    ]


def test_a_condition_added_and_a_long_description_are_named_not_detailed() -> None:
    after = edit(
        ("    priority: 10\n", "    priority: 10\n    description: " + "long " * 10 + "\n"),
        (
            "      - profile.consent.marketing: true\n",
            "      - profile.orders_count: {gte: 1}\n      - profile.consent.marketing: true\n",
        ),
    )
    (change,) = diff.diff([ruleset()], [after])
    (rule,) = change.items
    assert [str(f) for f in rule.fields] == ["description", "when"]


def test_rules_added_and_removed_and_a_limits_group_set() -> None:
    after = edit(
        ("  - id: cart_viewed\n", "  - id: cart_seen\n"),
        ("    delay: 24h\n", "    delay: 24h\n    limits: {group: cart, cooldown: 3d}\n"),
    )
    (change,) = diff.diff([ruleset()], [after])
    assert [(i.name, i.change, [str(f) for f in i.fields]) for i in change.items] == [
        ("cart_abandoned", "changed", ["limits"]),
        ("cart_viewed", "removed", []),
        ("cart_seen", "added", []),
    ]
    assert diff.summary([change]) == (
        "files: 0 added, 0 removed, 1 changed; rules: 1 added, 1 removed, 1 changed"
    )


def test_an_experiment_changed_shows_on_the_experiment_and_on_the_rule_it_targets() -> None:
    after = edit(("{name: treated}", "{name: treated, delay: 48h}"))
    (change,) = diff.diff([ruleset()], [after])
    assert [(i.kind, i.name, [str(f) for f in i.fields]) for i in change.items] == [
        ("rule", "cart_abandoned", ["experiments (cart_offer)"]),
        ("experiment", "cart_offer", ["variants.1.delay (none) → 48h"]),
    ]


def test_a_placement_default_changed() -> None:
    after = edit(("{content: plain}", "{content: fancy}"))
    (change,) = diff.diff([ruleset()], [after])
    (item,) = change.items
    assert (item.kind, item.name, item.change) == ("placement", "cart_drawer", "changed")
    assert [str(f) for f in item.fields] == ["content plain → fancy"]


def test_files_added_and_removed_list_their_rules_and_a_renamed_file_is_a_change() -> None:
    segment = load_segment_source("segments/big.yaml", SEGMENT)
    changes = diff.diff([segment], [ruleset()])
    assert [(c.kind, c.name, c.change) for c in changes] == [
        ("ruleset", "cart", "added"),
        ("segment", "big", "removed"),
    ]
    assert [(i.name, i.change) for i in changes[0].items] == [
        ("cart_abandoned", "added"),
        ("cart_viewed", "added"),
    ]
    (renamed,) = diff.diff([ruleset()], [ruleset(file="basket.yaml")])
    assert [str(f) for f in renamed.fields] == ["file cart.yaml → basket.yaml"]
    assert renamed.items == ()


def test_a_segment_definition_changed() -> None:
    before = load_segment_source("segments/big.yaml", SEGMENT)
    after = load_segment_source(
        "segments/big.yaml",
        SEGMENT.replace("gte: 500", "gte: 800").replace("version: 1", "version: 2"),
    )
    (change,) = diff.diff([before], [after])
    assert (change.kind, change.change) == ("segment", "changed")
    assert [str(f) for f in change.fields] == [
        "version 1 → 2",
        "when.0.profile.total_spent.gte 500 → 800",
    ]


def test_the_record_of_a_change_is_plain_data() -> None:
    (change,) = diff.diff([ruleset()], [edit(("priority: 10", "priority: 20"))])
    assert change.as_dict() == {
        "kind": "ruleset",
        "name": "cart",
        "change": "changed",
        "file": "cart.yaml",
        "fields": [],
        "items": [
            {
                "kind": "rule",
                "name": "cart_abandoned",
                "change": "changed",
                "fields": [{"name": "priority", "before": 10, "after": 20}],
            }
        ],
    }


def test_files_on_disk_beside_the_live_ones() -> None:
    disk = {"a.yaml": "1", "b.yaml": "2", "segments/c.yaml": "3"}
    deployed = {"a.yaml": "1", "b.yaml": "x", "d.yaml": "4"}
    assert [(s.file, s.state) for s in live.compare(disk, deployed)] == [
        ("a.yaml", "same"),
        ("b.yaml", "changed"),
        ("d.yaml", "only live"),
        ("segments/c.yaml", "only on disk"),
    ]
