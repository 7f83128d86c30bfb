"""The memory component: ``crewai_rust.memory.RustMemoryStorage`` against upstream's LanceDBStorage.

The StorageBackend contract runs against both stores through the same parametrized tests
(``make_storage``); expected values were checked against upstream's LanceDBStorage. The
deliberate differences listed in the spec, bad inputs, threads, processes, crashes, the
LanceDB import and the ``Memory`` storage selection run on the Rust store only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import signal
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from conftest import REPO_ROOT, run_in_threads
from crewai.memory.storage import factory as storage_factory
from crewai.memory.storage.backend import EmbeddingDimensionMismatchError
from crewai.memory.storage.lancedb_storage import LanceDBStorage
from crewai.memory.types import MemoryRecord

# Upstream's LanceDBStorage calls LanceDB's deprecated create_scalar_index on every open.
pytestmark = pytest.mark.filterwarnings("ignore:create_scalar_index is deprecated")

BASE = datetime(2024, 3, 1, 9, 30, 15, 250000)
ZERO4 = [0.0, 0.0, 0.0, 0.0]


def rust_storage_class() -> type:
    from crewai_rust.memory import RustMemoryStorage

    return RustMemoryStorage


class StorageFactory:
    """``(path, vector_dim=None) -> storage`` for one backend; closes what it opened."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.opened: list[Any] = []
        self._cls: Any = LanceDBStorage if kind == "lancedb" else rust_storage_class()

    def __call__(self, path: Path | str, vector_dim: int | None = None) -> Any:
        storage = self._cls(path=str(path), vector_dim=vector_dim)
        self.opened.append(storage)
        return storage

    def close_all(self) -> None:
        for storage in self.opened:
            close = getattr(storage, "close", None)
            if close is not None:
                close()


@pytest.fixture(params=["lancedb", "rust"])
def make_storage(request: pytest.FixtureRequest) -> Iterator[StorageFactory]:
    made = StorageFactory(request.param)
    yield made
    made.close_all()


@pytest.fixture()
def make_rust() -> Iterator[StorageFactory]:
    made = StorageFactory("rust")
    yield made
    made.close_all()


def f32(values: list[float]) -> list[float]:
    """``values`` rounded to float32, as both stores keep vectors."""
    return [struct.unpack("f", struct.pack("f", v))[0] for v in values]


def rec(
    rid: str,
    embedding: list[float] | None = None,
    *,
    scope: str = "/",
    categories: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    minute: int = 0,
    **fields: Any,
) -> MemoryRecord:
    return MemoryRecord(
        id=rid,
        content=fields.pop("content", f"content of {rid}"),
        scope=scope,
        categories=categories or [],
        metadata=metadata or {},
        created_at=BASE + timedelta(minutes=minute),
        last_accessed=fields.pop("last_accessed", BASE + timedelta(minutes=minute)),
        embedding=embedding,
        **fields,
    )


def assert_same_record(actual: MemoryRecord | None, expected: MemoryRecord) -> None:
    assert actual is not None, f"record {expected.id!r} is missing"
    for name in ("id", "content", "scope", "categories", "metadata", "importance",
                 "created_at", "last_accessed", "source", "private"):
        assert getattr(actual, name) == getattr(expected, name), name
    assert_same_json_types(actual.metadata, expected.metadata)
    if expected.embedding is not None:
        assert actual.embedding is not None
        assert actual.embedding == pytest.approx(f32(expected.embedding), rel=1e-6, abs=1e-7)


