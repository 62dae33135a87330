"""Signed notes and checkpoints against the published vectors of the reference
implementation and of the C2SP specifications, and a table of hostile inputs.

Vectors, copied as data from:

- golang/mod, sumdb/note/note_test.go at commit fe2ec04f7c3c3aa6fad97631aafcff6e49e2d1db
  (TestNewVerifier, TestNewSigner, TestSign, TestOpen: the PeterNeumann and EnochRoot keys and
  signed notes);
- golang/mod, sumdb/client_test.go at the same commit (the localhost.localdev/sumdb key pair
  and its signed tree note of size 6);
- golang/mod, sumdb/tlog/note_test.go at the same commit (TestFormatTree, TestParseTree);
- C2SP/C2SP, signed-note.md and tlog-checkpoint.md at commit
  5ba5ee830903e91240fc6f9f3a7a9293d49e69c9 (the example.com/foo verifier key and note, the
  example.com/behind-the-sofa checkpoint).

Ed25519 is deterministic, so signing the same text with the same key must give the very
bytes the Go package gives."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import merkle
from ledger.domain.checkpoint import Checkpoint, parse_checkpoint, read_checkpoint
from ledger.domain.signed_note import (
    MAX_NOTE_BYTES,
    NoteError,
    NoteNotVerified,
    Signature,
    SignerKey,
    VerifierKey,
    key_id,
    open_note,
    parse_note,
    sign_note,
)

# golang/mod sumdb/note/note_test.go -------------------------------------------------------
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = ("If you think cryptography is the answer to your problem,\n"
        "then you don't know what your problem is.\n")
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
             "qdngotpRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01o"
             "OTGwnWLox33WWd1RvMc+QQ=\n")

# golang/mod sumdb/client_test.go ----------------------------------------------------------
SUMDB_SKEY = "PRIVATE+KEY+localhost.localdev/sumdb+00000c67+AXu6+oaVaOYuQOFrf1V59JK1owcFlJcHwwXHDfDGxSPk"
SUMDB_VKEY = "localhost.localdev/sumdb+00000c67+AcTrnkbUA+TU4heY3hkjiSES/DSQniBqIeQ/YppAUtK6"
SUMDB_TREE = "go.sum database tree\n6\nwc4SkQt52o5W2nQ8To2ARs+mWuUJjss+sdleoiqxMmM=\n"
SUMDB_SIG = ("\u2014 localhost.localdev/sumdb AAAMZ6oRNswlEZ6ZZhxrCvgl1MBy+nusq4JU+TG6Fe2NihWLqOzb+y2c2kz"
             "RLoCr4tvw9o36ucQEnhc20e4nA4Qc/wc=\n")

# C2SP signed-note.md and tlog-checkpoint.md -----------------------------------------------
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = ("This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6"
             "TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")
C2SP_CHECKPOINT = ("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
                   "\n\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URY"
                   "N7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n")


def test_the_go_key_pair_parses_and_matches() -> None:
    signer = SignerKey.parse(PETER_SKEY)
    verifier = VerifierKey.parse(PETER_VKEY)
    assert (signer.name, signer.key_id) == ("PeterNeumann", 0xC74F20A3)
    assert signer.verifier() == verifier
    assert signer.encode() == PETER_SKEY and verifier.encode() == PETER_VKEY
    assert key_id("PeterNeumann", verifier.public_key) == 0xC74F20A3
    assert "AYEK" not in repr(signer)  # the seed never shows


def test_signing_gives_the_go_bytes() -> None:
    assert sign_note(TEXT, [SignerKey.parse(PETER_SKEY)]) == (TEXT + "\n" + PETER_SIG).encode()
    # a signer signing again replaces its old signature (Go's TestSign)
    old = Signature("PeterNeumann", 0xC74F20A3, b"stale signature")
    assert sign_note(TEXT, [SignerKey.parse(PETER_SKEY)], keep=[old]) == (TEXT + "\n" + PETER_SIG).encode()


def test_the_sumdb_tree_note_is_reproduced_and_verifies() -> None:
    signer = SignerKey.parse(SUMDB_SKEY)  # its base64 holds '+': only the first ones split
    assert signer.verifier().encode() == SUMDB_VKEY
    signed = Checkpoint("go.sum database tree", 6,
                        base64.b64decode("wc4SkQt52o5W2nQ8To2ARs+mWuUJjss+sdleoiqxMmM=")).sign([signer])
    assert signed == (SUMDB_TREE + "\n" + SUMDB_SIG).encode()
    read = read_checkpoint(signed, [VerifierKey.parse(SUMDB_VKEY)])
    assert (read.size, read.checkpoint.origin) == (6, "go.sum database tree")
    assert [s.label for s in read.verified] == ["localhost.localdev/sumdb+00000c67"]


def test_open_with_one_two_and_no_known_keys() -> None:
    msg = (TEXT + "\n" + PETER_SIG + ENOCH_SIG).encode()
    peter, enoch = VerifierKey.parse(PETER_VKEY), VerifierKey.parse(ENOCH_VKEY)
    one = open_note(msg, [peter])
    assert one.text == TEXT
    assert [s.label for s in one.verified] == ["PeterNeumann+c74f20a3"]
    assert [s.label for s in one.unverified] == ["EnochRoot+af0cfe78"]
    both = open_note(msg, [peter, enoch])
    assert [s.label for s in both.verified] == ["PeterNeumann+c74f20a3", "EnochRoot+af0cfe78"]
    assert both.unverified == ()
    other = SignerKey.generate("PeterNeumann").verifier()  # same name, another key
    with pytest.raises(NoteNotVerified, match=r"not signed by PeterNeumann\+[0-9a-f]{8}; signed "
                                              r"only by PeterNeumann\+c74f20a3, EnochRoot"):
        open_note(msg, [other])


def test_an_altered_signature_by_a_known_key_fails() -> None:
    msg = (TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]).encode()
    with pytest.raises(NoteNotVerified, match="the signature by PeterNeumann\\+c74f20a3 does not verify"):
        open_note(msg, [VerifierKey.parse(PETER_VKEY)])
    changed = (TEXT.replace("answer", "Answer") + "\n" + PETER_SIG).encode()
    with pytest.raises(NoteNotVerified, match="does not verify"):
        open_note(changed, [VerifierKey.parse(PETER_VKEY)])


@pytest.mark.parametrize("msg", [  # Go's TestOpen badMsgs
    TEXT,
    TEXT + "\n",
    TEXT + "\n" + PETER_SIG[:-1],
    "\x01" + TEXT + "\n" + PETER_SIG,
    "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
    TEXT + "\n" + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n",
    TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
])
def test_go_malformed_notes_are_refused(msg: str) -> None:
    with pytest.raises(NoteError):
        parse_note(msg.encode())
    with pytest.raises(NoteError):
        parse_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode())


def _manglings(key: str) -> list[str]:
    """Every proper substring and every one-byte increment, as Go's key tests try."""
    b = key.encode()
    subs = {b[i:j] for i in range(len(b) + 1) for j in range(i + 1, len(b) + 1)
            if (i, j) != (0, len(b))}
    bumped = {b[:i] + bytes([(b[i] + 1) % 256]) + b[i + 1:] for i in range(len(b))}
    return [m.decode("utf-8", "replace") for m in sorted(subs | bumped)]


