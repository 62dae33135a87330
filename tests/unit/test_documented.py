"""Every command of the CLI is documented in the README (a test that fails when one is not)."""

from __future__ import annotations

import re
from pathlib import Path

import click

import cli

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        found.append(path)
        if isinstance(command, click.Group):
            found.extend(_commands(command, path))
    return found


def _documented(path: tuple[str, ...]) -> bool:
    """`ledger a b` literally, or inside an alternation such as `ledger audit verify\\|erasures`,
    or `ledger a` / `b` as the README's tables write sibling commands."""
    *parents, last = path
    head = r"ledger " + "".join(re.escape(p) + " " for p in parents)
    alternatives = r"(?:[\w-]+(?: [A-Z]+)?(?:\\\||`? / `))*"
    return bool(re.search(head + alternatives + re.escape(last) + r"(?![\w-])", README))


def test_every_command_is_in_the_readme() -> None:
    missing = [" ".join(p) for p in _commands(cli.main) if not _documented(p)]
    assert not missing, f"commands missing from README.md: {missing}"