def assert_same_json_types(actual: Any, expected: Any) -> None:
    """``==`` says 1 == 1.0 == True; a round trip must also keep the JSON types."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, dict):
        for key, value in expected.items():
            assert_same_json_types(actual[key], value)
    elif isinstance(expected, list):
        for a, e in zip(actual, expected):
            assert_same_json_types(a, e)


def ids(results: list[tuple[MemoryRecord, float]] | list[MemoryRecord]) -> list[str]:
    return [r[0].id if isinstance(r, tuple) else r.id for r in results]


# The scoped data set: ids, scopes, categories and creation minutes. "/ab" shares the raw
# prefix "/a" without being under it. Embedding i is [i, 1, 0, 0], so the search score for
# the zero query is 1 / (1 + i*i + 1), best first in this order.
SCOPED = [
    ("root", "/", ["general"]),
    ("a", "/a", ["x"]),
    ("ab", "/a/b", ["y", "x"]),
    ("abc", "/a/b/c", ["z"]),
    ("ab2", "/ab", ["x"]),
    ("b", "/b", []),
    ("bd", "/b/d", ["y"]),
]


def scoped_records() -> list[MemoryRecord]:
    return [
        rec(rid, [float(i), 1.0, 0.0, 0.0], scope=scope, categories=cats, minute=i,
            metadata={"i": i, "even": i % 2 == 0})
        for i, (rid, scope, cats) in enumerate(SCOPED)
    ]


@pytest.fixture()
def scoped(make_storage: StorageFactory, tmp_path: Path) -> Any:
    storage = make_storage(tmp_path / "store")
    storage.save(scoped_records())
    return storage


# --------------------------------------------------------------------------- save / get / update


def test_save_and_get_record_round_trip_every_field(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    assert storage.get_record("nothing yet") is None
    full = MemoryRecord(
        id="it's 100%_\x00x",
        content="nul\x00 héllo ✓ 日本 'quoted'",
        scope="/team/é",
        categories=["decision", "ünïcode"],
        metadata={"n": 1, "f": 1.0, "s": "1", "t": True, "none": None, "big": 2**53 + 1,
                  "nested": {"k": [1, 2.5, "x", False], "d": {"e": {}}}},
        importance=0.7,
        created_at=BASE,
        last_accessed=BASE + timedelta(days=3, microseconds=7),
        embedding=[0.1, -2.5, 3.0, 1e-3],
        source="user-1",
        private=True,
    )
    plain = rec("plain", [1.0, 2.0, 3.0, 4.0], minute=5)
    aware = MemoryRecord(
        id="aware", content="tz", created_at=datetime(2024, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        last_accessed=datetime(2024, 1, 2, tzinfo=timezone.utc), embedding=[0.0, 0.0, 0.0, 1.0],
    )
    storage.save([full, plain, aware])
    got_aware = storage.get_record("aware")
    assert_same_record(got_aware, aware)
    assert got_aware is not None and got_aware.created_at.utcoffset() == timedelta(hours=2)
    assert_same_record(storage.get_record(full.id), full)
    got_plain = storage.get_record("plain")
    assert_same_record(got_plain, plain)
    assert got_plain is not None and got_plain.source is None and got_plain.private is False
    assert storage.get_record("missing") is None
    assert storage.get_record("it's") is None
    assert storage.count() == 3


def test_save_of_an_empty_batch_is_a_no_op(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    storage.save([])
    assert storage.count() == 0
    storage.save([rec("r", ZERO4)])
    storage.save([])
    assert storage.count() == 1


def test_update_replaces_the_record_and_upserts(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    first, second = rec("r1", [1.0, 0.0, 0.0, 0.0]), rec("r2", [0.0, 1.0, 0.0, 0.0], minute=1)
    storage.save([first, second])

    changed = first.model_copy(update={
        "content": "changed", "scope": "/moved", "categories": ["new"], "metadata": {"v": 2},
        "importance": 0.9, "last_accessed": BASE + timedelta(hours=5), "source": "s", "private": True,
        "embedding": [0.0, 0.0, 2.0, 0.0],
    })
    storage.update(changed)
    assert storage.count() == 2
    assert_same_record(storage.get_record("r1"), changed)
    assert storage.get_record("r1").created_at == first.created_at  # type: ignore[union-attr]
    assert_same_record(storage.get_record("r2"), second)
    # The new embedding is the one searched.
    top = storage.search([0.0, 0.0, 2.0, 0.0], limit=1)
    assert ids(top) == ["r1"] and top[0][1] == pytest.approx(1.0)

    storage.update(rec("r3", [0.0, 0.0, 0.0, 1.0], minute=2))
    assert storage.count() == 3
    assert storage.get_record("r3") is not None

    storage.update(changed.model_copy(update={"embedding": None, "content": "no vector"}))
    got = storage.get_record("r1")
    assert got is not None and got.content == "no vector" and got.embedding == ZERO4
    assert storage.count() == 3


# --------------------------------------------------------------------------- search


def test_search_ranks_by_the_squared_l2_score(scoped: Any) -> None:
    results = scoped.search(ZERO4)
    assert ids(results) == [rid for rid, _, _ in SCOPED]
    for i, (_, score) in enumerate(results):
        assert score == pytest.approx(1.0 / (1.0 + i * i + 1.0), abs=1e-6)
    assert ids(scoped.search(ZERO4, limit=3)) == ["root", "a", "ab"]

    # Query [3.25, 0, 0, 0]: squared distances (i - 3.25)^2 + 1.
    query = [3.25, 0.0, 0.0, 0.0]
    scores = {r.id: s for r, s in scoped.search(query)}
    assert scores["abc"] == pytest.approx(1.0 / 2.0625, abs=1e-6)
    assert scores["ab2"] == pytest.approx(1.0 / 2.5625, abs=1e-6)
    assert scores["ab"] == pytest.approx(1.0 / 3.5625, abs=1e-6)
    assert scores["root"] == pytest.approx(1.0 / 12.5625, abs=1e-6)
    assert ids(scoped.search(query, limit=3)) == ["abc", "ab2", "ab"]

    returned = scoped.search([0.0, 1.0, 0.0, 0.0], limit=1)[0][0]
    assert_same_record(returned, scoped_records()[0])


def test_search_min_score_and_limit(scoped: Any) -> None:
    assert ids(scoped.search(ZERO4, min_score=0.1)) == ["root", "a", "ab"]
    assert ids(scoped.search(ZERO4, min_score=0.1, limit=2)) == ["root", "a"]
    assert scoped.search(ZERO4, min_score=0.6) == []
    assert ids(scoped.search(ZERO4, limit=100)) == [rid for rid, _, _ in SCOPED]


def test_search_on_an_empty_store_finds_nothing(make_storage: StorageFactory, tmp_path: Path) -> None:
    assert make_storage(tmp_path / "fresh").search(ZERO4) == []
    assert make_storage(tmp_path / "sized", vector_dim=4).search(ZERO4) == []


def test_search_scope_prefix_is_a_raw_string_prefix(scoped: Any) -> None:
    assert ids(scoped.search(ZERO4, scope_prefix="/a")) == ["a", "ab", "abc", "ab2"]
    assert ids(scoped.search(ZERO4, scope_prefix="/a/")) == ["a", "ab", "abc", "ab2"]
    assert ids(scoped.search(ZERO4, scope_prefix="/a/b")) == ["ab", "abc"]
    assert ids(scoped.search(ZERO4, scope_prefix="/b")) == ["b", "bd"]
    assert ids(scoped.search(ZERO4, scope_prefix="/b", limit=1)) == ["b"]
    assert scoped.search(ZERO4, scope_prefix="/zzz") == []
    everything = [rid for rid, _, _ in SCOPED]
    for whole in (None, "/", "", "//"):
        assert ids(scoped.search(ZERO4, scope_prefix=whole)) == everything


def test_search_categories_match_any(scoped: Any) -> None:
    assert ids(scoped.search(ZERO4, categories=["y"])) == ["ab", "bd"]
    assert ids(scoped.search(ZERO4, categories=["z", "general"])) == ["root", "abc"]
    assert ids(scoped.search(ZERO4, categories=["x"], scope_prefix="/a")) == ["a", "ab", "ab2"]
    assert ids(scoped.search(ZERO4, categories=["x"], limit=2)) == ["a", "ab"]
    assert scoped.search(ZERO4, categories=["nope"]) == []
    assert len(scoped.search(ZERO4, categories=[])) == len(SCOPED)


def test_scope_prefix_wildcards_match_literally(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    storage.save([
        rec(rid, [float(i), 0.0], scope=scope, categories=["k"], minute=i)
        for i, (rid, scope) in enumerate([("us", "/a_b"), ("x", "/axb"), ("pc", "/a%c"), ("bs", "/a\\b"),
                                          ("q", "/a'q")])
    ])
    for prefix, expected in [("/a_", ["us"]), ("/a%", ["pc"]), ("/a\\", ["bs"]), ("/a'", ["q"])]:
        assert ids(storage.search([0.0, 0.0], scope_prefix=prefix)) == expected, prefix
        assert ids(storage.list_records(scope_prefix=prefix)) == expected, prefix
        assert storage.count(prefix) == 1, prefix
        assert storage.list_categories(prefix) == {"k": 1}, prefix
    assert storage.delete(categories=["k"], scope_prefix="/a_") == 1
    storage.reset("/a'q")
    assert sorted(ids(storage.list_records())) == ["bs", "pc", "x"]


def test_scopes_without_a_leading_slash(make_storage: StorageFactory, tmp_path: Path) -> None:
    """search and list_categories take the prefix raw; list_records, count and delete prepend a slash."""
    storage = make_storage(tmp_path / "store")
    storage.save([
        rec("bare", [0.0, 0.0], scope="team/x", categories=["k"]),
        rec("slashed", [1.0, 0.0], scope="/team", categories=["j"], minute=1),
        rec("root", [2.0, 0.0], scope="/", minute=2),
    ])
    assert ids(storage.search([0.0, 0.0], scope_prefix="team")) == ["bare"]
    assert ids(storage.search([0.0, 0.0], scope_prefix="/team")) == ["slashed"]
    assert ids(storage.list_records(scope_prefix="team")) == ["slashed"]
    assert storage.count("team") == 1
    assert storage.list_categories("team") == {"k": 1}
    assert storage.list_scopes() == ["/team"]
    assert storage.delete(scope_prefix="team") == 2
    assert ids(storage.list_records()) == ["bare"]


METADATA = {
    "m1": {"n": 1, "kind": "a", "flag": True, "nested": {"k": [1, 2], "s": "x"}},
    "m2": {"n": 2, "kind": "a", "flag": False, "nested": {"k": [1, 2], "s": "y"}},
    "m3": {"n": 1, "kind": "b", "flag": True},
    "m4": {},
    "m5": {"n": "1", "kind": "a"},
}


@pytest.fixture()
def with_metadata(make_storage: StorageFactory, tmp_path: Path) -> Any:
    storage = make_storage(tmp_path / "store")
    storage.save([
        rec(rid, [float(i), 0.0, 0.0, 0.0], metadata=md, scope="/m" if i < 3 else "/n")
        for i, (rid, md) in enumerate(METADATA.items())
    ])
    return storage


@pytest.mark.parametrize(
    ("metadata_filter", "expected"),
    [
        ({"n": 1}, ["m1", "m3"]),
        ({"n": "1"}, ["m5"]),
        ({"n": 2}, ["m2"]),
        ({"flag": True}, ["m1", "m3"]),
        ({"flag": False}, ["m2"]),
        ({"kind": "a"}, ["m1", "m2", "m5"]),
        ({"kind": "a", "flag": True}, ["m1"]),
        ({"nested": {"k": [1, 2], "s": "x"}}, ["m1"]),
        ({"nested": {"s": "x", "k": [1, 2]}}, ["m1"]),
        ({"nested": {"k": [1, 2]}}, []),
        ({"nested": {"k": [2, 1], "s": "x"}}, []),
        ({"kind": "zzz"}, []),
        ({}, ["m1", "m2", "m3", "m4", "m5"]),
    ],
)
def test_search_metadata_filter(with_metadata: Any, metadata_filter: dict[str, Any], expected: list[str]) -> None:
    assert ids(with_metadata.search(ZERO4, metadata_filter=metadata_filter)) == expected


def test_search_metadata_filter_combines_with_scope_and_categories(with_metadata: Any) -> None:
    assert ids(with_metadata.search(ZERO4, metadata_filter={"n": 1}, scope_prefix="/m")) == ["m1", "m3"]
    assert ids(with_metadata.search(ZERO4, metadata_filter={"kind": "a"}, scope_prefix="/n")) == ["m5"]
    with_metadata.save([rec("c1", [9.0, 0.0, 0.0, 0.0], metadata={"kind": "a"}, categories=["c"])])
    assert ids(with_metadata.search(ZERO4, metadata_filter={"kind": "a"}, categories=["c"])) == ["c1"]


def test_search_metadata_filter_uses_python_equality(make_storage: StorageFactory, tmp_path: Path) -> None:
    """Upstream compares with ``record.metadata.get(k) == v``: 1 == 1.0 == True, None matches absent."""
    storage = make_storage(tmp_path / "store")
    storage.save([
        rec("int", [0.0, 0.0, 0.0, 0.0], metadata={"n": 1}),
        rec("float", [1.0, 0.0, 0.0, 0.0], metadata={"n": 1.0}),
        rec("bool", [2.0, 0.0, 0.0, 0.0], metadata={"n": True}),
        rec("str", [3.0, 0.0, 0.0, 0.0], metadata={"n": "1"}),
        rec("null", [4.0, 0.0, 0.0, 0.0], metadata={"n": None}),
        rec("absent", [5.0, 0.0, 0.0, 0.0], metadata={}),
    ])
    assert ids(storage.search(ZERO4, metadata_filter={"n": 1})) == ["int", "float", "bool"]
    assert ids(storage.search(ZERO4, metadata_filter={"n": 1.0})) == ["int", "float", "bool"]
    assert ids(storage.search(ZERO4, metadata_filter={"n": None})) == ["null", "absent"]
    assert ids(storage.search(ZERO4, metadata_filter={"n": 0})) == []


def test_records_without_embedding_get_a_zero_vector(make_storage: StorageFactory, tmp_path: Path) -> None:
    sized = make_storage(tmp_path / "sized", vector_dim=4)
    sized.save([rec("none", None)])
    got = sized.get_record("none")
    assert got is not None and got.embedding == ZERO4
    [(found, score)] = sized.search([1.0, 2.0, 0.0, 0.0])
    assert found.id == "none" and found.embedding == ZERO4
    assert score == pytest.approx(1.0 / 6.0, abs=1e-6)

    # The dimension comes from an earlier save, or from another record of the same batch.
    inferred = make_storage(tmp_path / "inferred")
    inferred.save([rec("first", None), rec("real", [1.0, 1.0, 1.0])])
    inferred.save([rec("later", None)])
    for rid in ("first", "later"):
        got = inferred.get_record(rid)
        assert got is not None and got.embedding == [0.0, 0.0, 0.0]
    found = ids(inferred.search([0.0, 0.0, 0.0]))
    assert sorted(found[:2]) == ["first", "later"] and found[2:] == ["real"]


def test_a_first_save_without_any_embedding_uses_the_default_dimension(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    """With nothing to infer from, upstream sizes the store at DEFAULT_VECTOR_DIM (3072)."""
    saved = make_storage(tmp_path / "saved")
    saved.save([rec("none", None)])
    got = saved.get_record("none")
    assert got is not None and got.embedding == [0.0] * 3072
    with pytest.raises(EmbeddingDimensionMismatchError):
        saved.save([rec("small", [1.0, 2.0])])
    updated = make_storage(tmp_path / "updated")
    updated.update(rec("none", None))
    assert [r.id for r, _ in updated.search([0.0] * 3072)] == ["none"]


# --------------------------------------------------------------------------- delete


def test_delete_by_record_ids_only(scoped: Any) -> None:
    assert scoped.delete(record_ids=["a", "missing"]) == 1
    assert scoped.get_record("a") is None
    assert scoped.count() == len(SCOPED) - 1
    # With record_ids and no categories/metadata, scope and older_than are not consulted.
    assert scoped.delete(record_ids=["ab"], scope_prefix="/b", older_than=BASE) == 1
    assert scoped.get_record("ab") is None
    assert scoped.delete(record_ids=["missing"]) == 0
    assert scoped.count() == len(SCOPED) - 2


def test_delete_by_categories_with_scope_and_older_than(scoped: Any) -> None:
    # Candidates under the raw prefix "/a" with category x: a (+1), ab (+2), ab2 (+4, not older).
    assert scoped.delete(categories=["x"], scope_prefix="/a", older_than=BASE + timedelta(minutes=4)) == 2
    assert {r.id for r in scoped.list_records()} == {"root", "abc", "ab2", "b", "bd"}
    # This branch scans the raw prefix: the root record is not deleted with it.
    assert scoped.delete(categories=["general", "x"], scope_prefix="/ab") == 1
    assert scoped.get_record("root") is not None and scoped.get_record("ab2") is None
    assert scoped.delete(categories=["nope"]) == 0
    assert scoped.count() == 4


def test_delete_with_categories_ignores_record_ids(scoped: Any) -> None:
    """Upstream's categories/metadata branch selects by those filters; record_ids are not consulted."""
    assert scoped.delete(categories=["y"], record_ids=["root"]) == 2
    assert scoped.get_record("root") is not None
    assert {r.id for r in scoped.list_records()} == {"root", "a", "abc", "ab2", "b"}


