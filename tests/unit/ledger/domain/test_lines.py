from __future__ import annotations

import io

from ledger.domain.intake import iter_lines


def test_lines_are_split_and_an_oversize_line_is_cut_without_reading_it_whole() -> None:
    stream = io.BytesIO(b"a\n" + b"x" * 50 + b"\nb\nend")
    assert list(iter_lines(stream, limit=10)) == [b"a\n", b"x" * 11, b"b\n", b"end"]
