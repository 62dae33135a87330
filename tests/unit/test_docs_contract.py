"""The user documentation keeps up with the code (each test fails when an entry goes missing):

- every event type of the schemas has its section and an example in docs/events.md, and every
  producer example there is accepted by intake;
- every key the policy loader accepts is in docs/policies.md, and its TOML examples load;
- every command and subcommand of the CLI has its section in docs/cli.md, with every option;
- every table of the projections file has its section in docs/projections.md;
- every page in docs/ is linked from README.md;
- README.md and docs/ link only inside the repository (every relative link and anchor
  resolves), refer to no module path that does not exist, and never to the specification the
  project was built from (it lives outside the repository)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import cli
from ledger.contracts.schemas import default_registry
from ledger.domain.intake import Intake
from ledger.domain.retention import policy as policy_module
from ledger.domain.retention.policy import parse_policy
from ledger.domain.timeutil import parse_timestamp
from ledger.domain.vocabulary import EVENT_TYPES, NOTICE_TYPES, SWEEP_TYPES

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def user_docs() -> list[Path]:
    return [README, *doc_files()]


def sections(text: str) -> dict[str, str]:
    """Heading text (without #, backticks kept) -> the text up to the next heading of the same
    or a higher level."""
    found: dict[str, str] = {}
    headings = [(m.start(), len(m[1]), m[2].strip()) for m in
                re.finditer(r"^(#{1,6}) (.+)$", text, re.M)]
    for i, (start, level, title) in enumerate(headings):
        end = next((s for s, lvl, _ in headings[i + 1:] if lvl <= level), len(text))
        found[title] = text[start:end]
    return found


# --- events --------------------------------------------------------------------------------


def schema_types() -> set[str]:
    """The event types of the Avro schema files (consent_ledger.TYPE.vN.avsc)."""
    names = {p.name.split(".")[1] for p in (ROOT / "schemas").glob("consent_ledger.*.v*.avsc")}
    assert names, "no schema files found"
    return names


def json_examples(text: str) -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.S)]


def missing_event_types(text: str) -> list[str]:
    titles = set(sections(text))
    return sorted(t for t in schema_types() | set(EVENT_TYPES) if f"`{t}`" not in titles)


def test_every_event_type_has_its_section_in_events_md() -> None:
    assert missing_event_types(read(DOCS / "events.md")) == []


def test_every_event_type_has_an_example_in_events_md() -> None:
    shown = {e.get("type") for e in json_examples(read(DOCS / "events.md"))}
    assert sorted(schema_types() - shown) == []


def test_every_producer_example_in_events_md_is_accepted() -> None:
    examples = [e for e in json_examples(read(DOCS / "events.md")) if isinstance(e.get("subject"), dict)]
    assert {e["type"] for e in examples} == set(EVENT_TYPES) - SWEEP_TYPES - NOTICE_TYPES
    controllers = {e["controller"] for e in examples}
    intake = Intake(default_registry(), controllers)
    now = max(parse_timestamp(e["occurred_at"]) for e in examples)
    ids = [intake.validate(e, now).event_id for e in examples]  # raises InvalidEvent if not
    assert len(set(ids)) == len(ids), "two examples share an event id"


def test_the_section_check_sees_a_missing_type() -> None:
    text = read(DOCS / "events.md").replace("### `LoggedIn`", "### Logins")
    assert missing_event_types(text) == ["LoggedIn"]


# --- policies ------------------------------------------------------------------------------


def loader_keys() -> set[str]:
    """Every key ``parse_policy`` reads: its set of known top-level keys and each key name
    it passes to ``_get`` / ``_duration`` (those of the sub-tables included)."""
    tree = ast.parse(Path(policy_module.__file__).read_text(encoding="utf-8"))
    parse = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "parse_policy")
    keys: set[str] = set()
    for node in ast.walk(parse):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "known"
                                                for t in node.targets):
            keys |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant)}
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id in ("_get", "_duration") and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)):
            keys.add(node.args[1].value)
    return keys


def undocumented_keys(text: str) -> list[str]:
    return sorted(k for k in loader_keys() if not re.search(rf"`(?:[\w.]+\.)?{re.escape(k)}`", text))


def test_the_loader_keys_are_found() -> None:
    keys = loader_keys()
    assert {"name", "inactive_after", "dead_letter_retention", "action", "pseudonymise_for",
            "categories", "keep_for", "counted_from"} <= keys


def test_every_policy_key_is_in_policies_md() -> None:
    assert undocumented_keys(read(DOCS / "policies.md")) == []


def test_the_policy_check_sees_a_missing_key() -> None:
    text = read(DOCS / "policies.md").replace("counted_from", "counted")
    assert undocumented_keys(text) == ["counted_from"]


def test_the_toml_examples_in_policies_md_load() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", read(DOCS / "policies.md"), re.S)
    assert blocks
    for block in blocks:
        parse_policy(block, "docs/policies.md")


# --- the command line ----------------------------------------------------------------------


def commands(group: click.Group = cli.main, prefix: tuple[str, ...] = ()
             ) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


def cli_gaps(text: str) -> list[str]:
    """Commands without a `### \\`ledger ...\\`` section in docs/cli.md, and options missing
    from the option table of their command's section."""
    found = sections(text)
    gaps = []
    for path, command in commands():
        title = f"`ledger {' '.join(path)}`"
        if title not in found:
            gaps.append(f"ledger {' '.join(path)}")
            continue
        section = found[title]
        for param in command.params:
            if isinstance(param, click.Option) and param.name != "help":
                for opt in param.opts:
                    if not re.search(rf"^\|[^|\n]*`{re.escape(opt)}[` ]", section, re.M):
                        gaps.append(f"ledger {' '.join(path)} {opt}")
    root = found.get("`ledger` (global options)", "")
    for param in cli.main.params:
        if isinstance(param, click.Option) and param.name != "help":
            gaps += [f"ledger {opt}" for opt in param.opts
                     if not re.search(rf"^\|[^|\n]*`{re.escape(opt)}[` ]", root, re.M)]
    return gaps


def test_every_command_and_option_is_in_cli_md() -> None:
    assert cli_gaps(read(DOCS / "cli.md")) == []


def test_the_cli_check_sees_a_missing_command_and_option() -> None:
    text = read(DOCS / "cli.md")
    text = text.replace("### `ledger audit erasures`", "### audit erasures")
    text = text.replace("| `--dry-run` | Show what is due", "| `--dry` | Show what is due")
    assert cli_gaps(text) == ["ledger audit erasures", "ledger sweep --dry-run"]


# --- the projection tables ---------------------------------------------------------------


def table_gaps(text: str) -> list[str]:
    """Tables of the projections file without a section in docs/projections.md, and sections
    under its "Tables" heading that name no table."""
    from projections.store.duckdb_store import TABLES
    from projections.store.permissions_table import TABLE as PERMISSIONS

    # permissions is created by `project --permissions`, not by the projector's fold
    names = {t.name for t in TABLES} | {PERMISSIONS}
    tables = sections(text).get("Tables", "")
    documented = set(re.findall(r"^### `(\w+)`", tables, re.M))
    return sorted(f"missing: {n}" for n in names - documented) + sorted(
        f"not a table: {n}" for n in documented - names)


def test_every_table_is_in_projections_md() -> None:
    assert table_gaps(read(DOCS / "projections.md")) == []


def test_the_table_check_sees_a_missing_and_an_unknown_table() -> None:
    text = read(DOCS / "projections.md").replace("### `disclosures`", "### `disclosure_log`")
    assert table_gaps(text) == ["missing: disclosures", "not a table: disclosure_log"]


# --- links ---------------------------------------------------------------------------------


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def links(text: str) -> list[str]:
    return LINK.findall(re.sub(r"```.*?```", "", text, flags=re.S))


def unlinked_docs(readme: str) -> list[str]:
    targets = {t.split("#")[0] for t in links(readme)}
    return [p.relative_to(ROOT).as_posix() for p in doc_files()
            if p.relative_to(ROOT).as_posix() not in targets]


def test_every_doc_is_linked_from_the_readme() -> None:
    assert unlinked_docs(read(README)) == []


def test_the_readme_check_sees_a_missing_link() -> None:
    readme = read(README).replace("(docs/policies.md)", "(policies)")
    assert unlinked_docs(readme) == ["docs/policies.md"]


def slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(t) for t in sections(read(path))}


