"""RFC 6962 (Certificate Transparency) Merkle tree hashing, audit paths and consistency proofs.

Pure functions, no I/O. The tree is the one of RFC 6962 §2.1 (and RFC 9162 §2.1):
``MTH({}) = SHA-256()``, a leaf hashes as ``SHA-256(0x00 || data)``, an interior node as
``SHA-256(0x01 || left || right)``, and a tree of n > 1 leaves splits at the largest power of
two smaller than n. The ledger's leaf data is a log record's chain hash (see ``ledger.audit``).

Everything here works on *leaf hashes* (already ``0x00``-prefixed and hashed), so a log can
hash its leaves once and feed them in pages; ``TreeBuilder`` folds them into a compact range
(one perfect subtree per set bit of the size) in bounded memory, hashing whole aligned blocks
level by level in tight comprehensions so the per-leaf Python overhead stays small."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(NODE_PREFIX + left + right).digest()


def leaf_hashes(datas: Iterable[bytes]) -> list[bytes]:
    """``leaf_hash`` of each (a comprehension: measurably faster than map + methodcaller)."""
    sha256, prefix = _sha256, LEAF_PREFIX
    return [sha256(prefix + d).digest() for d in datas]


def _parents(level: Sequence[bytes]) -> list[bytes]:
    """The next level up of an even-length level."""
    sha256, prefix = _sha256, NODE_PREFIX
    return [sha256(prefix + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=True)]


def perfect_root(leaves: Sequence[bytes]) -> bytes:
    """The root of a perfect tree (a power-of-two number of leaf hashes)."""
    n = len(leaves)
    if n == 0 or n & (n - 1):
        raise ValueError(f"a perfect subtree needs a power-of-two number of leaves, not {n}")
    level = list(leaves)
    while len(level) > 1:
        level = _parents(level)
    return level[0]


def split_point(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where RFC 6962 splits a tree."""
    if n < 2:
        raise ValueError("only a tree of two or more leaves splits")
    return 1 << ((n - 1).bit_length() - 1)


class TreeBuilder:
    """Folds leaf hashes, appended in order, into the compact range of the tree so far: the
    roots of its perfect subtrees, largest first (one per set bit of ``size``). Memory is
    O(log n); ``root()`` is the RFC 6962 tree head of everything appended."""

    __slots__ = ("_stack", "size")

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.size = 0

    def extend(self, leaves: Sequence[bytes]) -> None:
        i, n = 0, len(leaves)
        while i < n:
            # The biggest block that fits in what is left and starts aligned at self.size.
            block = 1 << ((n - i).bit_length() - 1)
            if self.size:
                block = min(block, self.size & -self.size)
            root = leaves[i] if block == 1 else perfect_root(leaves[i : i + block])
            self.push(block, root)
            i += block

    def push(self, size: int, subtree_root: bytes) -> None:
        """Appends a whole perfect subtree of ``size`` leaves (computed elsewhere, e.g. by a
        worker process); it must start at a multiple of its size."""
        if size <= 0 or size & (size - 1) or self.size % size:
            raise ValueError(f"a subtree of {size} leaves cannot start at leaf {self.size}")
        stack = self._stack
        stack.append((size, subtree_root))
        self.size += size
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            (s, right), (_, left) = stack.pop(), stack.pop()
            stack.append((2 * s, node_hash(left, right)))

    def subtrees(self) -> list[tuple[int, bytes]]:
        return list(self._stack)

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        # MTH splits at the largest power of two, so the head is a right fold of the
        # perfect subtrees: node(P1, node(P2, ... Pk)).
        stack = self._stack
        head = stack[-1][1]
        for _, left in reversed(stack[:-1]):
            head = node_hash(left, head)
        return head


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes."""
    builder = TreeBuilder()
    builder.extend(leaves)
    return builder.root()


# Proofs as leaf ranges --------------------------------------------------------------------
# A proof is a list of subtree roots, each the MTH of a contiguous range of leaves. Computing
# the ranges first lets a caller hash a huge log once, streaming, for any proof.
Range = tuple[int, int]  # [start, stop) in leaf indices


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose roots form the audit path of leaf ``index`` in a tree of ``size``
    leaves (RFC 6962 §2.1.1 PATH), in proof order: the leaf's sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    ranges: list[Range] = []
    lo, hi, m = 0, size, index
    while hi - lo > 1:
        k = split_point(hi - lo)
        if m < k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m = lo + k, m - k
    return ranges[::-1]


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The leaf ranges whose roots form the consistency proof from a tree of ``old_size``
    leaves to one of ``new_size`` (RFC 6962 §2.1.2 PROOF / SUBPROOF), in proof order."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from {old_size} to {new_size} leaves")
    if old_size in (0, new_size):
        return []
    ranges: list[Range] = []
    lo, hi, m, whole_old_tree = 0, new_size, old_size, True
    while True:
        n = hi - lo
        if m == n:
            if not whole_old_tree:  # the verifier knows the old root itself
                ranges.append((lo, hi))
            break
        k = split_point(n)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole_old_tree = lo + k, m - k, False
    return ranges[::-1]


def range_roots(ranges: Sequence[Range], pages: Iterable[tuple[int, Sequence[bytes]]]) -> list[bytes]:
    """The MTH of each range, from leaf hashes streamed as pages of (first leaf index,
    leaf hashes) in order. Pages may stop once past the last range."""
    builders = [TreeBuilder() for _ in ranges]
    wanted = [(a, b, builder) for (a, b), builder in zip(ranges, builders, strict=True)]
    end = max((b for _, b in ranges), default=0)
    for offset, leaves in pages:
        stop = offset + len(leaves)
        for a, b, builder in wanted:
            lo, hi = max(a, offset), min(b, stop)
            if lo < hi:
                builder.extend(leaves[lo - offset : hi - offset])
        if stop >= end:
            break
    for (a, b), builder in zip(ranges, builders, strict=True):
        if builder.size != b - a:
            raise ValueError(f"leaves {a}..{b - 1} were not all supplied")
    return [builder.root() for builder in builders]


def _single_page(leaves: Sequence[bytes]) -> list[tuple[int, Sequence[bytes]]]:
    return [(0, leaves)]


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaf hashes."""
    size = len(leaves) if size is None else size
    return range_roots(inclusion_ranges(index, size), _single_page(leaves[:size]))


def consistency_proof(leaves: Sequence[bytes], old_size: int, new_size: int | None = None) -> list[bytes]:
    """The proof that the tree of the first ``old_size`` leaves is a prefix of the tree of
    the first ``new_size``."""
    new_size = len(leaves) if new_size is None else new_size
    return range_roots(consistency_ranges(old_size, new_size), _single_page(leaves[:new_size]))


# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2: the same proofs as RFC 6962) ---------------
def _hashes_ok(*hashes: bytes) -> bool:
    return all(isinstance(h, bytes) and len(h) == HASH_SIZE for h in hashes)


def root_from_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes]) -> bytes | None:
    """The root an audit path leads to from a leaf hash, or None if the path cannot be one
    for this index and size (wrong length, malformed hashes)."""
    if not 0 <= index < size or not _hashes_ok(leaf, *path):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None  # too many elements
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    return root_from_inclusion(leaf, index, size, path) == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> bool:
    if not 0 <= old_size <= new_size or not _hashes_ok(old_root, new_root, *path):
        return False
    if old_size == new_size:
        return not path and old_root == new_root
    if old_size == 0:
        return not path  # the empty tree is a prefix of every tree
    if not path:
        return False
    if old_size & (old_size - 1) == 0:
        path = [old_root, *path]  # the old tree is a perfect subtree: its root starts the walk
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root
