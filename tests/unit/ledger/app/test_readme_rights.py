"""The README's Python example of the rights API runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ledger import Ledger
from tests.conftest import make_event

README = (Path(__file__).resolve().parents[4] / "README.md").read_text(encoding="utf-8")


def test_the_rights_example_runs(ledger: Ledger) -> None:
    [example] = [block for block in re.findall(r"```python\n(.*?)```", README, re.DOTALL)
                 if "SubjectSelector" in block]
    ledger.record(make_event("SubjectRegistered", subject={"email": "anna.svensson@example.se"}))
    ledger.record(make_event("ConsentGiven", subject={"email": "anna.svensson@example.se"},
                             purpose="marketing"))
    names: dict[str, Any] = {"ledger": ledger}
    exec(compile(example, "README.md", "exec"), names)
    assert names["answer"].permitted
    assert names["extract"]["controller"] == "cowrite"
