"""Stopping an experiment is a change to its rule file: `stop:` set (or moved) under the
experiment, so it goes through validate, tests, deployment and rollback like any other
change, and the file says when it ended."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import yaml

from service.language.loader import load_source


class CannotStop(Exception):
    pass


@dataclass(frozen=True)
class Stopped:
    file: Path
    diff: str
    text: str


def stop_in_file(path: Path, *, key: str, at: datetime) -> Stopped | None:
    """The file's text with `stop: <at>` for experiment `key`; None when `key` is not
    declared in it. The edit keeps every other line as it was."""
    source = path.read_text()
    root = yaml.compose(source, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return None
    listed = next((v for k, v in root.value if k.value == "experiments"), None)
    if not isinstance(listed, yaml.SequenceNode):
        return None
    for item in listed.value:
        if not isinstance(item, yaml.MappingNode):
            continue
        fields = {k.value: (k, v) for k, v in item.value}
        if "key" not in fields or fields["key"][1].value != key:
            continue
        if item.flow_style:
            raise CannotStop(f"{path.name}: write experiment {key} in block style to stop it here")
        lines = source.splitlines(keepends=True)
        stamp = at.isoformat().replace("+00:00", "Z")
        if "stop" in fields:
            name, value = fields["stop"]
            row = name.start_mark.line
            if value.end_mark.line != row:
                raise CannotStop(f"{path.name}:{row + 1}: `stop:` spans lines; edit it by hand")
            indent = " " * name.start_mark.column
            lines[row] = f"{indent}stop: {stamp}\n"
        else:
            name, _ = fields["key"]
            row = name.start_mark.line
            indent = " " * name.start_mark.column
            lines.insert(row + 1, f"{indent}stop: {stamp}\n")
        text = "".join(lines)
        load_source(path.name, text)  # the edited file must still be valid (RulesInvalid)
        diff = "".join(
            difflib.unified_diff(
                source.splitlines(keepends=True),
                lines,
                fromfile=f"a/{path.name}",
                tofile=f"b/{path.name}",
            )
        )
        return Stopped(file=path, diff=diff, text=text)
    return None


def stop(directory: Path, *, key: str, at: datetime) -> Stopped:
    """Find the rule file declaring `key` and write its `stop:`; CannotStop if none does."""
    for path in sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml")):
        found = stop_in_file(path, key=key, at=at)
        if found is not None:
            path.write_text(found.text)
            return found
    raise CannotStop(f"no rule file in {directory} declares experiment {key!r}")