def bad_links(path: Path, text: str) -> list[str]:
    bad = []
    for target in links(text):
        where, _, anchor = target.partition("#")
        if re.match(r"[a-z][a-z0-9+.-]*:", where):
            bad.append(f"{target}: a link outside the repository")
            continue
        file = (path.parent / where).resolve() if where else path
        if not file.is_relative_to(ROOT) or not file.exists():
            bad.append(f"{target}: no such file in the repository")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            bad.append(f"{target}: no such heading")
    return bad


@pytest.mark.parametrize("path", user_docs(), ids=lambda p: p.name)
def test_links_stay_inside_the_repository_and_resolve(path: Path) -> None:
    assert bad_links(path, read(path)) == []


def test_the_link_check_sees_bad_links() -> None:
    text = ("[a](https://example.com) [b](../shared/SPEC.md) [c](docs/nowhere.md) "
            "[d](docs/events.md#no-such-heading) [e](docs/events.md#rejected-events)")
    assert bad_links(README, text) == [
        "https://example.com: a link outside the repository",
        "../shared/SPEC.md: no such file in the repository",
        "docs/nowhere.md: no such file in the repository",
        "docs/events.md#no-such-heading: no such heading",
    ]


SPEC_REFERENCES = re.compile(r"\.\./shared|shared/(?:SPEC|seeds)|SPEC\.md|\bSPEC\b|§")


