"""Database workloads: crewai's own SQLite stores, sqlite3 per call vs the Rust pool.

Both sides run the same upstream class methods on the same data; the only
difference is the backend of the database and serialization components
(forced per call), so the upstream side is exactly upstream's
``sqlite3.connect`` and ``json`` path. Each side has its
own file, filled identically, and the files' contents are compared before
timing.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from crewai_rust._backend import forced_backend
from crewai_rust.bench import Case, workload

_SCRATCH = tempfile.TemporaryDirectory(prefix="crewai-rust-bench-db-")


def _path(name: str) -> Path:
    return Path(_SCRATCH.name) / name


def _on(backend: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    # The stores' JSON goes through the serialization component: upstream's
    # side is json.dumps/json.loads, the fork's side the Rust codec.
    def run() -> Any:
        with forced_backend("database", backend), forced_backend("serialization", backend):  # type: ignore[arg-type]
            return fn()

    return run


def _rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


_KICKOFF_ROWS = "SELECT task_id, task_key, expected_output, output, task_index, inputs, was_replayed FROM latest_kickoff_task_outputs ORDER BY task_index"


def _small_output(index: int) -> dict[str, Any]:
    return {"raw": f"output {index}", "n": index}


def _task_output_row(index: int) -> dict[str, Any]:
    """What ``Crew._store_execution_log`` stores for a task whose agent made ten LLM messages (6 KB of JSON)."""
    from crewai_rust.bench.serialization import _kickoff_row, _task_output

    return _kickoff_row(_task_output(index))


def _kickoff_pair(label: str, rows: int, output: Callable[[int], dict[str, Any]] = _small_output,
                  ) -> tuple[Any, Any, list[Any]]:
    """Two kickoff stores (python, rust) holding the same ``rows`` task outputs."""
    from crewai import Task
    from crewai.memory.storage.kickoff_task_outputs_storage import KickoffTaskOutputsSQLiteStorage

    tasks = [Task(description=f"task {i}", expected_output=f"expected {i}") for i in range(rows)]
    outputs = [output(i) for i in range(rows)]
    stores = []
    for backend in ("python", "rust"):
        path = _path(f"kickoff-{label}-{rows}-{output.__name__}-{backend}.db")
        with forced_backend("database", backend), forced_backend("serialization", backend):  # type: ignore[arg-type]
            store = KickoffTaskOutputsSQLiteStorage(str(path))
            store.delete_all()
            for i, task in enumerate(tasks):
                store.add(task, outputs[i], i, inputs={"topic": "bench"})
        stores.append(store)
    return stores[0], stores[1], tasks


def _same_kickoff_files(python_store: Any, rust_store: Any) -> Callable[[Any, Any], None]:
    def check(_: Any, __: Any) -> None:
        assert _rows(Path(python_store.db_path), _KICKOFF_ROWS) == _rows(Path(rust_store.db_path), _KICKOFF_ROWS), \
            "the two backends wrote different rows"

    return check


def _kickoff_write_cases(quick: bool, label: str, write: Callable[[Any, list[Any], int], None],
                         output: Callable[[int], dict[str, Any]] = _small_output) -> Iterator[Case]:
    sizes = (10, 100) if quick else (10, 100, 1000)
    for rows in sizes if output is _small_output else sizes[-1:]:
        py, rs, tasks = _kickoff_pair(label, rows, output)
        yield Case(
            f"{rows} rows" if output is _small_output else f"{rows} task outputs",
            _on("python", lambda py=py, tasks=tasks, rows=rows: write(py, tasks, rows)),
            _on("rust", lambda rs=rs, tasks=tasks, rows=rows: write(rs, tasks, rows)),
            _same_kickoff_files(py, rs),
        )


@workload("database.kickoff_add", component="database",
          description="KickoffTaskOutputsSQLiteStorage.add (INSERT OR REPLACE) into a store of N rows: small "
                      "outputs, then a full task output as a crew stores it")
def kickoff_add_cases(quick: bool) -> Iterator[Case]:
    def add(store: Any, tasks: list[Any], rows: int) -> None:
        store.add(tasks[rows // 2], {"raw": "replaced", "n": -1}, rows // 2, inputs={"topic": "bench"})

    task_output = _task_output_row(-1)

    def add_task_output(store: Any, tasks: list[Any], rows: int) -> None:
        store.add(tasks[rows // 2], task_output, rows // 2, inputs={"topic": "bench"})

    yield from _kickoff_write_cases(quick, "add", add)
    yield from _kickoff_write_cases(quick, "add", add_task_output, _task_output_row)


@workload("database.kickoff_update", component="database",
          description="KickoffTaskOutputsSQLiteStorage.update of one task_index in a store of N rows")
def kickoff_update_cases(quick: bool) -> Iterator[Case]:
    def update(store: Any, tasks: list[Any], rows: int) -> None:
        store.update(rows - 1, output={"raw": "updated"}, was_replayed=True)

    return _kickoff_write_cases(quick, "update", update)


@workload("database.kickoff_load", component="database",
          description="KickoffTaskOutputsSQLiteStorage.load of all N rows (JSON decoded): small outputs "
                      "({raw, n}), then full task outputs as a crew stores them (6 KB each)")
def kickoff_load_cases(quick: bool) -> Iterator[Case]:
    def check(expected: list[dict[str, Any]], got: list[dict[str, Any]]) -> None:
        strip = lambda rows: [{k: v for k, v in row.items() if k != "timestamp"} for row in rows]
        assert strip(expected) == strip(got) and len(got) == len(expected)

    for rows in (10, 100) if quick else (10, 100, 1000):
        py, rs, _ = _kickoff_pair("load", rows)
        yield Case(f"{rows} rows", _on("python", py.load), _on("rust", rs.load), check)
    for rows in (10,) if quick else (100, 1000):
        py, rs, _ = _kickoff_pair("load", rows, _task_output_row)
        yield Case(f"{rows} task outputs", _on("python", py.load), _on("rust", rs.load), check)


@workload("database.execution_log", component="database",
          description="Crew._store_execution_log's storage work per task: upstream 1.15.30 reloads every row "
                      "then writes (TaskOutputStorageHandler.update); the fork writes the one row")
def execution_log_cases(quick: bool) -> Iterator[Case]:
    from crewai.utilities.task_output_storage_handler import TaskOutputStorageHandler

    for rows in (0, 50) if quick else (0, 100, 199):
        py, rs, tasks = _kickoff_pair("log", rows + 1)
        handlers = []
        for store in (py, rs):
            handler = TaskOutputStorageHandler.__new__(TaskOutputStorageHandler)
            handler.storage = store
            handlers.append(handler)
        task = tasks[rows]
        log = {"task": task, "output": {"raw": "done", "messages": []}, "task_index": rows,
               "inputs": {"topic": "bench"}, "was_replayed": False}

        def upstream(handler: Any = handlers[0], log: dict[str, Any] = log) -> None:
            # What 1.15.30's update() did before the fork's patch: load every row, then write.
            if handler.load() is None:
                raise ValueError("Logs cannot be None")
            handler.storage.add(**log)

        def fork(handler: Any = handlers[1], log: dict[str, Any] = log) -> None:
            handler.update(log["task_index"], log)

        yield Case(f"task {rows + 1}/200", _on("python", upstream), _on("rust", fork), _same_kickoff_files(py, rs))


def _state(kilobytes: float) -> dict[str, Any]:
    items = max(1, int(kilobytes * 1024 / 64))
    return {"id": "bench", "items": [{"i": i, "text": "x" * 40} for i in range(items)]}


@workload("database.flow_state", component="database",
          description="SQLiteFlowPersistence.save_state then load_state of a state of the given size")
def flow_state_cases(quick: bool) -> Iterator[Case]:
    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence

    for kb in (0.1, 10) if quick else (0.1, 10, 100):
        state = _state(kb)
        stores = {}
        for backend in ("python", "rust"):
            with forced_backend("database", backend):  # type: ignore[arg-type]
                stores[backend] = SQLiteFlowPersistence(str(_path(f"flows-{kb}-{backend}.db")))

        def round_trip(store: Any, state: dict[str, Any] = state) -> Any:
            store.save_state("flow-1", "step", state)
            return store.load_state("flow-1")

        def check(expected: Any, got: Any, state: dict[str, Any] = state) -> None:
            assert expected == got == state

        yield Case(f"{kb:g} KB", _on("python", lambda s=stores["python"]: round_trip(s)),
                   _on("rust", lambda s=stores["rust"]: round_trip(s)), check)


@workload("database.checkpoint", component="database",
          description="SqliteProvider.checkpoint then from_checkpoint of a ~100 KB JSON checkpoint")
def checkpoint_cases(quick: bool) -> Iterator[Case]:
    from crewai.state.provider.sqlite_provider import SqliteProvider

    payload = json.dumps(_state(100))
    provider = SqliteProvider()
    locations = {backend: str(_path(f"checkpoints-{backend}.db")) for backend in ("python", "rust")}

    def round_trip(backend: str) -> Any:
        location = provider.checkpoint(payload, locations[backend])
        provider.prune(locations[backend], 5)
        return provider.from_checkpoint(location)

    def check(expected: Any, got: Any) -> None:
        assert json.loads(got) == json.loads(payload)
        if expected is not None:
            assert json.loads(expected) == json.loads(got)

    unavailable = None
    if sqlite3.sqlite_version_info < (3, 45):
        unavailable = f"system SQLite {sqlite3.sqlite_version} has no jsonb"
    yield Case("100 KB", None if unavailable else _on("python", lambda: round_trip("python")),
               _on("rust", lambda: round_trip("rust")), check, upstream_unavailable=unavailable)
