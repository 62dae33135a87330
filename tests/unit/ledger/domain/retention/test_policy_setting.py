"""A policy an operator names for a controller (issue 12, item 7): loaded and validated before
the configuration changes; a shipped name stays a name, a path is recorded absolute; what
ledger.toml records reads back exactly, whatever the path holds."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from ledger.config import ControllerConfig, LedgerConfig, config_text, toml_string
from ledger.domain.errors import ConfigError
from ledger.domain.retention.policy import (
    MAX_POLICY_BYTES,
    is_shipped,
    load_policy,
    policy_setting,
)

SHIPPED = Path(__file__).resolve().parents[5] / "ledger" / "domain" / "retention" / "policies"


def acme(tmp_path: Path, name: str = "acme.toml") -> Path:
    path = tmp_path / name
    text = (SHIPPED / "cowrite.toml").read_text(encoding="utf-8")
    path.write_text(text.replace('name = "cowrite"', 'name = "acme"'), encoding="utf-8")
    return path


def test_a_shipped_name_is_recorded_as_it_is() -> None:
    setting, policy = policy_setting("coegi")
    assert (setting, policy.name) == ("coegi", "coegi")
    assert is_shipped("cowrite") and not is_shipped("acme")


def test_a_relative_path_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    acme(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    setting, policy = policy_setting("../acme.toml")
    assert setting == str(tmp_path / "acme.toml") and os.path.isabs(setting)
    assert policy.name == "acme"


def test_a_shipped_name_wins_over_a_file_of_that_name(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "coegi").write_text("not = 'a policy'\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert policy_setting("coegi")[0] == "coegi"
    assert load_policy("coegi").name == "coegi"


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: "nosuch", "unknown policy 'nosuch' (shipped: coegi, cowrite"),
    (lambda d: str(d / "missing.toml"), "No such file or directory"),
    (lambda d: (d / "dir.toml").mkdir() or str(d / "dir.toml"), "it is a directory"),
    (lambda d: (d / "bad.toml").write_bytes(b"name = \"\xff\xfe\"\n") and str(d / "bad.toml"),
     "is not UTF-8 text"),
    (lambda d: (d / "big.toml").write_bytes(b"#" * (MAX_POLICY_BYTES + 1)) and str(d / "big.toml"),
     "is larger than 1024 KiB"),
    (lambda d: (d / "unk.toml").write_text('name = "x"\ninactive_after = "P1Y"\nbogus = 1\n')
     and str(d / "unk.toml"), "bogus: unknown key"),
    (lambda d: str(d / ".." / ".." / ".." / ".." / ".." / ".." / "etc" / "passwd"),
     "/etc/passwd: not valid TOML"),
    (lambda d: "/dev/null", "not a regular file"),
    (lambda d: "", "not a policy name or a file path"),
    (lambda d: "evil\nname.toml", "not a policy name or a file path"),
    (lambda d: "caf\udce9.toml", "the path is not UTF-8"),
])
def test_a_policy_that_cannot_be_used_is_refused(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        policy_setting(make(tmp_path))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("policy", [
    "/srv/a \"quoted\" path.toml", "C:\\policies\\acme.toml", "/srv/åäö/ümlaut.toml",
    "/srv/tab\there.toml", "/srv/del\x7f.toml", "/srv/[controllers.x]\npolicy = 'y'.toml",
])
def test_ledger_toml_reads_back_exactly_whatever_the_path_holds(policy: str) -> None:
    config = LedgerConfig({"acme": ControllerConfig("acme", policy)})
    back = tomllib.loads(config_text(config))
    assert back == {"controllers": {"acme": {"policy": policy}}}
    assert tomllib.loads(f"x = {toml_string(policy)}")["x"] == policy


def test_a_path_ledger_toml_cannot_hold_is_refused() -> None:
    config = LedgerConfig({"acme": ControllerConfig("acme", "/srv/caf\udce9.toml")})
    with pytest.raises(ConfigError, match=r"cannot be written to ledger\.toml"):
        config_text(config)