def test_mangled_verifier_keys_are_refused() -> None:
    accepted = []
    for text in _manglings(PETER_VKEY):
        try:
            VerifierKey.parse(text)
        except NoteError:
            continue
        accepted.append(text)
    assert accepted == []
    # Go's: a wrong-length key and an unknown algorithm, each with an adjusted key id
    with pytest.raises(NoteError):
        VerifierKey.parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with pytest.raises(NoteError, match="unknown signature type 0x65"):
        VerifierKey.parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")


def test_mangled_signer_keys_are_refused() -> None:
    accepted = []
    for text in _manglings(PETER_SKEY):
        try:
            SignerKey.parse(text)
        except NoteError:
            continue
        accepted.append(text)
    assert accepted == []


def test_keys_in_the_wrong_place_say_so() -> None:
    with pytest.raises(NoteError, match="private signer key"):
        VerifierKey.parse(PETER_SKEY)
    with pytest.raises(NoteError, match="not a signer key"):
        SignerKey.parse(PETER_VKEY)


def test_the_c2sp_examples() -> None:
    opened = open_note(C2SP_NOTE.encode(), [VerifierKey.parse(C2SP_VKEY)])
    assert opened.text == "This is an example message.\n"
    read = read_checkpoint(C2SP_CHECKPOINT.encode())  # its key is not published: unverified
    assert read.checkpoint == Checkpoint(
        "example.com/behind-the-sofa", 20852163,
        base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="))
    assert read.verified == () and [s.name for s in read.unverified] == ["example.com/behind-the-sofa"]
    assert read.checkpoint.text() + "\n" + read.unverified[0].line() == C2SP_CHECKPOINT
    with pytest.raises(NoteNotVerified, match=r"signed only by example\.com/behind-the-sofa"):
        read_checkpoint(C2SP_CHECKPOINT.encode(), [VerifierKey.parse(C2SP_VKEY)])


def test_the_go_tree_note_format() -> None:  # golang/mod sumdb/tlog TestFormatTree
    golden = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"
    tree = Checkpoint("go.sum database tree", 123456789012, merkle.leaf_hash(b"hello world"))
    assert tree.text() == golden
    assert parse_checkpoint(golden) == tree
    for bad in ("go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
                "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n"):
        with pytest.raises(NoteError):
            parse_checkpoint(bad)


def test_a_witness_cosignature_is_ignored_and_kept() -> None:
    log, witness = SignerKey.generate("example.se/log"), SignerKey.generate("witness.example/w1")
    checkpoint = Checkpoint("example.se/log", 3, merkle.EMPTY_ROOT)
    signed = checkpoint.sign([log])
    cosigned = checkpoint.sign([witness], keep=parse_note(signed).signatures)
    read = read_checkpoint(cosigned, [log.verifier()])
    assert [s.name for s in read.verified] == ["example.se/log"]
    assert [s.name for s in read.unverified] == ["witness.example/w1"]
    assert read_checkpoint(cosigned, [witness.verifier()]).verified[0].name == "witness.example/w1"


# Hostile input ------------------------------------------------------------------------------
KEY = SignerKey.parse(PETER_SKEY)
GOOD = Checkpoint("example.se/log", 12, bytes(range(32))).sign([KEY])
GOOD_TEXT = GOOD.decode()
SIG_LINE = GOOD_TEXT.split("\n\n")[1]


def _non_canonical(raw: bytes) -> str:
    """``raw`` in base64 with the unused low bits of the last character set: it decodes to
    the same bytes, but is not the one spelling the standard allows."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    text = base64.b64encode(raw).decode()
    body = text.rstrip("=")
    bumped = body[:-1] + alphabet[alphabet.index(body[-1]) + 1] + text[len(body):]
    assert base64.b64decode(bumped) == raw and bumped != text
    return bumped


def _with(body: str) -> bytes:
    return (body + "\n" + SIG_LINE).encode()


HOSTILE: list[tuple[str, bytes, str]] = [
    ("CRLF line ends", GOOD_TEXT.replace("\n", "\r\n").encode(), "carriage return on line 1"),
    ("no blank line", GOOD_TEXT.replace("\n\n", "\n").encode(), "not signed"),
    ("no signature after the blank line", GOOD_TEXT.split("\u2014")[0].encode(),
     "no signature lines after the blank line"),
    ("signature line without newline", GOOD[:-1], "does not end with a newline"),
    ("not UTF-8", GOOD.replace(b"example", b"ex\xffmple", 1), "not UTF-8 (byte 2)"),
    ("byte-order mark", b"\xef\xbb\xbf" + GOOD, "byte-order mark"),
    ("NUL byte", GOOD.replace(b"log", b"l\x00g", 1), "control character U+0000 on line 1"),
    ("tab", GOOD.replace(b"log", b"l\tg", 1), "control character U+0009 on line 1"),
    ("oversize", GOOD + b"x" * MAX_NOTE_BYTES, "larger than 65,536 bytes"),
    ("bad base64 signature", GOOD.replace(SIG_LINE[-10:-1].encode(), b"!!!!!!!!!"), "not base64"),
    ("non-canonical base64", _with("example.se/log\n12\n" + _non_canonical(bytes(range(32))) + "\n"),
     "root hash (line 3) is not canonical base64"),
    ("hyphen for em dash", GOOD.replace("\u2014".encode(), b"--"), "is not a signature line"),
    ("name with a plus", GOOD.replace(b"\xe2\x80\x94 PeterNeumann", b"\xe2\x80\x94 Peter+Neumann"),
     "without spaces or '+'"),
    ("short signature", GOOD.split(b"\n\n")[0] + "\n\n\u2014 PeterNeumann AAAAAA==\n".encode(),
     "the signature is too short"),
    ("duplicate signature", GOOD + SIG_LINE.encode(), "a second signature by key PeterNeumann+c74f20a3"),
    ("too many signatures", GOOD.split(b"\n\n")[0] + b"\n\n" + b"".join(
        f"\u2014 k{i} AAAAAAA=\n".encode() for i in range(101)), "more than 100 signatures"),
    ("two lines", _with("example.se/log\n12\n"), "found 2 lines"),
    ("empty origin", _with("\n12\n" + base64.b64encode(bytes(32)).decode() + "\n"),
     "the origin (line 1) is empty"),
    ("leading zero", GOOD.replace(b"\n12\n", b"\n012\n"), "without leading zeros: '012'"),
    ("plus sign", GOOD.replace(b"\n12\n", b"\n+12\n"), "not a decimal number"),
    ("negative", GOOD.replace(b"\n12\n", b"\n-12\n"), "not a decimal number"),
    ("space", GOOD.replace(b"\n12\n", b"\n 12\n"), "not a decimal number"),
    ("full-width digits", GOOD.replace(b"\n12\n", "\n\uff11\uff12\n".encode()), "not a decimal number"),
    ("underscore", GOOD.replace(b"\n12\n", b"\n1_2\n"), "not a decimal number"),
    ("too large", GOOD.replace(b"\n12\n", b"\n9223372036854775808\n"), "larger than 2^63 - 1"),
    ("short root", _with("example.se/log\n12\n" + base64.b64encode(bytes(31)).decode() + "\n"),
     "is 31 bytes, not 32"),
    ("hex root", _with("example.se/log\n12\n" + bytes(32).hex() + "\n"), "root hash (line 3)"),
]


@pytest.mark.parametrize(("data", "reason"), [(d, r) for _, d, r in HOSTILE],
                         ids=[name for name, _, _ in HOSTILE])
def test_hostile_checkpoints_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises((NoteError, NoteNotVerified)) as raised:
        read_checkpoint(data, [KEY.verifier()])
    assert reason in str(raised.value)


def test_malformed_is_a_usage_error_and_unverified_a_finding() -> None:
    assert NoteError("x").exit_code == 2
    assert NoteNotVerified("x").exit_code == 1
    assert read_checkpoint(GOOD, [KEY.verifier()]).size == 12


def test_extension_lines_are_read_and_kept() -> None:
    text = "example.se/log\n12\n" + base64.b64encode(bytes(32)).decode() + "\nextension one\n"
    checkpoint = parse_checkpoint(text)
    assert checkpoint.extensions == ("extension one",)
    assert checkpoint.text() == text
    with pytest.raises(NoteError, match="line 4 is empty"):
        parse_checkpoint(text.replace("extension one", ""))


def test_a_bare_checkpoint_reads_without_a_key_and_fails_with_one() -> None:
    bare = Checkpoint("example.se/log", 0, merkle.EMPTY_ROOT).text().encode()
    assert read_checkpoint(bare).size == 0
    with pytest.raises(NoteNotVerified, match="not signed"):
        read_checkpoint(bare, [KEY.verifier()])


def test_an_origin_that_would_not_read_back_is_refused() -> None:
    with pytest.raises(NoteError):
        Checkpoint("bad\norigin", 1, bytes(32)).text()
    with pytest.raises(NoteError):
        Checkpoint("", 1, bytes(32)).text()


# Properties ---------------------------------------------------------------------------------

_names = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"),
                               blacklist_characters="+"), min_size=1, max_size=30).filter(
    lambda n: not any(c.isspace() for c in n))


@given(origin=_names, size=st.integers(0, 2**63 - 1), root=st.binary(min_size=32, max_size=32))
def test_every_checkpoint_reads_back(origin: str, size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin, size, root)
    assert read_checkpoint(checkpoint.sign([KEY]), [KEY.verifier()]).checkpoint == checkpoint


@given(st.binary(max_size=300))
def test_any_bytes_are_refused_with_a_reason_or_read(data: bytes) -> None:
    try:
        read_checkpoint(data, [KEY.verifier()])
    except (NoteError, NoteNotVerified) as e:
        assert str(e)