def test_delete_by_metadata_with_scope_and_older_than(scoped: Any) -> None:
    # even: root(0), ab(2), ab2(4), bd(6).
    assert scoped.delete(metadata_filter={"even": True}, scope_prefix="/a") == 2
    assert {r.id for r in scoped.list_records()} == {"root", "a", "abc", "b", "bd"}
    assert scoped.delete(metadata_filter={"even": True}, older_than=BASE + timedelta(minutes=6)) == 1
    assert scoped.get_record("root") is None and scoped.get_record("bd") is not None
    assert scoped.delete(metadata_filter={"i": 3}, categories=["z"]) == 1
    assert scoped.delete(metadata_filter={"i": 3}) == 0
    assert scoped.count() == 3


def test_delete_by_scope_prefix_also_deletes_root_records(scoped: Any) -> None:
    """Upstream's scope branch is ``scope LIKE 'prefix%' OR scope = '/'``."""
    assert scoped.delete(scope_prefix="/a") == 5
    assert {r.id for r in scoped.list_records()} == {"b", "bd"}
    # A prefix without its leading slash gets one.
    assert scoped.delete(scope_prefix="b/") == 2
    assert scoped.count() == 0


def test_delete_by_scope_prefix_is_a_raw_prefix(scoped: Any) -> None:
    assert scoped.delete(scope_prefix="/a/b") == 3
    assert {r.id for r in scoped.list_records()} == {"a", "ab2", "b", "bd"}


def test_delete_older_than(scoped: Any) -> None:
    assert scoped.delete(older_than=BASE + timedelta(minutes=2)) == 2
    assert {r.id for r in scoped.list_records()} == {"ab", "abc", "ab2", "b", "bd"}
    assert scoped.delete(older_than=BASE) == 0


def test_delete_by_scope_and_older_than(scoped: Any) -> None:
    """Upstream joins ``scope LIKE 'p%' OR scope = '/'`` and ``created_at < t`` with a bare AND.

    SQL's precedence makes that ``LIKE OR (root AND older)``: every record under the prefix
    goes, whatever its age, and root records only when older.
    """
    assert scoped.delete(scope_prefix="/b", older_than=BASE) == 2
    assert {r.id for r in scoped.list_records()} == {"root", "a", "ab", "abc", "ab2"}
    assert scoped.delete(scope_prefix="/a/b", older_than=BASE + timedelta(minutes=1)) == 3
    assert {r.id for r in scoped.list_records()} == {"a", "ab2"}


@pytest.mark.parametrize("kwargs", [{}, {"scope_prefix": "/"}, {"scope_prefix": ""}])
def test_delete_everything(scoped: Any, kwargs: dict[str, Any]) -> None:
    assert scoped.delete(**kwargs) == len(SCOPED)
    assert scoped.count() == 0 and scoped.list_records() == []
    assert scoped.delete() == 0
    scoped.save([rec("again", [1.0, 0.0, 0.0, 0.0])])
    assert ids(scoped.search(ZERO4)) == ["again"]


def test_delete_with_empty_record_ids_deletes_everything(scoped: Any) -> None:
    """``record_ids=[]`` is falsy upstream: no condition is left, so every record goes."""
    assert scoped.delete(record_ids=[]) == len(SCOPED)
    assert scoped.count() == 0


