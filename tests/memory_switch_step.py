"""Steps of a memory backend-switching sequence for ``test_memory_switch.py``.

A step opens the store through a new ``Memory`` (so the backend in force takes
in the other's changes), runs some operations, and reports the storage class
and the contents ``Memory`` then shows. Steps run in a :func:`serve` process
per backend (spawned), one step per request.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any
from unittest.mock import MagicMock

DIM = 8


def embed(texts: list[str]) -> list[list[float]]:
    return [[float((sum(map(ord, text)) >> i) % 17) + 1.0 for i in range(DIM)] for text in texts]


def run_step(directory: str, ops: list[tuple[str, Any]]) -> dict[str, Any]:
    from crewai.memory.unified_memory import Memory

    memory = Memory(storage=directory, llm=MagicMock(), embedder=MagicMock(side_effect=embed))
    try:
        for op, arg in ops:
            if op == "remember":
                for text in arg:
                    memory.remember(text, scope="/crew", categories=["fact"], importance=0.5)
                memory.drain_writes()
            elif op == "forget":
                ids = [r.id for r in memory.list_records(limit=1000) if r.content in arg]
                assert memory.forget(record_ids=ids) == len(ids), ids
            elif op == "update":
                old, new = arg
                record = next(r for r in memory.list_records(limit=1000) if r.content == old)
                memory.update(record.id, content=new)
            elif op == "reset_all":
                memory.reset_all()
            else:
                raise ValueError(f"unknown step {op!r}")
        contents = sorted(record.content for record in memory.list_records(limit=1000))
        return {"storage": type(memory._storage).__name__, "contents": contents}
    finally:
        memory.close()


def serve(conn: Any, backend: str, without_native: bool = False) -> None:
    """Run the steps ``conn`` sends (``(directory, ops)``; None ends) under
    ``CREWAI_RUST_MEMORY=backend``, with the native module unimportable if asked."""
    if without_native:
        sys.modules["crewai_rust._native"] = None  # type: ignore[assignment]
    os.environ["CREWAI_RUST_MEMORY"] = backend
    # Upstream's tracing waits 5 s per remember() outside a crew; not what is tested here.
    os.environ["CREWAI_TRACING_ENABLED"] = "false"
    while (request := conn.recv()) is not None:
        try:
            conn.send(("ok", run_step(*request)))
        except Exception:  # noqa: BLE001 - reported to the test
            conn.send(("error", traceback.format_exc()))
    # Every step closed its Memory; skip waiting for crewai's telemetry threads at shutdown.
    os._exit(0)

