"""Reading the docs' pages in tests: their YAML blocks and the commands they give."""

from __future__ import annotations

import re
from pathlib import Path


def yaml_blocks(page: Path) -> list[tuple[int, str]]:
    """Each ```yaml block of the page: its first line's number, its text."""
    found, lines = [], page.read_text().splitlines()
    start: int | None = None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```yaml":
            start = number
        elif start is not None and line.strip() == "```":
            found.append((start + 1, "\n".join(lines[start : number - 1]) + "\n"))
            start = None
    return found


def commands(page: Path) -> list[list[str]]:
    """`./dev …` and `personalize …` commands the page gives, as words up to a comment."""
    found = []
    for match in re.finditer(r"(?:\./dev|personalize) ([^`#\n]+)", page.read_text()):
        found.append(match.group(1).split())
    return found