def test_delete_on_a_store_never_written(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    assert storage.delete() == 0
    assert storage.delete(record_ids=["x"]) == 0
    assert storage.delete(categories=["x"]) == 0


# --------------------------------------------------------------------------- listing and scopes


def test_list_records_newest_first_with_paging_and_scope(scoped: Any) -> None:
    newest_first = [rid for rid, _, _ in reversed(SCOPED)]
    assert ids(scoped.list_records()) == newest_first
    assert ids(scoped.list_records(limit=2, offset=1)) == newest_first[1:3]
    assert ids(scoped.list_records(offset=5)) == newest_first[5:]
    assert scoped.list_records(offset=50) == []
    assert scoped.list_records(limit=0) == []
    assert scoped.list_records(offset=-1) == []
    assert ids(scoped.list_records(scope_prefix="/a")) == ["ab2", "abc", "ab", "a"]
    assert ids(scoped.list_records(scope_prefix="a")) == ["ab2", "abc", "ab", "a"]
    assert ids(scoped.list_records(scope_prefix="/a/b/", limit=1)) == ["abc"]
    assert ids(scoped.list_records(scope_prefix="/")) == newest_first
    assert_same_record(scoped.list_records(scope_prefix="/b/d")[0], scoped_records()[6])


def test_get_scope_info(scoped: Any) -> None:
    info = scoped.get_scope_info("/a")
    assert info.path == "/a"
    assert info.record_count == 4  # "/ab" shares the raw prefix
    assert info.categories == ["x", "y", "z"]
    assert info.oldest_record == BASE + timedelta(minutes=1)
    assert info.newest_record == BASE + timedelta(minutes=4)
    assert info.child_scopes == ["/a/b"]

    root = scoped.get_scope_info("/")
    assert root.path == "/" and root.record_count == len(SCOPED)
    assert root.categories == ["general", "x", "y", "z"]
    assert root.oldest_record == BASE and root.newest_record == BASE + timedelta(minutes=6)
    assert root.child_scopes == ["/a", "/ab", "/b"]

    leaf = scoped.get_scope_info("/a/b/c/")
    assert (leaf.path, leaf.record_count, leaf.categories, leaf.child_scopes) == ("/a/b/c", 1, ["z"], [])

    empty = scoped.get_scope_info("/nowhere")
    assert (empty.path, empty.record_count, empty.categories) == ("/nowhere", 0, [])
    assert empty.oldest_record is None and empty.newest_record is None and empty.child_scopes == []


def test_list_scopes(scoped: Any) -> None:
    assert scoped.list_scopes() == ["/a", "/ab", "/b"]
    assert scoped.list_scopes("/") == ["/a", "/ab", "/b"]
    assert scoped.list_scopes("") == ["/a", "/ab", "/b"]
    assert scoped.list_scopes("/a") == ["/a/b"]
    assert scoped.list_scopes("/a/") == ["/a/b"]
    assert scoped.list_scopes("/a/b") == ["/a/b/c"]
    assert scoped.list_scopes("/b") == ["/b/d"]
    assert scoped.list_scopes("/a/b/c") == []
    assert scoped.list_scopes("/nowhere") == []


def test_list_categories_and_count(scoped: Any) -> None:
    assert scoped.list_categories() == {"general": 1, "x": 3, "y": 2, "z": 1}
    assert scoped.list_categories("/a") == {"x": 3, "y": 1, "z": 1}
    assert scoped.list_categories("/b") == {"y": 1}
    assert scoped.list_categories("/nowhere") == {}
    assert scoped.count() == len(SCOPED)
    assert scoped.count("/") == len(SCOPED)
    assert scoped.count("/a") == 4
    assert scoped.count("/a/b") == 2
    assert scoped.count("/b/") == 2
    assert scoped.count("/nowhere") == 0


def test_listing_an_empty_store(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    assert storage.count() == 0 and storage.count("/a") == 0
    assert storage.list_records() == []
    assert storage.list_scopes() == []
    assert storage.list_categories() == {}
    assert storage.get_scope_info("/").record_count == 0


# --------------------------------------------------------------------------- reset


def test_reset_everything_then_a_new_dimension_is_accepted(scoped: Any) -> None:
    scoped.reset()
    assert scoped.count() == 0 and scoped.list_records() == [] and scoped.list_scopes() == []
    assert scoped.get_record("a") is None
    scoped.save([rec("wide", [1.0] * 8)])
    assert ids(scoped.search([1.0] * 8)) == ["wide"]
    with pytest.raises(EmbeddingDimensionMismatchError):
        scoped.search(ZERO4)
    with pytest.raises(EmbeddingDimensionMismatchError):
        scoped.save([rec("narrow", ZERO4)])


def test_reset_everything_after_reopening(make_storage: StorageFactory, tmp_path: Path) -> None:
    make_storage(tmp_path / "store").save([rec("old", ZERO4)])
    reopened = make_storage(tmp_path / "store")
    reopened.reset()
    reopened.save([rec("new", [0.5] * 8)])
    assert ids(make_storage(tmp_path / "store").search([0.5] * 8)) == ["new"]


@pytest.mark.parametrize("scope", ["/a", "/a/"])
def test_reset_a_scope_deletes_that_range(scoped: Any, scope: str) -> None:
    """``reset(scope)`` deletes ``prefix <= scope < prefix + "/\\uffff"``."""
    scoped.save([rec("dash", [9.0, 0.0, 0.0, 0.0], scope="/a-x"), rec("az", [9.0, 0.0, 0.0, 0.0], scope="/az")])
    scoped.reset(scope)
    assert {r.id for r in scoped.list_records()} == {"root", "ab2", "b", "bd", "az"}
    # A scoped reset keeps the store and its dimension.
    with pytest.raises(EmbeddingDimensionMismatchError):
        scoped.save([rec("wide", [1.0] * 8)])


@pytest.mark.parametrize("scope", [None, "/", ""])
def test_reset_of_the_root_deletes_everything(scoped: Any, scope: str | None) -> None:
    scoped.reset(scope)
    assert scoped.count() == 0


def test_reset_of_a_store_never_written(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    storage.reset("/a")
    storage.reset()
    storage.save([rec("r", [1.0, 2.0])])
    assert storage.count() == 1


# --------------------------------------------------------------------------- touch, async, reopen


def test_touch_records_moves_last_accessed_forward_only(scoped: Any) -> None:
    before = scoped_records()
    # Naive UTC, as upstream stores last_accessed.
    start = datetime.now(timezone.utc).replace(tzinfo=None)
    scoped.touch_records(["a", "bd", "missing"])
    end = datetime.now(timezone.utc).replace(tzinfo=None)
    for expected in before:
        got = scoped.get_record(expected.id)
        assert got is not None
        if expected.id in ("a", "bd"):
            assert got.last_accessed > expected.last_accessed
            assert start - timedelta(seconds=1) <= got.last_accessed <= end + timedelta(seconds=1)
            assert_same_record(got, expected.model_copy(update={"last_accessed": got.last_accessed}))
        else:
            assert_same_record(got, expected)
    scoped.touch_records([])
    assert scoped.count() == len(SCOPED)


def test_async_methods(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    asyncio.run(storage.asave(scoped_records()))
    assert storage.count() == len(SCOPED)
    found = asyncio.run(storage.asearch(ZERO4, scope_prefix="/b", limit=5))
    assert ids(found) == ["b", "bd"]
    assert found[0][1] == pytest.approx(1.0 / 27.0, abs=1e-6)
    assert ids(asyncio.run(storage.asearch(ZERO4, categories=["y"], min_score=0.1))) == ["ab"]
    assert asyncio.run(storage.adelete(record_ids=["a", "b"])) == 2
    assert asyncio.run(storage.adelete(categories=["y"])) == 2
    assert asyncio.run(storage.adelete(scope_prefix="/zzz")) == 1  # the root record
    assert {r.id for r in storage.list_records()} == {"abc", "ab2"}

    async def many() -> None:
        await asyncio.gather(*(storage.asave([rec(f"g{i}", [float(i), 0.0, 0.0, 0.0])]) for i in range(20)))

    asyncio.run(many())
    assert storage.count() == 22
    assert {r.id for r in storage.list_records()} >= {f"g{i}" for i in range(20)}


def test_reopen_keeps_data(make_storage: StorageFactory, tmp_path: Path) -> None:
    first = make_storage(tmp_path / "store")
    first.save(scoped_records())
    first.delete(record_ids=["b"])
    again = make_storage(tmp_path / "store")
    assert again.count() == len(SCOPED) - 1
    expected = [r for r in scoped_records() if r.id != "b"]
    for record in expected:
        assert_same_record(again.get_record(record.id), record)
    assert ids(again.search(ZERO4, limit=3)) == ["root", "a", "ab"]
    again.save([rec("new", [5.0, 5.0, 5.0, 5.0])])
    assert make_storage(tmp_path / "store").count() == len(SCOPED)


# --------------------------------------------------------------------------- dimension mismatch


def test_dimension_mismatch_on_save(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store", vector_dim=4)
    storage.save([rec("ok", ZERO4)])
    with pytest.raises(EmbeddingDimensionMismatchError) as caught:
        storage.save([rec("wide", [0.1] * 8)])
    assert (caught.value.stored_dim, caught.value.new_dim) == (4, 8)
    assert "4-dimensional" in str(caught.value) and "8-dimensional" in str(caught.value)
    assert storage.count() == 1


def test_dimension_mismatch_on_save_with_an_explicit_dimension_before_any_write(
    make_storage: StorageFactory, tmp_path: Path
) -> None:
    storage = make_storage(tmp_path / "store", vector_dim=4)
    with pytest.raises(EmbeddingDimensionMismatchError):
        storage.save([rec("wide", [0.1] * 8)])
    assert storage.count() == 0


def test_dimension_mismatch_in_a_mixed_batch(make_storage: StorageFactory, tmp_path: Path) -> None:
    fresh = make_storage(tmp_path / "fresh")
    with pytest.raises(EmbeddingDimensionMismatchError) as caught:
        fresh.save([rec("four", ZERO4), rec("none", None), rec("eight", [0.1] * 8)])
    assert (caught.value.stored_dim, caught.value.new_dim) == (4, 8)
    assert fresh.count() == 0
    fresh.save([rec("three", [1.0, 2.0, 3.0])])
    assert fresh.count() == 1

    existing = make_storage(tmp_path / "existing")
    existing.save([rec("ok", ZERO4)])
    with pytest.raises(EmbeddingDimensionMismatchError):
        existing.save([rec("four", ZERO4), rec("eight", [0.1] * 8)])
    assert existing.count() == 1 and existing.get_record("four") is None


def test_dimension_mismatch_on_update_and_search(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    original = rec("r", ZERO4)
    storage.save([original])
    with pytest.raises(EmbeddingDimensionMismatchError):
        storage.update(original.model_copy(update={"content": "stale", "embedding": [0.1] * 8}))
    assert_same_record(storage.get_record("r"), original)
    with pytest.raises(EmbeddingDimensionMismatchError) as caught:
        storage.search([0.1] * 8)
    assert (caught.value.stored_dim, caught.value.new_dim) == (4, 8)
    with pytest.raises(EmbeddingDimensionMismatchError):
        storage.search([0.1] * 3)


def test_dimension_mismatch_on_a_reopened_store(make_storage: StorageFactory, tmp_path: Path) -> None:
    make_storage(tmp_path / "store", vector_dim=4).save([rec("old", ZERO4)])
    reopened = make_storage(tmp_path / "store")
    with pytest.raises(EmbeddingDimensionMismatchError):
        reopened.save([rec("new", [0.1] * 8)])
    with pytest.raises(EmbeddingDimensionMismatchError):
        reopened.search([0.1] * 8)
    with pytest.raises(EmbeddingDimensionMismatchError):
        reopened.update(rec("old", [0.1] * 8))
    assert reopened.count() == 1
    # A reopened store with an explicit, different dimension keeps the stored one.
    explicit = make_storage(tmp_path / "store", vector_dim=8)
    with pytest.raises(EmbeddingDimensionMismatchError):
        explicit.save([rec("new", [0.1] * 8)])


def test_mismatch_error_is_a_value_error_not_a_runtime_error(make_storage: StorageFactory, tmp_path: Path) -> None:
    storage = make_storage(tmp_path / "store")
    storage.save([rec("r", ZERO4)])
    with pytest.raises(ValueError) as caught:
        storage.search([0.0] * 5)
    assert isinstance(caught.value, EmbeddingDimensionMismatchError)
    assert not isinstance(caught.value, RuntimeError)


# --------------------------------------------------------------------------- exact search equality


def filled_pair(tmp_path: Path, make_rust: StorageFactory, records: list[MemoryRecord], batch: int) -> tuple[Any, Any]:
    """LanceDB (one save) and Rust (saves of ``batch``) stores holding ``records``."""
    lance = LanceDBStorage(path=str(tmp_path / "lance"))
    lance.save(records)
    rust = make_rust(tmp_path / "rust")
    for start in range(0, len(records), batch):
        rust.save(records[start:start + batch])
    return lance, rust


def test_exact_search_matches_lance_on_random_data(tmp_path: Path, make_rust: StorageFactory) -> None:
    rng = random.Random(20240301)
    dim, n = 64, 2000
    scopes = ["/s0", "/s1", "/s1/x", "/s10", "/s2"]
    records = [
        rec(f"id{i:05d}", [rng.gauss(0.0, 1.0) for _ in range(dim)], scope=rng.choice(scopes), minute=i)
        for i in range(n)
    ]
    lance, rust = filled_pair(tmp_path, make_rust, records, batch=500)
    assert rust.count() == lance.count() == n

    by_id = {r.id: r.embedding for r in records}
    for _ in range(6):
        query = [rng.gauss(0.0, 1.0) for _ in range(dim)]
        for scope in (None, "/s1", "/s1/x"):
            want = lance.search(query, scope_prefix=scope, limit=10)
            got = rust.search(query, scope_prefix=scope, limit=10)
            assert len(want) == 10
            assert ids(got) == ids(want)
            for (g, gs), (_, ws) in zip(got, want):
                assert gs == pytest.approx(ws, abs=1e-5)
                dist = sum((a - b) ** 2 for a, b in zip(f32(by_id[g.id]), query))  # type: ignore[arg-type]
                assert gs == pytest.approx(1.0 / (1.0 + dist), abs=1e-5)
                if scope is not None:
                    assert g.scope.startswith(scope)
        top = rust.search(query, limit=1)[0][0]
        assert top.embedding == pytest.approx(f32(by_id[top.id]), rel=1e-6, abs=1e-7)  # type: ignore[arg-type]


def test_random_operations_agree_with_lance(tmp_path: Path, make_rust: StorageFactory) -> None:
    """A seeded sequence of every operation, run on both stores: every answer is the same.

    Kept inside the shared semantics: unique ids (a re-saved id differs by design), at most
    ``limit * 3`` records (LanceDB's over-fetch then sees all), distinct creation times, and no
    scope-with-older_than delete (its upstream precedence is tested on its own above).
    """
    rng = random.Random(99)
    lance, rust = LanceDBStorage(path=str(tmp_path / "lance")), make_rust(tmp_path / "rust")
    scopes = ["/", "/a", "/a/b", "/a/b/c", "/ab", "/b", "/b/x", "a/rel"]
    prefixes = [None, "/", "/a", "/a/", "/a/b", "/ab", "/b", "a", "/zzz"]
    cats = ["x", "y", "z"]
    minute = 0
    live: list[str] = []

    def norm(value: Any) -> Any:
        if isinstance(value, MemoryRecord):
            return (value.model_dump(), [round(v, 4) for v in value.embedding or []])
        if isinstance(value, tuple):
            return (norm(value[0]), round(value[1], 5))
        if isinstance(value, list):
            return [norm(v) for v in value]
        if hasattr(value, "model_dump"):
            return value.model_dump()
        return value

    def new_record() -> MemoryRecord:
        nonlocal minute
        minute += 1
        return rec(
            f"r{minute}", None if rng.random() < 0.1 else [float(rng.randint(-5, 5)) for _ in range(3)],
            scope=rng.choice(scopes), categories=rng.sample(cats, rng.randint(0, 2)),
            metadata={"m": rng.randint(0, 2), "s": rng.choice(["p", "q"])}, minute=minute,
        )

    lance.save([rec("seed", [0.0, 0.0, 0.0])])
    rust.save([rec("seed", [0.0, 0.0, 0.0])])
    live.append("seed")
    for step in range(200):
        op = rng.choices(["save", "search", "delete", "list", "info", "update", "reset"],
                         weights=[4, 4, 1.5, 2, 1, 1, 0.5])[0]
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        if op == "save":
            if len(live) > 26:
                continue
            batch = [new_record() for _ in range(rng.randint(1, 4))]
            live += [r.id for r in batch]
            call, args = "save", (batch,)
        elif op == "search":
            call, args = "search", ([float(rng.randint(-5, 5)) for _ in range(3)],)
            kwargs = {"scope_prefix": rng.choice(prefixes), "limit": 10,
                      "min_score": rng.choice([0.0, 0.0, 0.0, 0.02, 0.1])}
            if rng.random() < 0.4:
                kwargs["categories"] = rng.sample(cats, rng.randint(1, 2))
            if rng.random() < 0.3:
                kwargs["metadata_filter"] = rng.choice([{"m": 1}, {"s": "p"}, {"m": 0, "s": "q"}])
        elif op == "delete":
            call = "delete"
            branch = rng.choices(["ids", "cats", "meta", "scope", "older"], weights=[3, 2, 2, 1, 1])[0]
            cutoff = BASE + timedelta(minutes=rng.randint(max(0, minute - 20), max(0, minute - 8)))
            if branch == "ids":
                kwargs = {"record_ids": rng.sample(live, min(len(live), 2)) + ["missing"]}
            elif branch == "cats":
                kwargs = {"categories": [rng.choice(cats)], "scope_prefix": rng.choice(prefixes)}
            elif branch == "meta":
                kwargs = {"metadata_filter": {"m": rng.randint(0, 2)}, "scope_prefix": rng.choice(prefixes),
                          "older_than": cutoff}
            elif branch == "scope":
                kwargs = {"scope_prefix": rng.choice(prefixes[2:])}
            else:
                kwargs = {"older_than": cutoff}
        elif op == "list":
            call = rng.choice(["list_records", "list_scopes", "list_categories", "count"])
            if call == "list_records":
                kwargs = {"scope_prefix": rng.choice(prefixes), "limit": rng.randint(1, 8),
                          "offset": rng.randint(0, 4)}
            elif call == "list_scopes":
                args = (rng.choice(["/", "/a", "/a/b", "/b", ""]),)
            else:
                args = (rng.choice(prefixes),)
        elif op == "info":
            call, args = "get_scope_info", (rng.choice(["/", "/a", "/a/b", "/b", "/zzz", "/ab/"]),)
        elif op == "update":
            if not live:
                continue
            target = rng.choice(live)
            found = rust.get_record(target)
            if found is None:
                continue
            call, args = "update", (found.model_copy(update={
                "content": f"updated {step}", "categories": rng.sample(cats, 1),
                "embedding": [float(rng.randint(-5, 5)) for _ in range(3)]}),)
        else:
            call, args = "reset", (rng.choice(["/a", "/b/", "/a/b"]),)
        want = getattr(lance, call)(*args, **kwargs)
        got = getattr(rust, call)(*args, **kwargs)
        assert norm(got) == norm(want), (step, call, args, kwargs)
        live = [rid for rid in live if rust.get_record(rid) is not None]
        assert rust.count() == lance.count(), (step, call)
    assert sorted(ids(rust.list_records(limit=1000))) == sorted(ids(lance.list_records(limit=1000)))


def test_large_store_search_against_lance(tmp_path: Path, make_rust: StorageFactory) -> None:
    """Just past the approximate-index threshold (50,500 rows x 24 dims, clustered as embeddings are).

    With ``approximate_from_rows=None`` every answer is LanceDB's exact top 10. With the default,
    filtered searches stay exact, and unfiltered ones go through the HNSW index: at least 95% of
    LanceDB's exact top 10 (what the store also measures on its own queries), each hit with its
    exact score. ``optimize()`` puts the index in use now instead of in the background.
    """
    import numpy as np

    from crewai_rust.memory import DEFAULT_APPROXIMATE_FROM_ROWS, RustMemoryStorage

    gen = np.random.default_rng(20240302)
    n, dim = DEFAULT_APPROXIMATE_FROM_ROWS + 500, 24
    # Embeddings vary along few directions within a topic: 64 overlapping topics, spread in a
    # 4-d subspace. Full-dimensional noise is the worst case for any graph index, and so are
    # far-apart clusters (the graph can miss one); the store's own check covers those.
    centres = gen.standard_normal((64, dim))
    basis = gen.standard_normal((4, dim))
    vectors = (centres[np.arange(n) % 64] + gen.standard_normal((n, 4)) @ basis).astype(np.float32).tolist()
    scopes = ["/s0", "/s1", "/s2", "/s3"]
    records = [
        MemoryRecord.model_construct(
            id=f"id{i:06d}", content="c", scope=scopes[i % 4], categories=[], metadata={}, importance=0.5,
            created_at=BASE, last_accessed=BASE, embedding=vectors[i], source=None, private=False,
        )
        for i in range(n)
    ]
    lance, rust = filled_pair(tmp_path, make_rust, records, batch=10_000)
    rust.optimize()
    exact = RustMemoryStorage(tmp_path / "rust", approximate_from_rows=None)
    assert rust.count() == exact.count() == n

    found = wanted = 0
    for q in range(200):
        query = (centres[q % 64] + gen.standard_normal(4) @ basis + 0.1 * gen.standard_normal(dim))
        query = query.astype(np.float32).tolist()
        scope = "/s1" if q % 20 == 19 else None
        want = lance.search(query, scope_prefix=scope, limit=10)
        assert len(want) == 10
        assert ids(exact.search(query, scope_prefix=scope, limit=10)) == ids(want), (q, scope)
        got = rust.search(query, scope_prefix=scope, limit=10)
        if scope is not None:
            assert ids(got) == ids(want), (q, scope)
        want_scores = {r.id: score for r, score in want}
        for record, score in got:
            if record.id in want_scores:
                assert score == pytest.approx(want_scores[record.id], rel=1e-4, abs=1e-6)
        found += len({r.id for r, _ in got} & set(want_scores))
        wanted += len(want)
    assert found / wanted >= 0.95
    status = rust.index_status()
    assert status["state"] == "ready", status
    assert status["source"] == "built"
    assert status["measured_recall"] >= 0.95

    # A new process loads the index saved beside the store instead of building it (its first
    # 32 searches through the index are checked, and answered, exactly).
    queries = [(centres[q % 64] + gen.standard_normal(4) @ basis).astype(np.float32).tolist() for q in range(20)]
    child = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + f"""
s = RustMemoryStorage({str(tmp_path / "rust")!r})
s.optimize()
print(json.dumps([s.index_status()["source"], [[r.id for r, _ in s.search(q, limit=10)] for q in {queries!r}]]))
"""], capture_output=True, text=True, env=child_env(), cwd=REPO_ROOT.parent, timeout=120, check=False,
    )
    assert child.returncode == 0, child.stderr
    source, answers = json.loads(child.stdout)
    assert source == "loaded"
    assert answers == [ids(exact.search(q, limit=10)) for q in queries]


@pytest.mark.parametrize("case", ["tiny", "huge", "huge_rows", "huge_query", "offset", "integer_ties"])
def test_rust_only_exact_search_on_numerically_hard_data(make_rust: StorageFactory, tmp_path: Path, case: str) -> None:
    """Top-k against a float64 brute force over the stored float32 vectors (ties allowed to swap)."""
    import numpy as np

    gen = np.random.default_rng(11)
    n, dim = 3000, 64
    data = gen.standard_normal((n, dim))
    queries = [gen.standard_normal(dim) for _ in range(6)]
    if case == "tiny":
        data, queries = data * 1e-7, [q * 1e-7 for q in queries]
    elif case == "huge":
        data, queries = data * 1e6, [q * 1e6 for q in queries]
    elif case == "huge_rows":
        data[:40] *= 1e5
        queries = [data[i] + gen.standard_normal(dim) for i in range(6)]
    elif case == "huge_query":
        queries = [q * 1e5 for q in queries]
    elif case == "offset":
        data[:, 0] += 1e4
        queries = [data[i] + gen.standard_normal(dim) * 0.01 for i in range(6)]
    else:
        data = np.round(data * 2)
        queries = [data[i] for i in range(6)]
    stored = data.astype(np.float32)
    storage = make_rust(tmp_path / "store")
    storage.save([
        MemoryRecord.model_construct(
            id=f"i{i}", content="c", scope="/s" if i % 3 else "/t", categories=[], metadata={}, importance=0.5,
            created_at=BASE, last_accessed=BASE, embedding=stored[i].tolist(), source=None, private=False,
        )
        for i in range(n)
    ])
    for query in queries:
        q32 = np.asarray(query, dtype=np.float32)
        dist = ((stored.astype(np.float64) - q32.astype(np.float64)) ** 2).sum(axis=1)
        for scope, rows in ((None, np.arange(n)), ("/s", np.array([i for i in range(n) if i % 3]))):
            order = rows[np.argsort(dist[rows], kind="stable")][:10]
            got = storage.search(q32.tolist(), scope_prefix=scope, limit=10)
            assert len(set(ids(got))) == 10
            assert scope is None or all(r.scope == scope for r, _ in got)
            want_scores = [1.0 / (1.0 + dist[i]) for i in order]
            assert [sc for _, sc in got] == pytest.approx(want_scores, rel=1e-5, abs=1e-30), (case, scope)
            for (record, score), i in zip(got, order):
                if record.id != f"i{i}":  # only a tie may swap
                    assert score == pytest.approx(1.0 / (1.0 + dist[int(record.id[1:])]), rel=1e-5)


# --------------------------------------------------------------------------- Rust only: deliberate differences


def test_rust_only_filters_apply_before_ranking(make_rust: StorageFactory, tmp_path: Path) -> None:
    """LanceDB over-fetches ``limit * 3`` and filters after; Rust filters first and fills ``limit``."""
    storage = make_rust(tmp_path / "store")
    near = [rec(f"near{i}", [float(i), 0.0], categories=["common"], metadata={"k": "near"}) for i in range(40)]
    far = [rec(f"far{i}", [100.0 + i, 0.0], categories=["rare"], metadata={"k": "far"}) for i in range(6)]
    storage.save(near + far)
    assert ids(storage.search([0.0, 0.0], categories=["rare"], limit=5)) == [f"far{i}" for i in range(5)]
    assert ids(storage.search([0.0, 0.0], metadata_filter={"k": "far"}, limit=5)) == [f"far{i}" for i in range(5)]
    assert ids(storage.search([0.0, 0.0], categories=["rare"], limit=50)) == [f"far{i}" for i in range(6)]


def test_rust_only_saving_an_existing_id_replaces_it(make_rust: StorageFactory, tmp_path: Path) -> None:
    storage = make_rust(tmp_path / "store")
    storage.save([rec("dup", [1.0, 0.0], content="first", categories=["one"])])
    second = rec("dup", [0.0, 1.0], content="second", categories=["two"], minute=3)
    storage.save([second])
    assert storage.count() == 1
    assert_same_record(storage.get_record("dup"), second)
    assert storage.list_categories() == {"two": 1}
    assert ids(storage.search([0.0, 1.0])) == ["dup"]


def test_rust_only_no_scan_cap(make_rust: StorageFactory, tmp_path: Path) -> None:
    storage = make_rust(tmp_path / "store")
    n = 50_010
    storage.save([
        MemoryRecord(id=f"r{i}", content="c", scope="/big/x" if i % 2 else "/big/y", categories=["c"],
                     created_at=BASE, last_accessed=BASE, embedding=[1.0, 0.0])
        for i in range(n)
    ])
    assert storage.count() == n
    assert storage.count("/big") == n
    assert storage.get_scope_info("/big").record_count == n
    assert storage.list_categories("/big") == {"c": n}
    assert storage.list_scopes("/big") == ["/big/x", "/big/y"]
    assert storage.delete(categories=["c"], scope_prefix="/big/x") == n // 2
    assert storage.count() == n - n // 2


def test_rust_only_vector_dim_db_path_and_optimize(make_rust: StorageFactory, tmp_path: Path) -> None:
    storage = make_rust(tmp_path / "store")
    assert storage.vector_dim == 0
    assert Path(storage.db_path) == tmp_path / "store" / "memories.sqlite3"
    storage.save([rec("r", [1.0, 2.0, 3.0])])
    assert storage.vector_dim == 3
    assert Path(storage.db_path).is_file()
    storage.optimize()
    assert storage.count() == 1
    assert make_rust(tmp_path / "store").vector_dim == 3
    assert make_rust(tmp_path / "sized", vector_dim=5).vector_dim == 5


def test_rust_only_default_path_is_the_storage_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "home"))
    storage = rust_storage_class()()
    try:
        assert Path(storage.db_path) == tmp_path / "home" / "memory" / "memories.sqlite3"
        storage.save([rec("r", [1.0])])
        assert (tmp_path / "home" / "memory" / "memories.sqlite3").is_file()
    finally:
        storage.close()


def nan_record() -> MemoryRecord:
    return rec("nan", [1.0, math.nan, 0.0, 0.0])


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.save([rec("ok", ZERO4), nan_record()]), "embedding"),
        (lambda s: s.save([rec("inf", [math.inf, 0.0, 0.0, 0.0])]), "embedding"),
        (lambda s: s.save([rec("ninf", [0.0, -math.inf, 0.0, 0.0])]), "embedding"),
        (lambda s: s.save([rec("empty", [])]), "embedding"),
        (lambda s: s.update(rec("base", [math.nan, 0.0, 0.0, 0.0])), "embedding"),
        (lambda s: s.search([math.nan, 0.0, 0.0, 0.0]), "query_embedding"),
        (lambda s: s.search([0.0, math.inf, 0.0, 0.0]), "query_embedding"),
        (lambda s: s.search([]), "query_embedding"),
        (lambda s: s.asearch_sync([math.nan] * 4), "query_embedding"),
        (lambda s: s.search(ZERO4, categories=[1]), "categories"),
        (lambda s: s.search(ZERO4, categories=["x", None]), "categories"),
        (lambda s: s.search(ZERO4, scope_prefix=5), "scope_prefix"),
        (lambda s: s.search(ZERO4, scope_prefix=b"/a"), "scope_prefix"),
        (lambda s: s.search(ZERO4, limit=0), "limit"),
        (lambda s: s.search(ZERO4, limit=-3), "limit"),
    ],
)
def test_rust_only_bad_inputs_raise_value_error_naming_the_field(
    make_rust: StorageFactory, tmp_path: Path, call: Callable[[Any], Any], field: str
) -> None:
    storage = make_rust(tmp_path / "store")
    base = rec("base", [1.0, 0.0, 0.0, 0.0])
    storage.save([base])

    class Wrapped:
        def __getattr__(self, name: str) -> Any:
            return getattr(storage, name)

        def asearch_sync(self, query: list[float]) -> Any:
            return asyncio.run(storage.asearch(query))

    with pytest.raises(ValueError, match=field) as caught:
        call(Wrapped())
    assert not isinstance(caught.value, EmbeddingDimensionMismatchError)
    # Nothing was written and the store still works.
    assert storage.count() == 1
    assert_same_record(storage.get_record("base"), base)
    assert ids(storage.search(ZERO4)) == ["base"]


