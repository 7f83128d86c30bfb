"""The memory hook patch: which storage specs are offered to crewai_rust, under both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from crewai.memory import unified_memory
from crewai.memory.storage import factory
from crewai.memory.storage.lancedb_storage import LanceDBStorage
from crewai.memory.unified_memory import Memory

from crewai_rust.memory import RustMemoryStorage


@pytest.fixture(autouse=True)
def isolated_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    factory.set_memory_storage_factory(None)


@pytest.fixture()
def offered(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the specs the patched Memory offers to crewai_rust (which declines them)."""
    calls: list[str] = []
    real = unified_memory._rust_storage_for_spec

    def spy(spec: str) -> Any:
        calls.append(spec)
        return real(spec)

    monkeypatch.setattr(unified_memory, "_rust_storage_for_spec", spy)
    return calls


def test_default_and_path_specs_are_offered_then_upstream_storage_is_used(
    backend: str, offered: list[str], tmp_path: Path
) -> None:
    default = Memory()
    with_path = Memory(storage=str(tmp_path / "store"))
    assert offered == ["lancedb", str(tmp_path / "store")]
    expected = RustMemoryStorage if backend == "rust" else LanceDBStorage
    assert isinstance(default._storage, expected)
    assert isinstance(with_path._storage, expected)
    if backend == "rust":
        # The default spec is LanceDBStorage's default directory, a path spec is that directory.
        assert default._storage.path == tmp_path / "memory"
        assert with_path._storage.db_path == tmp_path / "store" / "memories.sqlite3"


def test_memory_switch_off_keeps_lancedb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CREWAI_RUST_MEMORY", "0")
    assert isinstance(Memory(storage=str(tmp_path / "store"))._storage, LanceDBStorage)


def test_registered_factory_and_explicit_instance_bypass_the_hook(backend: str, offered: list[str]) -> None:
    sentinel = object()
    factory.set_memory_storage_factory(lambda spec: sentinel if spec == "custom" else None)
    try:
        assert Memory(storage="custom")._storage is sentinel
    finally:
        factory.set_memory_storage_factory(None)
    explicit = LanceDBStorage()
    assert Memory(storage=explicit)._storage is explicit
    assert offered == []


def test_qdrant_edge_spec_is_not_offered(offered: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import crewai.memory.storage.qdrant_edge_storage as qdrant

    class FakeQdrant:
        pass

    monkeypatch.setattr(qdrant, "QdrantEdgeStorage", FakeQdrant)
    assert isinstance(Memory(storage="qdrant-edge")._storage, FakeQdrant)
    assert offered == []


def test_a_storage_returned_by_crewai_rust_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    sentinel = object()
    monkeypatch.setattr(unified_memory, "_rust_storage_for_spec", lambda spec: sentinel)
    assert Memory()._storage is sentinel


@pytest.mark.parametrize("content", [b"\x00garbage" * 500, b""], ids=["garbage", "another-schema"])
def test_a_broken_store_file_logs_and_the_crew_runs(
    content: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Upstream's outcome on the Rust backend: the crew is built, the error names the file."""
    import sqlite3

    from crewai import Agent, Crew, Task

    monkeypatch.setenv("CREWAI_RUST", "1")
    store = tmp_path / "memory" / "memories.sqlite3"
    store.parent.mkdir()
    if content:
        store.write_bytes(content)
    else:  # a database, but someone else's
        with sqlite3.connect(store) as other:
            other.execute("CREATE TABLE invoices (id INTEGER)")
        other.close()
    before = store.read_bytes()
    agent = Agent(role="r", goal="g", backstory="b", llm="gpt-4o-mini")
    with caplog.at_level("ERROR", logger="crewai_rust"):
        crew = Crew(agents=[agent], tasks=[Task(description="d", expected_output="e", agent=agent)], memory=True)
    assert isinstance(crew._memory._storage, LanceDBStorage)
    assert f"the memory store {store} cannot be opened" in caplog.text
    assert store.read_bytes() == before
