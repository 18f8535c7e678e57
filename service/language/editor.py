"""What `rules/schema.json` tells an editor beyond the models' shapes: the fact paths
it can complete in a condition (with the kind of value each compares with), and which
of the two kinds of file it is looking at, so its errors are about that kind only.

Any `event.`, `context.` or `profile.` path stays allowed (properties, context and
traits are the shop's own); the known ones are listed so an editor offers them.
"""

from __future__ import annotations

from typing import Any

from service.language import fact_types, facts
from service.settings import Settings

# The purposes offered to complete: those of the setting CONSENT_DEFAULTS by default
# (`marketing`), so the schema does not depend on the environment it is generated in.
# Other purposes match the pattern; `validate` checks them against the setting.
_DEFAULT_PURPOSES = sorted(
    Settings.model_fields["consent_defaults"].get_default(call_default_factory=True)
)


def add_hints(schema: dict[str, Any]) -> dict[str, Any]:
    """The generated schema with the fact paths and the choice of file kind."""
    defs = schema["$defs"]
    defs["FactCondition"]["properties"] = {path: fact_schema(path) for path in known_paths()}
    kinds = schema.pop("anyOf")
    rule, segment = (k["$ref"] for k in kinds)
    # A file with `segment:` is a segment file; any other is a rule file.
    schema["if"] = {"required": ["segment"]}
    schema["then"] = {"$ref": segment}
    schema["else"] = {"$ref": rule}
    return schema


def known_paths() -> list[str]:
    paths = [f"event.{name}" for name in sorted(facts.EVENT_FACTS)]
    paths += [f"profile.{name}" for name in sorted(facts.PROFILE_FACTS)]
    paths += [f"profile.consent.{name}" for name in _DEFAULT_PURPOSES]
    paths += [f"profile.traits.{name}" for name in sorted(facts.STANDARD_TRAITS)]
    return paths


def fact_schema(path: str) -> dict[str, Any]:
    """What the fact at `path` may be compared with: a value (equality) or one operator.
    Facts of no declared kind take any comparison (the pattern's schema applies too)."""
    kind = fact_types.kind(path)
    if kind == "number":
        value: dict[str, Any] = {"type": "number"}
        operators = _operators(value, single=fact_types.SINGLE, listed=fact_types.LISTED)
        return {"anyOf": [value, operators]}
    if kind == "boolean":
        value = {"type": "boolean"}
        operators = _operators(value, single={"eq", "ne"}, listed=fact_types.LISTED)
        return {"anyOf": [value, operators]}
    if kind == "list":
        return _operators({"type": "string"}, single=fact_types.HOLDS, listed=frozenset())
    return {}


def _operators(value: dict[str, Any], *, single: Any, listed: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {name: value for name in sorted(single)}
    properties |= {
        name: {"type": "array", "items": value, "minItems": 1} for name in sorted(listed)
    }
    properties["exists"] = {"type": "boolean"}
    return {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
        "minProperties": 1,
        "maxProperties": 1,
    }