def test_rust_only_metadata_json_cannot_encode_raises_type_error(make_rust: StorageFactory, tmp_path: Path) -> None:
    storage = make_rust(tmp_path / "store")
    storage.save([rec("base", ZERO4)])
    with pytest.raises(TypeError, match="not JSON serializable"):
        storage.save([rec("ok", ZERO4), rec("bad", ZERO4, metadata={"x": object()})])
    with pytest.raises(TypeError, match="not JSON serializable"):
        storage.update(rec("base", ZERO4, metadata={"x": {1, 2}}))
    assert storage.count() == 1 and storage.get_record("ok") is None
    got = storage.get_record("base")
    assert got is not None and got.metadata == {}


def test_rust_only_odd_inputs_do_not_crash(make_rust: StorageFactory, tmp_path: Path) -> None:
    """Inputs pydantic would not build: an error or a stored record, never a panic or a torn store."""
    import crewai_rust

    storage = make_rust(tmp_path / "store")
    storage.save([rec("base", ZERO4)])
    odd: list[Callable[[], Any]] = [
        lambda: storage.save([MemoryRecord.model_construct(
            id="scope", content="c", scope=7, categories=[], metadata={}, importance=0.5,
            created_at=BASE, last_accessed=BASE, embedding=ZERO4, source=None, private=False)]),
        lambda: storage.save([MemoryRecord.model_construct(
            id=11, content=None, scope="/", categories=[], metadata={1: "a"}, importance=2.0,
            created_at=BASE, last_accessed=BASE, embedding=ZERO4, source=None, private=False)]),
        lambda: storage.save([rec("huge", [1e300, 0.0, 0.0, 0.0])]),
        lambda: storage.search(ZERO4, metadata_filter={"x": object()}),
        lambda: storage.search(ZERO4, limit=10**12),
        lambda: storage.list_records(limit=10**12, offset=10**12),
        lambda: storage.delete(record_ids=[1, None]),  # type: ignore[list-item]
        lambda: storage.touch_records(["base", 3]),  # type: ignore[list-item]
        lambda: storage.get_scope_info("//\x00/"),
        lambda: storage.get_record("\x00"),
    ]
    for call in odd:
        try:
            call()
        except crewai_rust.RustPanicError:
            raise
        except (ValueError, TypeError, OverflowError):
            pass
    assert storage.count() == len(storage.list_records(limit=1000))
    assert storage.get_record("base") is not None


