"""Switching the memory component between backends: one set of records, whichever opens the store."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from conftest import run_in_threads
from crewai.memory.storage.lancedb_storage import LanceDBStorage
from crewai.memory.types import MemoryRecord
from crewai.memory.unified_memory import Memory

from crewai_rust import cli
from crewai_rust.memory import DB_FILENAME, RustMemoryStorage, StoredRecord
from crewai_rust.memory_sync import _Side, fingerprint, plan_merge

DIM = 8
STEP = Path(__file__).with_name("memory_switch_step.py")


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


_STORAGE = {"0": "LanceDBStorage", "1": "RustMemoryStorage"}


@pytest.fixture(autouse=True)
def no_tracing_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's tracing waits 5 s per remember() outside a crew; not what is tested here."""
    monkeypatch.setenv("CREWAI_TRACING_ENABLED", "false")


# Worker name -> (CREWAI_RUST_MEMORY, native module importable).
_WORKERS = {"0": ("0", True), "1": ("1", True), "0 without native": ("0", False)}


class _Backends:
    """A live process per backend; each step opens the store anew in one of them."""

    def __init__(self, store: Path) -> None:
        import multiprocessing

        sys.path.insert(0, str(STEP.parent))
        import memory_switch_step

        self.store = store
        self.workers: dict[str, tuple[Any, Any]] = {}
        self._context = multiprocessing.get_context("spawn")
        self._serve = memory_switch_step.serve

    def _worker(self, name: str) -> tuple[Any, Any]:
        if name not in self.workers:
            backend, native = _WORKERS[name]
            ours, theirs = self._context.Pipe()
            process = self._context.Process(target=self._serve, args=(theirs, backend, not native), daemon=True)
            process.start()
            self.workers[name] = (process, ours)
        return self.workers[name]

    def step(self, worker: str, *ops: tuple[str, object]) -> list[str]:
        _, conn = self._worker(worker)
        conn.send((str(self.store), ops))
        assert conn.poll(300), f"step {ops} in the {worker!r} worker did not answer in 300 s"
        status, shown = conn.recv()
        assert status == "ok", shown
        assert shown["storage"] == _STORAGE[_WORKERS[worker][0]]
        return shown["contents"]

    def close(self) -> None:
        for process, conn in self.workers.values():
            conn.send(None)
        for process, _ in self.workers.values():
            process.join(30)
            if process.is_alive():
                process.kill()


@pytest.fixture
def backends(tmp_path: Path) -> Iterator[_Backends]:
    running = _Backends(tmp_path / "memory")
    yield running
    running.close()


@pytest.mark.parametrize("first", ["0", "1"], ids=["python-first", "rust-first"])
def test_switching_backends_shows_one_set_of_records(backends: _Backends, first: str) -> None:
    """The issue's sequence (python first) and its mirror (rust first), each step opening the store anew."""
    one, other = first, "1" if first == "0" else "0"
    step = backends.step
    assert step(one, ("remember", ["A", "B", "C"])) == ["A", "B", "C"]
    assert step(other) == ["A", "B", "C"]
    assert step(other, ("forget", ["B"]), ("remember", ["D"])) == ["A", "C", "D"]
    assert step(one) == ["A", "C", "D"]
    assert step(one, ("forget", ["C"]), ("remember", ["E"]), ("update", ["A", "A2"])) == ["A2", "D", "E"]
    assert step(other) == ["A2", "D", "E"]
    assert step(one, ("reset_all", None)) == []
    assert step(other) == []
    assert step(other, ("remember", ["A", "B", "C"])) == ["A", "B", "C"]
    assert step(one) == ["A", "B", "C"]
    assert step(other, ("reset_all", None), ("remember", ["F"])) == ["F"]
    assert step(one) == ["F"]
    assert step(other) == ["F"]


def test_the_python_backend_takes_the_rust_stores_changes_without_the_native_module(backends: _Backends) -> None:
    assert backends.step("1", ("remember", ["A", "B"])) == ["A", "B"]
    assert backends.step("0 without native", ("forget", ["A"])) == ["B"]
    assert backends.step("1") == ["B"]


def test_the_rust_side_only_reads_lancedb_files(backends: _Backends) -> None:
    backends.step("0", ("remember", ["A", "B"]))
    lance_before = _tree_digest(backends.store / "memories.lance")
    assert backends.step("1", ("remember", ["C"]), ("forget", ["A"])) == ["B", "C"]
    assert _tree_digest(backends.store / "memories.lance") == lance_before


def test_memory_export_brings_lancedb_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "memory"
    rust = RustMemoryStorage(store)
    rust.save([MemoryRecord(content=text, embedding=[1.0] * DIM) for text in ("a", "b")])
    rust.close()
    assert cli.main(["memory-export", str(store)]) == 0
    assert "2 memory record(s)" in capsys.readouterr().out
    assert {r.content for r in LanceDBStorage(path=store).list_records()} == {"a", "b"}


