"""The sweep's signed checkpoint (issue 13 §2): a key named in ledger.toml makes every sweep
write DATA/checkpoints/<size>.checkpoint, which `audit verify --checkpoint --key` accepts and
`audit report` cites; through click's CliRunner, the whole stdout, stderr and exit code."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import cli
from ledger import config as cfg
from ledger.app import sweep_checkpoints
from ledger.domain.errors import StorageError
from tests.conftest import make_event

# The signer key of golang/mod sumdb/note/note_test.go (commit fe2ec04f), as in
# test_cli_checkpoints.py.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
LABEL = "PeterNeumann+c74f20a3"
EMAIL = "greta.lindqvist@example.se"


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.main, list(args), input=input)


def expect(result: Result, code: int, stdout: str, stderr: str = "") -> None:
    assert (result.exit_code, result.stdout, result.stderr) == (code, stdout, stderr)


@pytest.fixture
def data(tmp_path: Path) -> str:
    path = str(tmp_path / "d")
    assert run("--data", path, "init").exit_code == 0
    events = [make_event("ConsentGiven", subject={"email": EMAIL}), *(make_event("LoggedIn")
                                                                      for _ in range(5))]
    published = run("--data", path, "--now", "2026-03-05", "publish", "-",
                    input="".join(json.dumps(e) + "\n" for e in events))
    assert published.exit_code == 0, published.output
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "checkpoint.key"
    path.parent.mkdir(mode=0o700)
    path.write_text(PETER_SKEY + "\n")
    os.chmod(path, 0o600)
    return path


def configure(data: str, value: str) -> None:
    with open(Path(data) / cfg.CONFIG_FILE, "a", encoding="utf-8") as f:
        f.write(f'\n[audit]\ncheckpoint_key = "{value}"\n')


def size_and_root(data: str) -> tuple[int, bytes]:
    d = json.loads(run("--data", data, "audit", "digest").stdout)
    return d["size"], bytes.fromhex(d["merkle_root"])


def sweep(data: str, *args: str, now: str = "2026-03-06") -> Result:
    return run("--data", data, "--now", now, "sweep", *args)


def swept_lines(result: Result) -> list[str]:
    return result.stdout.splitlines()[:2]


def test_a_configured_key_makes_the_sweep_sign_a_checkpoint_verify_accepts(data: str, key: Path) -> None:
    configure(data, str(key))
    first = sweep(data)
    size, root = size_and_root(data)
    target = Path(data) / "checkpoints" / f"{size}.checkpoint"
    expect(first, 0, "\n".join(swept_lines(first)) + "\n"
           f"  checkpoint of {size:,} records signed by {LABEL} written to {target}\n")
    b64 = base64.b64encode(root).decode()
    note = target.read_text()
    assert note.startswith(f"PeterNeumann\n{size}\n{b64}\n\n— PeterNeumann ")
    assert os.stat(target).st_mode & 0o777 == 0o600
    assert os.stat(target.parent).st_mode & 0o777 == 0o700
    verified = run("--data", data, "audit", "verify", "--checkpoint", str(target), "--key", PETER_VKEY)
    assert verified.exit_code == 0, verified.output
    assert f"holds exactly the {size} records of the checkpoint of PeterNeumann signed by {LABEL}" \
        in verified.stdout
    # a second sweep at the same size writes nothing new, and says which file holds it
    mtime = os.stat(target).st_mtime_ns
    again = sweep(data, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["checkpoint"] == {
        "file": str(target), "size": size, "written": False, "signed_by": LABEL, "error": None}
    assert os.stat(target).st_mtime_ns == mtime and os.listdir(target.parent) == [target.name]
    text = sweep(data)
    assert text.stdout.endswith(f"  checkpoint of {size:,} records signed by {LABEL} already in "
                                f"{target}\n")


@pytest.mark.slow
def test_no_key_no_checkpoint(data: str) -> None:
    result = sweep(data, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"] is None
    assert not (Path(data) / "checkpoints").exists()
    text = sweep(data)
    assert text.exit_code == 0 and len(text.stdout.splitlines()) == 2 and "checkpoint" not in text.output


def test_a_dry_run_signs_nothing(data: str, key: Path) -> None:
    configure(data, str(key))
    result = sweep(data, "--dry-run", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["checkpoint"] is None
    assert not (Path(data) / "checkpoints").exists()


@pytest.mark.slow
def test_a_relative_key_path_is_from_the_data_directory(data: str, key: Path) -> None:
    configure(data, "../keys/checkpoint.key")
    result = sweep(data, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"]["written"] is True


@pytest.mark.parametrize("mode", [0o644, 0o640])
def test_a_key_others_can_read_is_refused_before_the_sweep(data: str, key: Path, mode: int) -> None:
    configure(data, str(key))
    os.chmod(key, mode)
    before = size_and_root(data)
    expect(sweep(data), 2, "", f"Error: ledger.toml audit.checkpoint_key: {key} is readable by "
                               f"other users (mode {mode:04o}); chmod 600 it\n")
    assert size_and_root(data) == before  # nothing swept
    assert not (Path(data) / "checkpoints").exists()


def test_a_missing_key_is_refused(data: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.key"
    configure(data, str(missing))
    expect(sweep(data), 2, "", f"Error: ledger.toml audit.checkpoint_key: {missing} does not exist\n")


@pytest.mark.slow
def test_a_failure_to_sign_keeps_the_sweep_and_the_next_sweep_signs(
        data: str, key: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(data, str(key))

    def full(*args: object, **kwargs: object) -> object:
        raise StorageError("writing checkpoint failed (No space left on device): the disk may be full")

    monkeypatch.setattr(sweep_checkpoints, "make_checkpoint", full)
    failed = sweep(data, now="2027-06-01")
    assert failed.exit_code == 1
    assert failed.stderr == ("checkpoint not signed: writing checkpoint failed (No space left on "
                             "device): the disk may be full; the sweep's effects stand, the next "
                             "sweep signs again\n")
    assert "appended: " in failed.stdout and "appended: nothing" not in failed.stdout
    size, _ = size_and_root(data)  # the sweep's events are in the log
    assert not (Path(data) / "checkpoints").exists() or not os.listdir(Path(data) / "checkpoints")
    monkeypatch.undo()
    retry = sweep(data, "--json", now="2027-06-01")
    assert retry.exit_code == 0, retry.output
    d = json.loads(retry.stdout)
    assert d["appended"] == {}  # nothing new was due: only the checkpoint was missing
    assert d["checkpoint"]["written"] is True and d["checkpoint"]["size"] == size


@pytest.mark.slow
def test_the_report_cites_the_checkpoint(data: str, key: Path, tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    args = ("--data", data, "--now", "2026-03-07", "audit", "report", "--email", EMAIL,
            "--controller", "cowrite", "--html", str(html), "--force")
    none = run(*args)
    assert none.exit_code == 0, none.output
    assert none.stdout.endswith(" chain intact)\n  no signed checkpoint covers it\n")
    assert "No signed checkpoint covers this report" in html.read_text()
    configure(data, str(key))
    assert sweep(data).exit_code == 0
    size, root = size_and_root(data)
    target = Path(data) / "checkpoints" / f"{size}.checkpoint"
    cited = run(*args)
    assert cited.exit_code == 0, cited.output
    assert cited.stdout.endswith(
        f" chain intact)\n  cites the checkpoint of {size:,} records of PeterNeumann signed by "
        f"{LABEL} ({target}): the log matches it\n")
    page = html.read_text()
    b64 = base64.b64encode(root).decode()
    for text in ("PeterNeumann", f"{size} records", b64, LABEL, "the log still holds exactly these records"):
        assert text in page
    as_json = run(*args, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["checkpoint"] == {
        "file": str(target), "origin": "PeterNeumann", "size": size, "root": b64,
        "merkle_root": root.hex(), "signed_by": [LABEL], "consistent": True}


@pytest.mark.slow
def test_the_report_ignores_a_checkpoint_the_key_did_not_sign(data: str, key: Path, tmp_path: Path) -> None:
    configure(data, str(key))
    assert sweep(data).exit_code == 0
    size, _ = size_and_root(data)
    target = Path(data) / "checkpoints" / f"{size}.checkpoint"
    target.write_text(target.read_text().replace("PeterNeumann\n", "Other\n", 1))  # tampered
    html = tmp_path / "r.html"
    result = run("--data", data, "--now", "2026-03-07", "audit", "report", "--email", EMAIL,
                 "--controller", "cowrite", "--html", str(html), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["checkpoint"] is None


def test_rewriting_the_configuration_keeps_the_checkpoint_key(data: str, key: Path) -> None:
    configure(data, str(key))
    cfg.write_config(Path(data), cfg.load_config(Path(data)))
    assert sweep_checkpoints.configured_key(Path(data)) == key
    assert "[audit]" in (Path(data) / cfg.CONFIG_FILE).read_text()
