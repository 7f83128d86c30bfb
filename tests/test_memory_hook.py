"""The memory hook patch: which storage specs are offered to crewai_rust, under both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crewai.memory.storage import factory
from crewai.memory.storage.lancedb_storage import LanceDBStorage
from crewai.memory.unified_memory import Memory
import crewai.memory.unified_memory as unified_memory


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
    # No Rust storage has landed yet, so both backends build upstream's LanceDB.
    assert isinstance(default._storage, LanceDBStorage)
    assert isinstance(with_path._storage, LanceDBStorage)


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


def test_requiring_rust_memory_before_it_exists_fails_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    import crewai_rust

    if "memory" in crewai_rust.IMPLEMENTED_COMPONENTS:
        pytest.skip("the Rust memory storage exists")
    monkeypatch.setenv("CREWAI_RUST_MEMORY", "1")
    with pytest.raises(crewai_rust.ComponentNotImplementedError, match="CREWAI_RUST_MEMORY=1"):
        Memory()
