"""`ledger controller add|set-policy|remove` and a policy that cannot be loaded (issue 12,
item 7): exact output; every refused change leaves ledger.toml byte for byte as it was; and
`decisions`/`sweep` name the controller whose policy is missing, and still work for the others
with `--controller`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli
from ledger.domain.retention.policy import MAX_POLICY_BYTES
from tests.conftest import make_event

SHIPPED = Path(cli.__file__).resolve().parent / "ledger" / "domain" / "retention" / "policies"
NOW = "2026-03-05"


def run(data: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, ["--data", str(data), "--now", NOW, *args], input=input,
                              catch_exceptions=False)


def expect(result: Result, code: int, stdout: str, stderr: str = "") -> None:
    assert (result.exit_code, result.stdout, result.stderr) == (code, stdout, stderr)


def acme_policy(path: Path) -> Path:
    text = (SHIPPED / "cowrite.toml").read_text(encoding="utf-8")
    path.write_text(text.replace('name = "cowrite"', 'name = "acme"'), encoding="utf-8")
    return path


def config_bytes(data: Path) -> bytes:
    return (data / "ledger.toml").read_bytes()


def test_add_validates_the_policy_and_records_a_path_absolute(
        data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acme_policy(tmp_path / "acme.toml")
    monkeypatch.chdir(tmp_path)
    expect(run(data_dir, "controller", "add", "acme", "--policy", "acme.toml"), 0,
           f"Added acme\tpolicy={tmp_path / 'acme.toml'}\n")
    expect(run(data_dir, "controller", "add", "acme", "--policy", str(tmp_path / "acme.toml"),
               "--json"), 0,
           json.dumps({"controller": "acme", "policy": str(tmp_path / "acme.toml"),
                       "added": False}, indent=2) + "\n")
    expect(run(data_dir, "controller", "add", "cowrite-se", "--policy", "cowrite", "--json"), 0,
           json.dumps({"controller": "cowrite-se", "policy": "cowrite", "added": True},
                      indent=2) + "\n")
    expect(run(data_dir, "controller", "add", "coegi"), 0, "Already present: coegi\tpolicy=coegi\n")
    expect(run(data_dir, "controller", "list"), 0,
           f"coegi\tpolicy=coegi\ncowrite\tpolicy=cowrite\nacme\tpolicy={tmp_path / 'acme.toml'}\n"
           "cowrite-se\tpolicy=cowrite\n")
    assert 'policy = "' + str(tmp_path / "acme.toml") + '"' in config_bytes(data_dir).decode()


def hostile(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """--policy value -> the error line (after "Error: --policy: ")."""
    (tmp_path / "dir.toml").mkdir()
    (tmp_path / "bad.toml").write_bytes(b'name = "\xff"\n')
    (tmp_path / "big.toml").write_bytes(b"#" * (MAX_POLICY_BYTES + 1))
    (tmp_path / "unk.toml").write_text('name = "x"\ninactive_after = "P1Y"\nbogus = 1\n',
                                       encoding="utf-8")
    up = "/".join([".."] * 12)
    return {
        "nosuch": ("nosuch", "unknown policy 'nosuch' (shipped: coegi, cowrite; or give a .toml path)"),
        "dir": (str(tmp_path / "dir.toml"), f"cannot read policy '{tmp_path}/dir.toml': it is a directory"),
        "non-utf8": (str(tmp_path / "bad.toml"), f"policy '{tmp_path}/bad.toml' is not UTF-8 text: not a policy file"),
        "oversize": (str(tmp_path / "big.toml"), f"policy '{tmp_path}/big.toml' is larger than 1024 KiB: not a policy file"),
        "unknown-key": (str(tmp_path / "unk.toml"), f"{tmp_path}/unk.toml: bogus: unknown key"),
        "traversal": (f"{tmp_path}/{up}/etc/passwd", "/etc/passwd: not valid TOML: Expected '=' after a key "
                      "in a key/value pair (at line 1, column 5)"),
        "missing": (str(tmp_path / "gone.toml"), f"cannot read policy '{tmp_path}/gone.toml': No such file or directory"),
    }


@pytest.mark.parametrize("case", ["nosuch", "dir", "non-utf8", "oversize", "unknown-key",
                                  "traversal", "missing"])
def test_add_and_set_policy_refuse_a_policy_that_cannot_be_used(
        data_dir: Path, tmp_path: Path, case: str) -> None:
    policy, error = hostile(tmp_path)[case]
    before = config_bytes(data_dir)
    expect(run(data_dir, "controller", "add", "acme", "--policy", policy), 2, "",
           f"Error: --policy: {error}\n")
    assert config_bytes(data_dir) == before
    expect(run(data_dir, "controller", "set-policy", "cowrite", policy), 2, "",
           f"Error: POLICY: {error}\n")
    assert config_bytes(data_dir) == before
    expect(run(data_dir, "controller", "list"), 0, "coegi\tpolicy=coegi\ncowrite\tpolicy=cowrite\n")


def test_every_refused_change_leaves_ledger_toml_unchanged(data_dir: Path, tmp_path: Path) -> None:
    before = config_bytes(data_dir)
    refusals = [
        (("controller", "add", "acme"),
         "Error: --policy: controller 'acme' has no shipped policy of its name: give --policy, "
         "a shipped policy (coegi, cowrite) or a policy TOML file\n"),
        (("controller", "add", "Bad Name!", "--policy", "cowrite"),
         "Error: invalid controller name 'Bad Name!': use 1-40 lower-case letters, digits, '_' "
         "or '-', starting with a letter\n"),
        (("controller", "add", "cowrite", "--policy", "coegi"),
         "Error: --policy: controller 'cowrite' exists with policy 'cowrite' (set-policy changes it)\n"),
        (("controller", "add", "acme", "--policy", "evil\npath.toml"),
         "Error: --policy: policy 'evil\\npath.toml': not a policy name or a file path\n"),
        (("controller", "set-policy", "nobody", "cowrite"), "Error: unknown controller 'nobody'\n"),
        (("controller", "remove", "nobody"), "Error: unknown controller 'nobody'\n"),
    ]
    for args, stderr in refusals:
        expect(run(data_dir, *args), 2, "", stderr)
        assert config_bytes(data_dir) == before, args


def test_set_policy_changes_it_atomically(data_dir: Path, tmp_path: Path) -> None:
    policy = acme_policy(tmp_path / "acme.toml")
    expect(run(data_dir, "controller", "set-policy", "coegi", str(policy)), 0,
           f"Set coegi\tpolicy={policy}\n")
    expect(run(data_dir, "controller", "set-policy", "coegi", "coegi", "--json"), 0,
           json.dumps({"controller": "coegi", "policy": "coegi"}, indent=2) + "\n")
    leftovers = sorted(p.name for p in data_dir.iterdir() if "ledger.toml" in p.name)
    assert leftovers == ["ledger.toml"]  # replaced by a rename: no temporary file left
    assert (os.stat(data_dir / "ledger.toml").st_mode & 0o777) == 0o600


def test_remove_is_refused_while_the_log_holds_the_controllers_events(data_dir: Path) -> None:
    expect(run(data_dir, "controller", "add", "acme", "--policy", "cowrite"), 0,
           "Added acme\tpolicy=cowrite\n")
    expect(run(data_dir, "controller", "add", "acme-two", "--policy", "coegi"), 0,
           "Added acme-two\tpolicy=coegi\n")
    published = run(data_dir, "publish", "-",
                    input=json.dumps(make_event(controller="acme-two")) + "\n")
    assert published.exit_code == 0, published.output
    before = config_bytes(data_dir)
    expect(run(data_dir, "controller", "remove", "acme-two"), 2, "",
           "Error: controller 'acme-two' cannot be removed: the log holds 1 of its event "
           "(kept as evidence)\n")
    assert config_bytes(data_dir) == before
    # "acme" is a prefix of "acme-two" and appears in its event's bytes: it holds none itself
    expect(run(data_dir, "controller", "remove", "acme", "--json"), 0,
           json.dumps({"controller": "acme", "policy": "cowrite", "removed": True}, indent=2) + "\n")
    expect(run(data_dir, "controller", "list"), 0,
           "coegi\tpolicy=coegi\ncowrite\tpolicy=cowrite\nacme-two\tpolicy=coegi\n")
    expect(run(data_dir, "controller", "remove", "acme"), 2, "", "Error: unknown controller 'acme'\n")


def test_init_refuses_a_controller_without_a_shipped_policy(tmp_path: Path) -> None:
    data = tmp_path / "new"
    expect(run(data, "init", "--controller", "cowrite", "--controller", "acme"), 2, "",
           "Error: --controller: 'acme' has no shipped policy of its name (shipped: coegi, "
           "cowrite): create the ledger with shipped ones, then add it with its policy file "
           "(controller add)\n")
    assert not data.exists()  # nothing half-made


MISSING = ("Error: controller 'acme': its policy '{p}' cannot be loaded (cannot read policy "
           "'{p}': No such file or directory): run `ledger controller set-policy acme POLICY`, "
           "or give --controller OTHER to work on the other controllers\n")


def test_decisions_and_sweep_name_the_controller_whose_policy_is_missing(
        data_dir: Path, tmp_path: Path) -> None:
    policy = acme_policy(tmp_path / "acme.toml")
    assert run(data_dir, "controller", "add", "acme", "--policy", str(policy)).exit_code == 0
    published = run(data_dir, "publish", "-", input=json.dumps(make_event()) + "\n")
    assert published.exit_code == 0, published.output
    policy.unlink()  # the file moved away after it was configured
    missing = MISSING.format(p=policy)
    expect(run(data_dir, "decisions"), 2, "", missing)
    expect(run(data_dir, "sweep", "--dry-run"), 2, "", missing)
    expect(run(data_dir, "sweep"), 2, "", missing)
    expect(run(data_dir, "decisions", "--controller", "acme"), 2, "", missing)
    # the other controllers still work, one at a time
    decided = run(data_dir, "decisions", "--controller", "cowrite", "--json")
    assert decided.exit_code == 0, decided.output
    assert [d["controller"] for d in json.loads(decided.stdout)] == ["cowrite"]
    swept = run(data_dir, "sweep", "--controller", "cowrite", "--json")
    assert swept.exit_code == 0, swept.output
    # a hand-edited ledger.toml naming a policy that does not exist: the same
    toml = (data_dir / "ledger.toml").read_text(encoding="utf-8")
    (data_dir / "ledger.toml").write_text(toml.replace(f'"{policy}"', '"nosuch"'), encoding="utf-8")
    expect(run(data_dir, "decisions", "--csv"), 2, "",
           "Error: controller 'acme': its policy 'nosuch' cannot be loaded (unknown policy "
           "'nosuch' (shipped: coegi, cowrite; or give a .toml path)): run `ledger controller "
           "set-policy acme POLICY`, or give --controller OTHER to work on the other controllers\n")
    # set-policy repairs it
    expect(run(data_dir, "controller", "set-policy", "acme", "cowrite"), 0, "Set acme\tpolicy=cowrite\n")
    assert run(data_dir, "decisions").exit_code == 0


def test_two_open_ledgers_each_add_a_controller_and_neither_is_lost(data_dir: Path) -> None:
    from ledger.app.service import Ledger

    with Ledger.open(data_dir) as first, Ledger.open(data_dir) as second:
        assert first.add_controller("acme", "cowrite")
        assert second.add_controller("beta", "coegi")  # re-reads ledger.toml under the lock
        assert second.set_policy("acme", "coegi") == "coegi"
    with Ledger.open(data_dir) as reopened:
        assert {c: v.policy for c, v in reopened.config.controllers.items()} == {
            "coegi": "coegi", "cowrite": "cowrite", "acme": "coegi", "beta": "coegi"}