@pytest.mark.parametrize("backend", ["0", "1"], ids=["python", "rust"])
def test_crew_reset_memories_empties_what_both_backends_see(backends: _Backends, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """``crewai reset-memories`` runs ``crew.reset_memories``: under either backend, both show nothing after."""
    from crewai import Agent, Crew, Task

    other = "1" if backend == "0" else "0"
    assert backends.step(other, ("remember", ["A", "B"])) == ["A", "B"]
    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    monkeypatch.setenv("CREWAI_RUST_MEMORY", backend)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-used")
    memory = Memory(llm=MagicMock(), embedder=_embedder())
    assert type(memory._storage).__name__ == _STORAGE[backend]
    assert _contents(memory) == {"A", "B"}
    agent = Agent(role="r", goal="g", backstory="b", llm="gpt-4o-mini")
    crew = Crew(agents=[agent], tasks=[Task(description="d", expected_output="o", agent=agent)], memory=memory)
    crew.reset_memories(command_type="memory")
    assert memory._storage.count() == 0
    memory.close()
    assert backends.step(other) == []
    assert backends.step(backend) == []


def _row(record_id: str, content: str, accessed: str) -> StoredRecord:
    return StoredRecord(record_id, content, "/", "[]", "{}", 0.5, "2026-01-01T00:00:00", 0, accessed, "", False,
                        b"\0" * 4)


def test_a_record_changed_on_both_sides_is_decided_alike_from_either_side() -> None:
    old = _row("x", "old", "2026-01-01T00:00:00")
    early = _row("x", "early", "2026-01-02T00:00:00")
    late = _row("x", "late", "2026-01-03T00:00:00")
    base = {"x": fingerprint(old)}
    # A later last_accessed wins, whichever side opens.
    plan = plan_merge(theirs=_Side.of([late]), mine=_Side.of([early]), base=base)
    assert plan.upserts == [late] and plan.base_set == {"x": fingerprint(late)}
    plan = plan_merge(theirs=_Side.of([early]), mine=_Side.of([late]), base=base)
    assert not plan
    # A record beats a deletion, whichever side deleted.
    plan = plan_merge(theirs=_Side.of([]), mine=_Side.of([early]), base=base)
    assert not plan
    plan = plan_merge(theirs=_Side.of([early]), mine=_Side.of([]), base=base)
    assert plan.upserts == [early]
    # Both deleted, or both wrote the same: only the base follows.
    plan = plan_merge(theirs=_Side.of([]), mine=_Side.of([]), base=base)
    assert (plan.upserts, plan.deletes, plan.base_drop) == ([], [], ["x"])
    plan = plan_merge(theirs=_Side.of([late]), mine=_Side.of([late]), base=base)
    assert (plan.upserts, plan.base_set) == ([], {"x": fingerprint(late)})


def test_duplicate_lancedb_rows_become_one_record(tmp_path: Path) -> None:
    store = tmp_path / "memory"
    lance = LanceDBStorage(path=store, vector_dim=DIM)
    twice = MemoryRecord(content="twice", embedding=[1.0] * DIM)
    lance.save([twice])
    lance.save([twice.model_copy(update={"content": "twice, later"})])
    assert len(lance.list_records()) == 2  # LanceDB's save appends
    rust = RustMemoryStorage(store)
    assert [r.content for r in rust.list_records()] == ["twice, later"]
    rust.save([MemoryRecord(content="other", embedding=[2.0] * DIM)])
    rust.close()
    assert sorted(r.content for r in LanceDBStorage(path=store).list_records()) == ["other", "twice, later"]


def test_a_store_from_the_one_way_import_keeps_its_deletions(tmp_path: Path) -> None:
    """Stores written before the two-way sync: ids the old import brought count as agreed."""
    store = tmp_path / "memory"
    lance = LanceDBStorage(path=store, vector_dim=DIM)
    kept, forgotten = (MemoryRecord(content=c, embedding=[1.0] * DIM) for c in ("kept", "forgotten"))
    lance.save([kept, forgotten])
    rust = RustMemoryStorage(store)
    rust.delete(record_ids=[forgotten.id])
    rust.close()
    with sqlite3.connect(store / DB_FILENAME) as conn:  # as the one-way import left it
        conn.executescript(
            "DROP TABLE lancedb_sync_base; DROP TABLE lancedb_sync_state;"
            "CREATE TABLE imported (source TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (source, id));"
        )
        conn.executemany("INSERT INTO imported VALUES ('lancedb:memories', ?)", [(kept.id,), (forgotten.id,)])
    conn.close()
    assert [r.content for r in LanceDBStorage(path=store).list_records()] == ["kept"]
    assert [r.content for r in RustMemoryStorage(store).list_records()] == ["kept"]


def test_a_change_that_cannot_be_taken_is_logged_and_stays_pending(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "memory"
    elsewhere = RustMemoryStorage(tmp_path / "elsewhere")
    elsewhere.save([MemoryRecord(content="four", embedding=[1.0] * 4)])
    elsewhere.close()
    LanceDBStorage(path=store).save([MemoryRecord(content="eight", embedding=[1.0] * DIM)])
    (tmp_path / "elsewhere" / DB_FILENAME).rename(store / DB_FILENAME)
    with caplog.at_level(logging.ERROR, logger="crewai_rust"):
        rust = RustMemoryStorage(store)
    assert [r.content for r in rust.list_records()] == ["four"]
    assert str(store) in caplog.text and "EmbeddingDimensionMismatchError" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="crewai_rust"):
        assert [r.content for r in LanceDBStorage(path=store).list_records()] == ["eight"]
    assert "4-dimensional" in caplog.text and str(store) in caplog.text
    # The user resets the Rust store: LanceDB's record is taken in at the next open.
    rust.reset()
    rust.close()
    assert [r.content for r in RustMemoryStorage(store).list_records()] == ["eight"]


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


def test_stores_opened_at_once_take_lancedbs_records_once(tmp_path: Path) -> None:
    store = tmp_path / "memory"
    LanceDBStorage(path=store).save([MemoryRecord(content=f"r{i}", embedding=[float(i + 1)] * DIM) for i in range(50)])
    opened: list[RustMemoryStorage] = []
    run_in_threads(lambda _: opened.append(RustMemoryStorage(store)), 4)
    assert [storage.count() for storage in opened] == [50] * 4
    for storage in opened:
        storage.close()
    assert len(LanceDBStorage(path=store).list_records(limit=1000)) == 50
