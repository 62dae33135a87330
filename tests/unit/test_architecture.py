"""The layers, read from the imports (``ast``; imports inside functions and under
``TYPE_CHECKING`` count as much as those at the top):

    ledger/domain      pure: no adapter, no I/O library, nothing above it
    ledger/contracts   schemas and the codec: the domain and nothing above
    ledger/ports.py    the ports: the domain and the contracts
    ledger/adapters    behind the ports: never the application layer
    ledger/app         the only layer that uses both the write side and the read side
    projections/       the read side: never the application layer
    ledger/http        the HTTP entry point: the application layer and the bootstrap only,
                       imported by cli.py alone; the only user of the web libraries
    cli.py             imported by nothing

and the module graph has no cycle. DuckDB is imported only by the projection engine and the
read-side store."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "projections")
LIBRARIES = ("duckdb", "sqlite3", "kafka", "click", "confluent_kafka", "uvicorn", "fastapi",
             "starlette", "prometheus_client")
HTTP_LIBRARIES = ("uvicorn", "fastapi", "starlette", "prometheus_client")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    files = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}
    files["cli"] = ROOT / "cli.py"
    return files


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """Every module ``name`` imports: project modules by their full name (``from ledger.domain
    import merkle`` imports ``ledger.domain.merkle``), libraries by their top-level name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            top = target.split(".")[0]
            if top in (*PACKAGES, "cli"):
                yield target
            elif top in LIBRARIES:
                yield top


def graph() -> dict[str, set[str]]:
    files = source_files()
    known = set(files)
    return {name: set(imports_of(name, path, known)) for name, path in files.items()}


def in_layer(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


# (importing layer, forbidden import, why)
RULES = [
    *[("ledger.domain", forbidden, "the domain is pure")
      for forbidden in ("ledger.adapters", "ledger.app", "ledger.bootstrap", "ledger.config",
                        "ledger.ports", "ledger.demo", "projections", "cli", *LIBRARIES)],
    *[("ledger.contracts", forbidden, "the contracts sit just above the domain")
      for forbidden in ("ledger.adapters", "ledger.app", "ledger.bootstrap", "ledger.ports",
                        "projections", "cli", *LIBRARIES)],
    *[("ledger.ports", forbidden, "the ports name no adapter")
      for forbidden in ("ledger.adapters", "ledger.app", "ledger.bootstrap", "projections",
                        *LIBRARIES)],
    ("ledger.adapters", "ledger.app", "adapters sit below the application layer"),
    ("ledger.adapters", "ledger.bootstrap", "adapters are chosen by the bootstrap, not the reverse"),
    ("ledger.adapters", "projections", "the write side's adapters do not read projections"),
    ("projections", "ledger.app", "the read side never imports the application layer"),
    ("projections", "ledger.bootstrap", "the read side is handed its adapters"),
    ("projections", "ledger.demo", "the read side knows no demo"),
    ("ledger.http", "ledger.adapters", "the HTTP API calls the application layer, not adapters"),
    ("ledger.http", "projections", "the HTTP API calls the application layer, not the read side"),
]


def violations(imports: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(imports.items()):
        for target in sorted(targets):
            if target == "cli":
                found.append(f"{module} imports cli: nothing imports the command line")
            if in_layer(target, "ledger.http") and module != "cli" \
                    and not in_layer(module, "ledger.http"):
                found.append(f"{module} imports {target}: only cli.py starts the HTTP service")
            if target in HTTP_LIBRARIES and not in_layer(module, "ledger.http"):
                found.append(f"{module} imports {target}: only ledger/http uses the web stack")
            if target == "duckdb" and not (in_layer(module, "projections.engine")
                                           or in_layer(module, "projections.store")):
                found.append(f"{module} imports duckdb: only the projection engine and the "
                             "read-side store do")
            for layer, forbidden, why in RULES:
                if in_layer(module, layer) and in_layer(target, forbidden):
                    found.append(f"{module} imports {target}: {why}")
    return found


def cycles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles (each strongly connected component of more than one module, or a
    module importing itself), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in imports.get(v, ()):
            if w not in imports:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in imports.get(v, ()):
                found.append(sorted(component))

    for v in sorted(imports):
        if v not in index:
            visit(v)
    return found


def test_the_layers_hold() -> None:
    assert violations(graph()) == []


def test_the_module_graph_has_no_cycle() -> None:
    assert cycles(graph()) == []


def test_the_checks_see_what_they_forbid() -> None:
    """The rules and the cycle finder themselves, on a made-up graph."""
    imports = {
        "ledger.domain.a": {"duckdb", "ledger.adapters.x"},
        "ledger.adapters.x": {"ledger.app.y"},
        "ledger.app.y": {"ledger.domain.a"},
        "projections.engine.p": {"duckdb", "ledger.app.y"},
        "projections.q": {"duckdb", "cli"},
        "ledger.http.app": {"ledger.adapters.x", "projections.q", "fastapi"},
        "ledger.app.z": {"ledger.http.app", "uvicorn"},
    }
    assert violations(imports) == [
        "ledger.adapters.x imports ledger.app.y: adapters sit below the application layer",
        "ledger.app.z imports ledger.http.app: only cli.py starts the HTTP service",
        "ledger.app.z imports uvicorn: only ledger/http uses the web stack",
        "ledger.domain.a imports duckdb: only the projection engine and the read-side store do",
        "ledger.domain.a imports duckdb: the domain is pure",
        "ledger.domain.a imports ledger.adapters.x: the domain is pure",
        "ledger.http.app imports ledger.adapters.x: the HTTP API calls the application layer, "
        "not adapters",
        "ledger.http.app imports projections.q: the HTTP API calls the application layer, not "
        "the read side",
        "projections.engine.p imports ledger.app.y: the read side never imports the "
        "application layer",
        "projections.q imports cli: nothing imports the command line",
        "projections.q imports duckdb: only the projection engine and the read-side store do",
    ]
    assert cycles(imports) == [["ledger.adapters.x", "ledger.app.y", "ledger.domain.a"]]


@pytest.mark.parametrize("source, expected", [
    ("import duckdb", {"duckdb"}),
    ("def f():\n    from ledger.domain import merkle", {"ledger.domain.merkle"}),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ledger.app.service import Ledger",
     {"ledger.app.service"}),
    ("from . import rules", {"ledger.domain.retention.rules"}),
    ("from ..errors import LedgerError", {"ledger.domain.errors"}),
])
def test_every_kind_of_import_is_seen(tmp_path: Path, source: str, expected: set[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "ledger" / "domain" / "retention" / "scratch.py"
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    known = {"ledger.domain.merkle", "ledger.domain.retention.rules"}
    assert set(imports_of("ledger.domain.retention.scratch", path, known)) == expected