# --------------------------------------------------------------------------- Rust only: threads


def test_rust_only_threads_saving_into_one_instance(make_rust: StorageFactory, tmp_path: Path) -> None:
    storage = make_rust(tmp_path / "store", vector_dim=8)

    def writer(t: int) -> None:
        for i in range(50):
            storage.save([rec(f"t{t}-{i}", [float(t), float(i)] + [0.0] * 6, scope=f"/t{t}")])
            assert storage.count(f"/t{t}") == i + 1
            assert storage.get_record(f"t{t}-{i}") is not None

    run_in_threads(writer, 8)
    assert storage.count() == 400
    expected = {f"t{t}-{i}" for t in range(8) for i in range(50)}
    assert set(ids(storage.list_records(limit=1000))) == expected
    assert make_rust(tmp_path / "store").count() == 400


def test_rust_only_threads_saving_through_two_instances_on_one_dir(make_rust: StorageFactory, tmp_path: Path) -> None:
    first, second = make_rust(tmp_path / "store"), make_rust(tmp_path / "store")
    first.save([rec("seed", [0.0] * 8)])

    def writer(t: int) -> None:
        storage = first if t % 2 else second
        for i in range(50):
            storage.save([rec(f"t{t}-{i}", [float(t), float(i)] + [0.0] * 6)])
            storage.search([0.0] * 8, limit=3)

    run_in_threads(writer, 8)
    expected = {"seed"} | {f"t{t}-{i}" for t in range(8) for i in range(50)}
    for storage in (first, second):
        assert storage.count() == 401
        assert set(ids(storage.list_records(limit=1000))) == expected


