"""Every string a record may hold stays visible: the Rust store answers as LanceDB does.

Python strings may hold lone surrogates (``"c\\ud800"``), which UTF-8, and so
a Rust ``String``, cannot. The Rust store parses stored categories and metadata
losslessly and ``crewai_rust.memory`` maps filter strings the same way, so such
a record is counted, found and deleted like any other. The property test saves
random records to LanceDB and to the Rust store and compares every query.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from crewai.memory.storage.lancedb_storage import LanceDBStorage
from crewai.memory.types import MemoryRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crewai_rust.memory import RustMemoryStorage, _from_native_str, _to_native_str

AWKWARD = ["c\ud800", "\udc00", "x\ud83d", "\ud800\udc00", "\uffff", "\uffff\ue000", "\ue000", "é", "plain", "a b"]

# Strings from the awkward ones and arbitrary code points, lone surrogates included.
words = st.one_of(st.sampled_from(AWKWARD), st.text(st.characters(codec=None, exclude_characters="\x00"), max_size=4))


def _record(rid: str, categories: list[str], note: str, n: int) -> MemoryRecord:
    return MemoryRecord(
        id=rid, content=f"content {rid}", scope="/s", categories=categories,
        metadata={"note": note, "n": n}, embedding=[float(n), 1.0],
        created_at=datetime(2024, 1, 1, 0, n % 60), last_accessed=datetime(2024, 1, 1, 0, n % 60),
    )


def _ids(results: list[tuple[MemoryRecord, float]]) -> list[str]:
    return sorted(record.id for record, _ in results)


def _answers(storage: Any, categories: list[str], notes: list[str]) -> dict[str, Any]:
    info = storage.get_scope_info("/s")
    answers: dict[str, Any] = {
        "list_categories": storage.list_categories(),
        "scope_categories": info.categories,
        "count": storage.count(),
    }
    for c in categories:
        answers[f"search categories={c!r}"] = _ids(storage.search([0.0, 1.0], categories=[c], limit=50))
    for note in notes:
        answers[f"search note={note!r}"] = _ids(storage.search([0.0, 1.0], metadata_filter={"note": note}, limit=50))
    return answers


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.lists(words, max_size=3), words), min_size=1, max_size=5))
def test_every_query_answers_as_lancedb_does(rows: list[tuple[list[str], str]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lance = LanceDBStorage(path=str(Path(tmp) / "lance"), vector_dim=2)
        rust = RustMemoryStorage(Path(tmp) / "rust", vector_dim=2)
        try:
            records = [_record(f"r{i}-{uuid.uuid4().hex[:6]}", cats, note, i) for i, (cats, note) in enumerate(rows)]
            for storage in (lance, rust):
                storage.save(records)
            categories = sorted({c for cats, _ in rows for c in cats})
            notes = sorted({note for _, note in rows})
            assert _answers(rust, categories, notes) == _answers(lance, categories, notes)
            for record in records:  # both keep JSON's round trip (a surrogate pair comes back joined)
                got, want = rust.get_record(record.id), lance.get_record(record.id)
                assert got is not None and want is not None
                assert (got.categories, got.metadata) == (want.categories, want.metadata)
            # Deleting by each category removes the same records from both.
            for c in categories:
                assert rust.delete(categories=[c]) == lance.delete(categories=[c]), c
            assert rust.count() == lance.count()
            if notes:
                assert rust.delete(metadata_filter={"note": notes[0]}) == lance.delete(metadata_filter={"note": notes[0]})
            assert rust.count() == lance.count()
        finally:
            rust.close()


def test_a_lone_surrogate_category_is_counted_found_and_deleted(tmp_path: Path) -> None:
    rust = RustMemoryStorage(tmp_path / "rust", vector_dim=2)
    try:
        rust.save([_record("a", ["c\ud800"], "bad\ud800", 1), _record("b", ["c"], "ok", 2)])
        assert rust.list_categories() == {"c\ud800": 1, "c": 1}
        assert rust.get_scope_info("/s").categories == ["c", "c\ud800"]
        assert _ids(rust.search([0.0, 1.0], categories=["c\ud800"])) == ["a"]
        assert _ids(rust.search([0.0, 1.0], metadata_filter={"note": "bad\ud800"})) == ["a"]
        assert rust.delete(categories=["c\ud800"]) == 1
        assert rust.count() == 1
    finally:
        rust.close()


@pytest.mark.parametrize("text", AWKWARD + ["\uffff\ud800\uffff", "\ud800\ud800", ""])
def test_the_native_string_mapping_round_trips(text: str) -> None:
    native = _to_native_str(text)
    native.encode("utf-8")  # representable on the native side
    assert _from_native_str(native) == text


@pytest.mark.parametrize("field", ["id", "content", "scope", "source"])
def test_a_lone_surrogate_in_a_text_column_is_refused_by_both(tmp_path: Path, field: str) -> None:
    """Columns stored as text (not JSON) cannot hold one in either store: an error, never a drop."""
    for storage in (LanceDBStorage(path=str(tmp_path / "lance"), vector_dim=2),
                    RustMemoryStorage(tmp_path / "rust", vector_dim=2)):
        fields: dict[str, Any] = {"id": "x", "content": "c", "scope": "/s", "embedding": [1.0, 2.0]}
        fields[field] = "/s\ud800" if field == "scope" else "v\ud800"
        with pytest.raises(UnicodeEncodeError):
            storage.save([MemoryRecord(**fields)])
        assert storage.count() == 0


def test_a_lone_surrogate_scope_filter_is_refused_by_both(tmp_path: Path) -> None:
    for storage in (LanceDBStorage(path=str(tmp_path / "lance"), vector_dim=2),
                    RustMemoryStorage(tmp_path / "rust", vector_dim=2)):
        storage.save([_record("a", ["c"], "n", 1)])
        with pytest.raises(UnicodeEncodeError):
            storage.search([0.0, 1.0], scope_prefix="/s\ud800")
