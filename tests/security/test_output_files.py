"""Row 11 of issue 9: an output file (`subject export --out`, `audit digest --out`,
`audit report --html`) is written to a new private temporary file in the target directory and
renamed into place: an existing file is replaced only with --force (by a new inode, so whoever
holds the old one open never sees the plaintext) and never through a symbolic link."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tests.security.helpers import NOW, events_file, ledger, one_line_error

OTHER_UID = 65534  # nobody: stands for another local user where the tests may chown


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("out")
    data = root / "data"
    assert ledger("--data", str(data), "init").returncode == 0
    events = events_file(root / "in.jsonl", 3)
    assert ledger("--data", str(data), "--now", NOW, "publish", str(events)).returncode == 0
    assert ledger("--data", str(data), "project").returncode == 0
    return data


def export(data: Path, out: Path, *extra: str):  # type: ignore[no-untyped-def]
    return ledger("--data", str(data), "--now", NOW, "subject", "export", "--email",
                  "person0@example.se", "--controller", "cowrite", "--out", str(out), *extra)


def foreign_file(path: Path, text: str) -> Path:
    """A file 'another user' created in the target directory, readable by all."""
    path.write_text(text)
    path.chmod(0o644)
    if os.geteuid() == 0:
        os.chown(path, OTHER_UID, OTHER_UID)
    return path


def leftovers(directory: Path, *expected: str) -> set[str]:
    return {p.name for p in directory.iterdir()} - set(expected)


def test_row11_new_file_is_private(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "extract.json"
    result = export(data, out)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["personal_data"]["current"]["name"] == "Anna Svensson"
    assert leftovers(tmp_path, "extract.json") == set()


def test_row11_existing_file_is_refused_without_force(data: Path, tmp_path: Path) -> None:
    out = foreign_file(tmp_path / "extract.json", "planted")
    before = out.stat()
    result = export(data, out)
    assert result.returncode == 2
    assert "--force" in one_line_error(result)
    assert out.read_text() == "planted" and out.stat().st_ino == before.st_ino
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert leftovers(tmp_path, "extract.json") == set()


@pytest.mark.slow
@pytest.mark.parametrize("force", [False, True])
def test_row11_a_symlink_is_refused_even_with_force(data: Path, tmp_path: Path, force: bool) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = foreign_file(elsewhere / "victim.txt", "the victim's bytes")
    out = tmp_path / "extract.json"
    out.symlink_to(victim)
    result = export(data, out, *(["--force"] if force else []))
    assert result.returncode == 2
    assert "symbolic link" in one_line_error(result)
    assert victim.read_text() == "the victim's bytes"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert out.is_symlink()
    assert leftovers(tmp_path, "extract.json", "elsewhere") == set()


def test_row11_a_dangling_symlink_is_refused(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "extract.json"
    out.symlink_to(tmp_path / "created-through-the-link")
    result = export(data, out, "--force")
    assert result.returncode == 2 and "symbolic link" in one_line_error(result)
    assert not (tmp_path / "created-through-the-link").exists()


def test_row11_force_replaces_with_a_new_private_inode(data: Path, tmp_path: Path) -> None:
    out = foreign_file(tmp_path / "extract.json", "planted")
    old_inode = out.stat().st_ino
    with open(out, encoding="utf-8") as held:  # the other user keeps the old file open
        result = export(data, out, "--force")
        assert result.returncode == 0, result.stderr
        assert held.read() == "planted"  # they never see the extract
    st = out.lstat()
    assert stat.S_ISREG(st.st_mode) and st.st_ino != old_inode
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert json.loads(out.read_text())["subject"]
    assert leftovers(tmp_path, "extract.json") == set()


@pytest.fixture
def full_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A tiny tmpfs filled to the last byte (root only; skipped elsewhere)."""
    import subprocess

    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                            str(mount)], capture_output=True).returncode:
        pytest.skip("needs root to mount a tiny tmpfs")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"x" * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_row11_a_failed_write_leaves_no_temporary_file(data: Path, full_disk: Path) -> None:
    result = export(data, full_disk / "extract.json")
    assert result.returncode == 2
    one_line_error(result)
    assert leftovers(full_disk, "filler") == set()


def test_row11_audit_digest_out_uses_the_same_rules(data: Path, tmp_path: Path) -> None:
    out = foreign_file(tmp_path / "digest.json", "planted")
    refused = ledger("--data", str(data), "audit", "digest", "--out", str(out))
    assert refused.returncode == 2 and "--force" in one_line_error(refused)
    assert out.read_text() == "planted"
    forced = ledger("--data", str(data), "audit", "digest", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and json.loads(out.read_text())["size"] == 3
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "digest.json")
    linked = ledger("--data", str(data), "audit", "digest", "--out", str(link), "--force")
    assert linked.returncode == 2 and "symbolic link" in one_line_error(linked)


@pytest.mark.slow
def test_row11_audit_report_html_uses_the_same_rules(data: Path, tmp_path: Path) -> None:
    html = foreign_file(tmp_path / "report.html", "planted")
    args = ("--data", str(data), "--now", NOW, "audit", "report", "--email", "person0@example.se",
            "--controller", "cowrite", "--html", str(html))
    refused = ledger(*args)
    assert refused.returncode == 2 and "--force" in one_line_error(refused)
    assert html.read_text() == "planted"
    forced = ledger(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert stat.S_IMODE(html.stat().st_mode) == 0o600 and "<html" in html.read_text()
