"""Switching the memory component between backends loses nothing; resets reach the Rust store."""

from __future__ import annotations

import hashlib
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from crewai.memory.storage.lancedb_storage import LanceDBStorage
from crewai.memory.unified_memory import Memory

from crewai_rust import cli
from crewai_rust.memory import DB_FILENAME, RustMemoryStorage

DIM = 8


def _embedder() -> MagicMock:
    def embed(texts: list[str]) -> list[list[float]]:
        return [[float((hash(t) >> (4 * i)) % 17) + 1.0 for i in range(DIM)] for t in texts]

    embedder = MagicMock(side_effect=embed)
    return embedder


def _memory(path: Path) -> Memory:
    return Memory(storage=str(path), llm=MagicMock(), embedder=_embedder())


def _remember(memory: Memory, texts: list[str], scope: str = "/crew") -> None:
    for text in texts:
        memory.remember(text, scope=scope, categories=["fact"], importance=0.5)
    memory.drain_writes()


def _contents(memory: Memory) -> set[str]:
    return {record.content for record in memory._storage.list_records(limit=1000)}


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_python_then_rust_then_python_keeps_every_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "memory"
    monkeypatch.setenv("CREWAI_RUST_MEMORY", "0")
    upstream = _memory(store)
    assert isinstance(upstream._storage, LanceDBStorage)
    _remember(upstream, ["written under python 1", "written under python 2"])
    lance_before = _tree_digest(store / "memories.lance")

    monkeypatch.delenv("CREWAI_RUST_MEMORY")
    rust = _memory(store)
    assert isinstance(rust._storage, RustMemoryStorage)
    assert _contents(rust) == {"written under python 1", "written under python 2"}
    _remember(rust, ["written under rust"])
    rust.close()
    # Importing only reads LanceDB's files.
    assert _tree_digest(store / "memories.lance") == lance_before
    assert (store / DB_FILENAME).is_file()

    # Going back: the documented step writes the Rust store into LanceDB.
    assert cli.main(["memory-export", str(store)]) == 0
    assert "exported 3 memory record(s)" in capsys.readouterr().out
    monkeypatch.setenv("CREWAI_RUST_MEMORY", "0")
    back = _memory(store)
    assert isinstance(back._storage, LanceDBStorage)
    assert _contents(back) == {"written under python 1", "written under python 2", "written under rust"}
    _remember(back, ["written under python again"])

    # And forward again: only what LanceDB gained is imported, nothing twice.
    monkeypatch.delenv("CREWAI_RUST_MEMORY")
    again = _memory(store)
    assert _contents(again) == {
        "written under python 1", "written under python 2", "written under rust", "written under python again",
    }
    assert again._storage.count() == 4


def test_a_record_deleted_under_rust_is_not_imported_again(tmp_path: Path) -> None:
    store = tmp_path / "memory"
    lance = LanceDBStorage(path=str(store), vector_dim=DIM)
    upstream = Memory(storage=lance, llm=MagicMock(), embedder=_embedder())
    _remember(upstream, ["keep", "forget"])
    rust = RustMemoryStorage(store)
    forget = next(r for r in rust.list_records() if r.content == "forget")
    assert rust.delete(record_ids=[forget.id]) == 1
    rust.close()
    assert {r.content for r in RustMemoryStorage(store).list_records()} == {"keep"}


def test_crew_reset_memories_resets_the_rust_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crewai import Agent, Crew, Task

    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    memory = Memory(llm=MagicMock(), embedder=_embedder())
    assert isinstance(memory._storage, RustMemoryStorage)
    assert memory._storage.path == tmp_path / "memory"
    _remember(memory, ["a", "b"], scope="/x")
    agent = Agent(role="r", goal="g", backstory="b", llm="gpt-4o-mini")
    crew = Crew(agents=[agent], tasks=[Task(description="d", expected_output="o", agent=agent)], memory=memory)
    assert memory._storage.count() == 2
    crew.reset_memories(command_type="memory")
    assert memory._storage.count() == 0
    assert RustMemoryStorage(tmp_path / "memory").count() == 0


def test_closed_storage_file_can_be_removed_and_storage_reopens(tmp_path: Path) -> None:
    storage = RustMemoryStorage(tmp_path)
    memory = Memory(storage=storage, llm=MagicMock(), embedder=_embedder())
    _remember(memory, ["one"])
    memory.close()
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / (DB_FILENAME + suffix)).unlink(missing_ok=True)
    assert not (tmp_path / DB_FILENAME).exists()
    # A later call opens a fresh store rather than writing into an unlinked file.
    assert storage.count() == 0
    assert (tmp_path / DB_FILENAME).exists()
