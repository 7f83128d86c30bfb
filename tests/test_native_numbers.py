"""Every native entry point that takes a number answers a bad one with a Python
exception naming the problem (never a panic, an abort or a hang), and keeps
working afterwards."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crewai_rust import _native

BAD_FLOATS = [math.nan, math.inf, -math.inf, -1.0, 1e300]
BAD_INTS = [-1, 2**64, 2**70]
# What a bad number may raise: ValueError (or TypeError for a wrong type);
# OverflowError where an int does not fit in 64 bits, as CPython's own APIs do.
CLEAR_ERRORS = (ValueError, TypeError, OverflowError)
ANY_FILTER = _native.MemoryFilter.any()
QUERY = bytes(4 * 4)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    memory = _native.MemoryStore(str(tmp_path / "m.sqlite3"))
    memory.ensure_dim(4)
    yield memory
    memory.close()


def _clear_error_or_value(call: Callable[[], Any]) -> None:
    """``call`` either returns or raises a clear Exception; a BaseException
    such as PyO3's PanicException fails the test."""
    try:
        call()
    except CLEAR_ERRORS:
        pass


@pytest.mark.parametrize("value", BAD_FLOATS)
def test_timeouts(tmp_path: Path, value: float) -> None:
    path = str(tmp_path / "db.sqlite3")
    if value == 1e300 or not math.isfinite(value) or value < 0:
        with pytest.raises(ValueError, match="busy_timeout"):
            _native.SqlitePool(path, busy_timeout=value)
        with pytest.raises(ValueError, match="busy_timeout"):
            _native.MemoryStore(str(tmp_path / "m.sqlite3"), busy_timeout=value)
    pool = _native.SqlitePool(path)
    with pytest.raises(ValueError, match="busy_timeout"):
        pool.connect(busy_timeout=value)
    pool.connect().close()
    pool.close()


@pytest.mark.parametrize("value", [*BAD_INTS, 1.5, math.nan, "3", None])
def test_counts_and_sizes(tmp_path: Path, store: Any, value: Any) -> None:
    with pytest.raises(CLEAR_ERRORS):
        _native.SqlitePool(str(tmp_path / "db.sqlite3"), max_idle=value)
    if value is not None:
        with pytest.raises(CLEAR_ERRORS):
            _native.MemoryStore(str(tmp_path / "other.sqlite3"), approximate_from_rows=value)
    with pytest.raises(CLEAR_ERRORS):
        store.ensure_dim(value)
    with pytest.raises(CLEAR_ERRORS):
        store.search(QUERY, ANY_FILTER, value, 0.0)
    with pytest.raises(CLEAR_ERRORS):
        store.list(ANY_FILTER, value, 0)
    with pytest.raises(CLEAR_ERRORS):
        store.list(ANY_FILTER, 10, value)
    if value not in (-1, None):  # a time before 1970, or none, is a valid created_before
        with pytest.raises(CLEAR_ERRORS):
            store.delete_matching(_native.MemoryFilter.any(created_before=value))
    assert store.count() == 0


@pytest.mark.parametrize("dim", [0, 2**20 + 1, 2**40])
def test_dimensions_out_of_range(tmp_path: Path, dim: int) -> None:
    fresh = _native.MemoryStore(str(tmp_path / "m.sqlite3"))
    with pytest.raises(ValueError, match="vector_dim"):
        fresh.ensure_dim(dim)
    assert fresh.vector_dim == 0


@pytest.mark.parametrize("value", BAD_FLOATS)
def test_scores_and_thresholds(store: Any, value: float) -> None:
    if math.isnan(value):
        with pytest.raises(ValueError, match="min_score"):
            store.search(QUERY, ANY_FILTER, 5, value)
        with pytest.raises(ValueError, match="threshold"):
            _native.batch_dedup_flags([[1.0, 0.0], [1.0, 0.0]], value)
    else:
        assert store.search(QUERY, ANY_FILTER, 5, value) == []
        assert len(_native.batch_dedup_flags([[1.0, 0.0], [1.0, 0.0]], value)) == 2
    _clear_error_or_value(lambda: _native.batch_dedup_flags([[value, 0.0], [1.0, value]], 0.9))


@pytest.mark.parametrize("value", [*BAD_INTS, math.nan, math.inf])
def test_serialization_depths_and_rows(value: Any) -> None:
    # A max_depth it does not take is left to upstream's code (NotHandledNatively, an Exception).
    try:
        _native.to_serializable({"a": [1, {"b": 2}]}, max_depth=value)
    except (*CLEAR_ERRORS, _native.NotHandledNatively):
        pass
    _clear_error_or_value(lambda: _native.json_dumps({"x": value}))


@pytest.mark.parametrize("value", [*BAD_INTS, math.nan])
def test_row_slices(tmp_path: Path, value: Any) -> None:
    pool = _native.SqlitePool(str(tmp_path / "db.sqlite3"))
    conn = pool.connect()
    _, rows, _, _ = conn.execute("SELECT 1 UNION ALL SELECT 2")
    _clear_error_or_value(lambda: rows.tuples(value))
    _clear_error_or_value(lambda: rows.tuples(0, value))
    _clear_error_or_value(lambda: rows.records([], lambda v: v, value))
    assert rows.tuples() == [(1,), (2,)]
    conn.close()
    pool.close()