@pytest.mark.parametrize("path", user_docs(), ids=lambda p: p.name)
def test_no_reference_to_the_specification(path: Path) -> None:
    found = [m[0] for m in SPEC_REFERENCES.finditer(read(path))]
    assert found == [], f"{path.name} refers to the specification outside the repository"


def test_the_specification_check_sees_references() -> None:
    text = "see ../shared/SPEC.md, SPEC §5 and /work/shared/seeds/"
    assert [m[0] for m in SPEC_REFERENCES.finditer(text)] == [
        "../shared", "SPEC.md", "SPEC", "§", "shared/seeds"]


# --- module paths --------------------------------------------------------------------------


PATH = re.compile(r"(?<![\w./-])((?:ledger|projections|schemas|tests|bench)/[\w./*-]*[\w*])")
MODULE = re.compile(r"(?<![\w.])((?:ledger|projections)(?:\.\w+)+)")
BARE_FILE = re.compile(r"(?<![\w/.-])([a-z_][a-z0-9_]*\.py)\b")  # a module named without its folder
GENERATED = frozenset({"bench/out"})  # made by the benchmarks, not in the repository
# Dotted names in inline code that are not modules: Kafka topics and headers, the data
# directory's files, and method calls on a variable named ``ledger``.
NOT_MODULES = frozenset({
    "ledger.events", "ledger.rejected", "ledger.digest", "ledger.chain", "ledger.reason",
    "ledger.source", "ledger.source.key", "ledger.source.timestamp", "ledger.toml",
    "projections.duckdb", "projections.md", "ledger.record", "ledger.record_many",
    "ledger.permits", "ledger.export_subject", "ledger.subject_id",
})


def resolves(dotted: str) -> bool:
    """A module, or an attribute of one (``ledger.domain.vocabulary.RELATIONSHIP_STARTS``)."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            obj: object = importlib.import_module(name)
            for attr in parts[i:]:
                if not hasattr(obj, attr):
                    return False
                obj = getattr(obj, attr)
            return True
    return False


def stale_paths(text: str) -> list[str]:
    stale = [p for p in PATH.findall(text) if p not in GENERATED
             and not (list(ROOT.glob(p)) if "*" in p else (ROOT / p).exists())]
    known_files = {f.name for folder in ("ledger", "projections", "tests", "bench")
                   for f in (ROOT / folder).rglob("*.py")} | {"cli.py"}
    stale += [name for name in BARE_FILE.findall(text) if name not in known_files]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for span in re.findall(r"`([^`\n]+)`", prose):
        stale += [m for m in MODULE.findall(span)
                  if m not in NOT_MODULES and not m.startswith("projections.ledger.") and not resolves(m)]
    return sorted(set(stale))


@pytest.mark.parametrize("path", user_docs(), ids=lambda p: p.name)
def test_every_module_path_in_the_docs_exists(path: Path) -> None:
    assert stale_paths(read(path)) == []


def test_the_path_check_sees_old_paths() -> None:
    text = ("`ledger/service.py`, `projections/sweep.py`, `ledger/domain/intake.py`, "
            "`ledger.domain.vocabulary.RELATIONSHIP_STARTS`, `ledger.app.service.Nothing`, "
            "`schemas/*.avsc`, `ledger.events` (a Kafka topic), `ledger.vault.seal`, "
            "`projections.fold`, `sweep.py`, `vault.py` and in a code block:\n```\n"
            "ledger.service.Ledger\n```")
    assert stale_paths(text) == ["ledger.app.service.Nothing", "ledger.vault.seal",
                                 "ledger/service.py", "projections.fold", "projections/sweep.py",
                                 "vault.py"]