def test_rust_only_threads_mixing_saves_updates_and_deletes(make_rust: StorageFactory, tmp_path: Path) -> None:
    instances = [make_rust(tmp_path / "store", vector_dim=4), make_rust(tmp_path / "store")]

    def worker(t: int) -> None:
        storage = instances[t % 2]
        for i in range(40):
            storage.save([rec(f"w{t}-{i}", [float(t), float(i), 0.0, 0.0], scope=f"/w{t}",
                              categories=["odd" if i % 2 else "even"])])
            if i % 2:
                assert storage.delete(record_ids=[f"w{t}-{i - 1}"]) == 1
                storage.update(rec(f"w{t}-{i}", [float(t), float(i), 1.0, 0.0], scope=f"/w{t}",
                                   categories=["odd"], content="v2"))
                storage.touch_records([f"w{t}-{i}"])
            storage.list_categories()

    run_in_threads(worker, 6)
    expected = {f"w{t}-{i}" for t in range(6) for i in range(1, 40, 2)}
    for storage in instances:
        assert storage.count() == 120
        records = storage.list_records(limit=1000)
        assert {r.id for r in records} == expected
        assert {r.content for r in records} == {"v2"}
        assert storage.list_categories() == {"odd": 120}
        assert storage.list_scopes() == [f"/w{t}" for t in range(6)]


# --------------------------------------------------------------------------- Rust only: processes

# Children load crewai's two memory modules by file: importing the ``crewai`` package costs
# seconds per interpreter, and these modules need only pydantic.
CHILD_PRELUDE = """
import importlib.util, json, os, sys, time
from datetime import datetime, timedelta

def _load(name, *parts):
    root = importlib.util.find_spec("crewai").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, *parts))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)

_load("crewai.memory.types", "memory", "types.py")
_load("crewai.memory.storage.backend", "memory", "storage", "backend.py")
from crewai.memory.types import MemoryRecord
from crewai_rust.memory import RustMemoryStorage

BASE = datetime(2024, 3, 1, 9, 30, 15, 250000)

def rec(rid, embedding, scope="/", minute=0):
    at = BASE + timedelta(minutes=minute)
    return MemoryRecord(id=rid, content="content " + rid, scope=scope, embedding=embedding,
                        created_at=at, last_accessed=at)
"""


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("CREWAI_RUST")}


def spawn(body: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD_PRELUDE + body], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=child_env(), cwd=REPO_ROOT.parent,
    )


def run_together(bodies: list[str], go: Path) -> list[tuple[subprocess.Popen[str], str, str]]:
    """Start one child per body, wait until each prints "ready", then create ``go`` so they
    start their work at the same moment; returns each child with its stdout and stderr."""
    children = [spawn(body) for body in bodies]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr.read() if child.stderr else ""
        go.touch()
        outputs = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return [(child, out, err) for child, (out, err) in zip(children, outputs)]


