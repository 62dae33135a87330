"""RFC 6962 Merkle trees: the Certificate Transparency reference vectors (as published in
transparency-dev/merkle's proof tests), and properties against a naive implementation written
straight from the RFC's recursive definitions."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain import merkle

# The CT test inputs and the tree heads of their first 1..8 leaves.
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]
ROOTS = [bytes.fromhex(h) for h in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
# (leaf index, tree size, audit path)
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
# (old size, new size, consistency proof)
CONSISTENCY = [
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
    (6, 7, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]
HASHES = [merkle.leaf_hash(d) for d in LEAVES]


# A naive implementation, line by line from RFC 6962 §2.1 ------------------------------------
def naive_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return d[0]  # already a leaf hash
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(d[:k]) + naive_mth(d[k:])).digest()


def naive_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*naive_path(m, d[:k]), naive_mth(d[k:])]
    return [*naive_path(m - k, d[k:]), naive_mth(d[:k])]


def naive_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [naive_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return [*naive_subproof(m, d[:k], b), naive_mth(d[k:])]
    return [*naive_subproof(m - k, d[k:], False), naive_mth(d[:k])]


def hexes(hashes: list[bytes]) -> list[str]:
    return [h.hex() for h in hashes]


# Reference vectors --------------------------------------------------------------------------
def test_empty_tree_and_leaf_hash() -> None:
    assert merkle.root([]) == merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert merkle.leaf_hash(b"") == ROOTS[0]


@pytest.mark.parametrize("size", range(1, 9))
def test_reference_roots(size: int) -> None:
    assert merkle.root(HASHES[:size]) == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_reference_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    assert hexes(merkle.inclusion_proof(HASHES, index, size)) == path
    proof = [bytes.fromhex(h) for h in path]
    assert merkle.verify_inclusion(HASHES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_reference_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    assert hexes(merkle.consistency_proof(HASHES, old, new)) == path
    proof = [bytes.fromhex(h) for h in path]
    assert merkle.verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


# Corrupted proofs fail (the probes transparency-dev/merkle runs) -----------------------------
SOME = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_corrupted_inclusion_proofs_fail(index: int, size: int, path: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in path]
    root, leaf = ROOTS[size - 1], HASHES[index]
    probes = [
        (index - 1, size, leaf, proof, root), (index + 1, size, leaf, proof, root),
        (index ^ 2, size, leaf, proof, root), (index, size * 2, leaf, proof, root),
        (index, size // 2, leaf, proof, root), (index, size, b"WrongLeaf", proof, root),
        (index, size, leaf, proof, merkle.EMPTY_ROOT), (index, size, leaf, proof, SOME),
        (index, size, leaf, [*proof, b""], root), (index, size, leaf, [*proof, root], root),
        (index, size, leaf, [b"", *proof], root), (index, size, leaf, [root, *proof], root),
        (index, size, leaf, proof[:-1], root),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        probes.append((index, size, leaf, flipped, root))
    for i_, n_, leaf_, proof_, root_ in probes:
        assert not merkle.verify_inclusion(leaf_, i_, n_, proof_, root_), (i_, n_)


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_corrupted_consistency_proofs_fail(old: int, new: int, path: list[str]) -> None:
    proof = [bytes.fromhex(h) for h in path]
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    probes = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof), (old ^ 2, new, r1, r2, proof),
        (old, new * 2, r1, r2, proof), (old, new // 2, r1, r2, proof),
        (old, new, b"WrongRoot", r2, proof), (old, new, r1, b"WrongRoot", proof),
        (old, new, r2, r1, proof), (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, b""]), (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]), (old, new, r1, r2, [b"", *proof]),
        (old, new, r1, r2, [r1, *proof]), (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]), (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        probes.append((old, new, r1, r2, flipped))
    for o, n, a, b, p in probes:
        assert not merkle.verify_consistency(o, n, a, b, p), (o, n)


def test_trivial_consistency() -> None:
    e = merkle.EMPTY_ROOT
    assert merkle.verify_consistency(0, 0, e, e, [])
    assert merkle.verify_consistency(0, 5, e, ROOTS[4], [])
    assert merkle.verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    assert not merkle.verify_consistency(3, 3, ROOTS[2], ROOTS[3], [])
    assert not merkle.verify_consistency(0, 1, e, e, [e])  # no proof from the empty tree
    assert not merkle.verify_consistency(2, 1, ROOTS[1], ROOTS[0], [])  # time travel


# Properties against the naive implementation --------------------------------------------------
def tree(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=300))
def test_root_matches_the_naive_definition(n: int) -> None:
    leaves = tree(n)
    assert merkle.root(leaves) == naive_mth(leaves)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_inclusion_proofs_match_the_naive_definition(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=200))
    m = data.draw(st.integers(min_value=0, max_value=n - 1))
    leaves = tree(n)
    proof = merkle.inclusion_proof(leaves, m)
    assert proof == naive_path(m, leaves)
    root = naive_mth(leaves)
    assert merkle.verify_inclusion(leaves[m], m, n, proof, root)
    other = (m + 1) % n
    assert n == 1 or not merkle.verify_inclusion(leaves[other], m, n, proof, root)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_consistency_proofs_match_the_naive_definition(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=1, max_value=200))
    m = data.draw(st.integers(min_value=1, max_value=n))
    leaves = tree(n)
    proof = merkle.consistency_proof(leaves, m)
    assert proof == (naive_subproof(m, leaves, True) if m < n else [])
    assert merkle.verify_consistency(m, n, naive_mth(leaves[:m]), naive_mth(leaves), proof)
    changed = [*leaves[: m - 1], merkle.leaf_hash(b"forged"), *leaves[m:]]
    assert not merkle.verify_consistency(m, n, naive_mth(changed[:m]), naive_mth(leaves), proof)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=70), max_size=8))
def test_the_builder_gives_the_same_root_however_leaves_are_paged(pages: list[int]) -> None:
    leaves = tree(sum(pages))
    builder = merkle.TreeBuilder()
    offset = 0
    for size in pages:
        builder.extend(leaves[offset : offset + size])
        offset += size
        assert builder.root() == naive_mth(leaves[:offset])
    assert sum(s for s, _ in builder.subtrees()) == builder.size == offset


def test_subtrees_from_elsewhere_join_aligned_and_refuse_misaligned() -> None:
    leaves = tree(13)
    left, right = merkle.TreeBuilder(), merkle.TreeBuilder()
    left.extend(leaves[:8])
    right.extend(leaves[8:])
    joined = merkle.TreeBuilder()
    for size, subtree in [*left.subtrees(), *right.subtrees()]:
        joined.push(size, subtree)
    assert joined.root() == naive_mth(leaves)
    with pytest.raises(ValueError, match="cannot start"):
        joined.push(4, leaves[0])  # 13 is not a multiple of 4


def test_range_roots_stream_pages_and_notice_missing_leaves() -> None:
    leaves = tree(37)
    ranges = merkle.inclusion_ranges(20, 37)
    pages = [(i, leaves[i : i + 5]) for i in range(0, 37, 5)]
    assert merkle.range_roots(ranges, pages) == naive_path(20, leaves)
    with pytest.raises(ValueError, match="not all supplied"):
        merkle.range_roots(ranges, pages[:3])