def run_child(body: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [sys.executable, "-c", CHILD_PRELUDE + body], capture_output=True, text=True,
        env=child_env(), cwd=REPO_ROOT.parent, timeout=timeout, check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rust_only_two_processes_write_one_dir_at_once(tmp_path: Path) -> None:
    store, go = tmp_path / "store", tmp_path / "go"
    body = """
name = {name!r}
s = RustMemoryStorage({store!r})
print("ready", flush=True)
while not os.path.exists({go!r}):
    time.sleep(0.002)
for i in range(150):
    s.save([rec(f"{{name}}-{{i}}", [float(i), 1.0, 0.0, 0.0], scope="/" + name)])
    if i % 10 == 0:
        s.search([0.0, 0.0, 0.0, 0.0], limit=5)
        s.count()
print("done", s.count(), flush=True)
"""
    finished = run_together([body.format(name=name, store=str(store), go=str(go)) for name in ("p", "q")], go)
    for child, out, err in finished:
        assert child.returncode == 0, err
        assert out.startswith("done")
    storage = rust_storage_class()(str(store))
    try:
        assert storage.count() == 300
        assert storage.count("/p") == storage.count("/q") == 150
        expected = {f"{n}-{i}" for n in ("p", "q") for i in range(150)}
        assert set(ids(storage.list_records(limit=1000))) == expected
    finally:
        storage.close()


def test_rust_only_an_open_instance_sees_another_process_writes(make_rust: StorageFactory, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    mine = make_rust(store)
    mine.save([rec("a1", [1.0, 0.0, 0.0, 0.0], scope="/a")])
    assert mine.count() == 1

    out = run_child(f"""
s = RustMemoryStorage({store!r})
print(s.count())
s.save([rec("b1", [0.0, 0.0, 0.0, 0.0], scope="/b", minute=1),
        rec("b2", [0.0, 2.0, 0.0, 0.0], scope="/b", minute=2)])
s.update(rec("a1", [1.0, 0.0, 0.0, 0.0], scope="/a").model_copy(update={{"content": "edited by b"}}))
""")
    assert out.split() == ["1"]
    assert mine.count() == 3
    assert mine.count("/b") == 2
    assert mine.list_scopes() == ["/a", "/b"]
    assert ids(mine.search(ZERO4)) == ["b1", "a1", "b2"]
    got = mine.get_record("a1")
    assert got is not None and got.content == "edited by b"
    assert ids(mine.list_records()) == ["b2", "b1", "a1"]

    assert mine.delete(record_ids=["b1"]) == 1
    mine.touch_records(["b2"])
    out = run_child(f"""
s = RustMemoryStorage({store!r})
print(json.dumps({{"count": s.count(), "ids": sorted(r.id for r in s.list_records()),
                   "touched": s.get_record("b2").last_accessed.isoformat()}}))
s.delete(scope_prefix="/b")
""")
    seen = json.loads(out)
    assert seen["count"] == 2 and seen["ids"] == ["a1", "b2"]
    assert datetime.fromisoformat(seen["touched"]) > BASE + timedelta(days=1)
    assert ids(mine.list_records()) == ["a1"]
    assert mine.count() == 1


def test_rust_only_another_process_dimension_and_reset_are_seen(make_rust: StorageFactory, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    mine = make_rust(store)  # opened before anything exists: dimension unknown
    run_child(f"RustMemoryStorage({store!r}).save([rec('four', [1.0, 2.0, 3.0, 4.0])])")
    assert ids(mine.search([1.0, 2.0, 3.0, 4.0])) == ["four"]
    with pytest.raises(EmbeddingDimensionMismatchError):
        mine.save([rec("eight", [0.0] * 8)])
    with pytest.raises(EmbeddingDimensionMismatchError):
        mine.search([0.0] * 8)

    run_child(f"s = RustMemoryStorage({store!r}); s.reset(); s.save([rec('two', [1.0, 1.0])])")
    assert mine.count() == 1
    assert mine.get_record("four") is None
    assert ids(mine.search([1.0, 1.0])) == ["two"]
    mine.save([rec("two-b", [0.0, 1.0])])
    with pytest.raises(EmbeddingDimensionMismatchError):
        mine.save([rec("four-b", ZERO4)])
    assert mine.count() == 2


def test_rust_only_a_writer_killed_mid_batch_leaves_every_committed_record(tmp_path: Path) -> None:
    store, batch = str(tmp_path / "store"), 100
    watcher = rust_storage_class()(store)  # open in this process across the crash
    # Records are built unvalidated so that the child spends its time inside save().
    child = spawn(f"""
s = RustMemoryStorage({store!r})
for b in range(100000):
    s.save([MemoryRecord.model_construct(
                id=f"k{{b}}-{{j}}", content="x" * 100, scope=f"/k/{{b % 7}}", categories=["c"],
                metadata={{"b": b}}, importance=0.5, created_at=BASE, last_accessed=BASE,
                embedding=[float(b), float(j)] + [0.5] * 30, source=None, private=False)
            for j in range({batch})])
    print(b, flush=True)
""")
    reported: list[int] = []
    try:
        assert child.stdout is not None
        while len(reported) < 12:
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            reported.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    reported += [int(line) for line in rest.split()]
    assert reported == list(range(len(reported)))

    out = run_child(f"""
s = RustMemoryStorage({store!r})
print(json.dumps({{"count": s.count(), "ids": [r.id for r in s.list_records(limit=10**6)],
                   "scoped": sum(s.count(f"/k/{{i}}") for i in range(7))}}))
""", timeout=60)
    seen = json.loads(out)
    stored = seen["ids"]
    assert len(stored) == len(set(stored)) == seen["count"] == seen["scoped"]
    batches: dict[int, int] = {}
    for rid in stored:
        b = int(rid[1:].split("-")[0])
        batches[b] = batches.get(b, 0) + 1
    for b in reported:
        assert batches.get(b) == batch, f"committed batch {b} incomplete: {batches.get(b)}"
    # At most the batch in flight (or one whose report was lost) beyond those reported,
    # and a batch is stored whole or not at all.
    assert set(batches) - set(reported) <= {len(reported)}
    assert all(n == batch for n in batches.values())

    try:
        assert watcher.count() == seen["count"]
        watcher.save([rec("after", [0.0] * 32)])
        assert watcher.count() == seen["count"] + 1
        assert ids(watcher.search([0.0] * 32, limit=1)) == ["after"]
    finally:
        watcher.close()
    reopened = rust_storage_class()(store)
    try:
        assert reopened.count() == seen["count"] + 1
    finally:
        reopened.close()
    conn = sqlite3.connect(Path(store) / "memories.sqlite3")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()


# --------------------------------------------------------------------------- Rust only: LanceDB import


def tree_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def lancedb_fixture_records() -> list[MemoryRecord]:
    rng = random.Random(7)
    out = []
    for i in range(14):
        out.append(MemoryRecord(
            id=f"m{i}" if i != 3 else "it's-3",
            content=f"memory {i} 'quoted' ✓",
            scope=["/", "/crew", "/crew/agent", "/crew/agent/deep", "/other"][i % 5],
            categories=[["decision"], ["fact", "decision"], [], ["ünï"]][i % 4],
            metadata={"i": i, "f": i / 2, "even": i % 2 == 0, "tag": f"t{i % 3}", "nested": {"l": [i, "x", None]}},
            importance=round(0.05 * i, 2),
            created_at=BASE + timedelta(hours=i, microseconds=i),
            last_accessed=BASE + timedelta(days=1, hours=i),
            embedding=None if i == 5 else [rng.uniform(-1, 1) for _ in range(8)],
            source=None if i % 3 == 0 else f"user-{i}",
            private=i % 4 == 1,
        ))
    return out


def write_lancedb_store(path: Path) -> list[MemoryRecord]:
    records = lancedb_fixture_records()
    lance = LanceDBStorage(path=str(path))
    lance.save(records[:8])
    lance.save(records[8:])
    # A deleted row and an updated row: only the current versions are imported.
    lance.delete(record_ids=["m13"])
    records[2] = records[2].model_copy(update={"content": "updated in lancedb", "metadata": {"v": 2}})
    lance.update(records[2])
    del lance
    records[5] = records[5].model_copy(update={"embedding": [0.0] * 8})
    return [r for r in records if r.id != "m13"]


def test_rust_only_takes_in_a_lance_store_without_touching_it(make_rust: StorageFactory, tmp_path: Path) -> None:
    store = tmp_path / "store"
    expected = write_lancedb_store(store)
    lance_dir = store / "memories.lance"
    assert lance_dir.is_dir()
    before = tree_hashes(lance_dir)

    rust = make_rust(store)
    assert rust.count() == len(expected)
    assert rust.vector_dim == 8
    for record in expected:
        assert_same_record(rust.get_record(record.id), record)
    assert rust.get_record("m13") is None
    assert sorted(ids(rust.list_records(limit=100))) == sorted(r.id for r in expected)
    assert rust.list_scopes() == ["/crew", "/other"]
    with pytest.raises(EmbeddingDimensionMismatchError):
        rust.save([rec("narrow", ZERO4)])
    assert tree_hashes(lance_dir) == before

    # Opening again imports nothing more; a record deleted in Rust stays deleted.
    again = make_rust(store)
    assert again.count() == len(expected)
    assert again.delete(record_ids=["m1"]) == 1
    again.save([rec("new", [0.25] * 8)])
    third = make_rust(store)
    assert third.count() == len(expected)
    assert third.get_record("m1") is None and third.get_record("new") is not None
    assert tree_hashes(lance_dir) == before

    # Upstream's LanceDBStorage, opened on the directory, takes in what changed under Rust.
    lance = LanceDBStorage(path=str(store))
    assert lance.count() == len(expected)
    assert lance.get_record("m1") is None and lance.get_record("new") is not None
    for record in expected:
        if record.id != "m1":
            assert_same_record(lance.get_record(record.id), record)

    # A later LanceDB version (a switch back and forth) brings back nothing deleted under
    # Rust and duplicates nothing.
    lance.save([rec("from-lance", [0.5] * 8)])
    lance.optimize()
    del lance
    fourth = make_rust(store)
    stored = ids(fourth.list_records(limit=100))
    assert len(stored) == len(set(stored)) == fourth.count()
    assert fourth.get_record("m1") is None and fourth.get_record("new") is not None
    assert set(stored) == {r.id for r in expected} - {"m1"} | {"new", "from-lance"}


def test_rust_only_two_processes_opening_a_lance_store_at_once_import_it_once(tmp_path: Path) -> None:
    store, go = tmp_path / "store", tmp_path / "go"
    expected = write_lancedb_store(store)
    body = f"""
print("ready", flush=True)
while not os.path.exists({str(go)!r}):
    time.sleep(0.002)
s = RustMemoryStorage({str(store)!r})
print(json.dumps(sorted(r.id for r in s.list_records(limit=1000))), s.count(), flush=True)
"""
    finished = run_together([body, body], go)
    want = sorted(r.id for r in expected)
    for child, out, err in finished:
        assert child.returncode == 0, err
        listed, count = out.rsplit(" ", 1)
        assert json.loads(listed) == want and int(count) == len(want)
    storage = rust_storage_class()(str(store))
    try:
        assert storage.count() == len(want)
        for record in expected:
            assert_same_record(storage.get_record(record.id), record)
    finally:
        storage.close()


def test_rust_only_imported_store_searches_like_lance(make_rust: StorageFactory, tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_lancedb_store(store)
    query = [0.3, -0.2, 0.1, 0.0, 0.5, -0.5, 0.25, 0.9]
    cases: list[dict[str, Any]] = [{}, {"scope_prefix": "/crew"}, {"limit": 3}, {"min_score": 0.2}]
    lance = LanceDBStorage(path=str(store))
    want = [lance.search(query, **kw) for kw in cases]
    info = lance.get_scope_info("/crew")
    categories = lance.list_categories()
    del lance
    rust = make_rust(store)
    for kw, expected in zip(cases, want):
        got = rust.search(query, **kw)
        assert ids(got) == ids(expected), kw
        assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert rust.get_scope_info("/crew") == info
    assert rust.list_categories() == categories


def test_rust_only_imports_an_empty_lance_table_with_its_dimension(make_rust: StorageFactory, tmp_path: Path) -> None:
    LanceDBStorage(path=str(tmp_path / "store"), vector_dim=8)
    assert (tmp_path / "store" / "memories.lance").is_dir()
    rust = make_rust(tmp_path / "store")
    assert rust.count() == 0
    with pytest.raises(EmbeddingDimensionMismatchError):
        rust.save([rec("narrow", ZERO4)])
    rust.save([rec("wide", [0.0] * 8)])
    assert rust.count() == 1


# --------------------------------------------------------------------------- Rust only: Memory's storage selection


def fake_embedder(texts: list[str]) -> list[list[float]]:
    return [[0.1] * 8 for _ in texts]


def build_memory(storage: Any = None) -> Any:
    from crewai.memory.unified_memory import Memory

    if storage is None:
        return Memory(llm=MagicMock(), embedder=fake_embedder)
    return Memory(storage=storage, llm=MagicMock(), embedder=fake_embedder)


@pytest.fixture()
def storage_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path / "home"))
    # Upstream's flow tracing otherwise waits 5 s for a parent span in every remember().
    monkeypatch.setenv("CREWAI_TRACING_ENABLED", "false")
    monkeypatch.chdir(tmp_path)
    storage_factory.set_memory_storage_factory(None)
    return tmp_path


def test_memory_uses_rust_storage_by_default(storage_home: Path) -> None:
    cls = rust_storage_class()
    with_path = build_memory(str(storage_home / "db"))
    assert isinstance(with_path._storage, cls)
    assert Path(with_path._storage.db_path) == storage_home / "db" / "memories.sqlite3"
    default = build_memory()
    assert isinstance(default._storage, cls)
    assert Path(default._storage.db_path) == storage_home / "home" / "memory" / "memories.sqlite3"

    record = with_path.remember("We chose Rust.", scope="/project", categories=["decision"], importance=0.7)
    assert with_path._storage.count("/project") == 1
    assert_same_record(with_path._storage.get_record(record.id), record)
    matches = with_path.recall("Rust", scope="/project", limit=5, depth="shallow")
    assert [m.record.id for m in matches] == [record.id]
    assert with_path.forget(scope="/project") == 1
    assert with_path._storage.count() == 0


@pytest.mark.parametrize("switch", ["CREWAI_RUST", "CREWAI_RUST_MEMORY"])
def test_memory_switched_off_uses_lance(storage_home: Path, monkeypatch: pytest.MonkeyPatch, switch: str) -> None:
    monkeypatch.setenv(switch, "0")
    assert type(build_memory(str(storage_home / "db"))._storage) is LanceDBStorage
    assert type(build_memory()._storage) is LanceDBStorage
    assert not (storage_home / "db" / "memories.sqlite3").exists()


def test_memory_keeps_an_explicit_instance_and_a_registered_factory(storage_home: Path) -> None:
    lance = LanceDBStorage(path=str(storage_home / "lance"))
    assert build_memory(lance)._storage is lance
    rust = rust_storage_class()(str(storage_home / "rust"))
    try:
        assert build_memory(rust)._storage is rust
        chosen = LanceDBStorage(path=str(storage_home / "chosen"))
        storage_factory.set_memory_storage_factory(lambda spec: chosen if spec == "custom" else None)
        try:
            assert build_memory("custom")._storage is chosen
            assert isinstance(build_memory(str(storage_home / "db"))._storage, rust_storage_class())
        finally:
            storage_factory.set_memory_storage_factory(None)
    finally:
        rust.close()


def test_memory_on_an_old_lance_store_imports_it_and_reset_all_takes_a_new_dimension(storage_home: Path) -> None:
    path = storage_home / "db"
    old = LanceDBStorage(path=str(path), vector_dim=4)
    old.save([rec("old", ZERO4, scope="/facts")])
    del old
    mem = build_memory(str(path))
    assert isinstance(mem._storage, rust_storage_class())
    assert mem._storage.count() == 1
    with pytest.raises(EmbeddingDimensionMismatchError):
        mem._storage.search([0.1] * 8)
    mem.reset_all()
    mem.remember("new embedder output", scope="/facts", categories=["test"], importance=0.5)
    assert [m.record.content for m in mem.recall("new embedder output", scope="/facts", depth="shallow")] == [
        "new embedder output"
    ]
