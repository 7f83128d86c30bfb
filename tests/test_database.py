"""The database component: crewai's SQLite stores on pooled Rust connections.

Real files, real threads, real processes. Files written by one backend are
read by the other, in both directions.
"""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import run_in_threads, run_python

import crewai_rust
from crewai_rust import database


@pytest.fixture(autouse=True)
def fresh_pools() -> Any:
    database.close_pools()
    yield
    database.close_pools()


def use_backend(name: str) -> None:
    crewai_rust.configure_rust_components(database=(name == "rust"))


OTHER = {"python": "rust", "rust": "python"}


# --------------------------------------------------------------------------- the connection object


def test_connect_uses_the_pool_only_when_the_component_is_rust(tmp_path: Path) -> None:
    use_backend("rust")
    assert isinstance(database.connect(tmp_path / "a.db"), database.Connection)
    use_backend("python")
    assert isinstance(database.connect(tmp_path / "a.db"), sqlite3.Connection)


@pytest.mark.parametrize("target", [":memory:", "", "file:x.db?mode=memory"])
def test_unpoolable_targets_fall_back_to_sqlite3(target: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    use_backend("rust")
    conn = database.connect(target)
    assert isinstance(conn, sqlite3.Connection)
    conn.close()


def test_extra_sqlite3_arguments_fall_back_to_sqlite3(tmp_path: Path) -> None:
    use_backend("rust")
    conn = database.connect(tmp_path / "x.db", check_same_thread=False)
    assert isinstance(conn, sqlite3.Connection)
    conn.close()


def test_instrumented_sqlite3_connect_sees_every_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_backend("rust")
    seen: list[Any] = []
    real = sqlite3.connect

    def spy(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        seen.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", spy)
    conn = database.connect(tmp_path / "spied.db", timeout=1)
    assert isinstance(conn, sqlite3.Connection)
    assert seen == [tmp_path / "spied.db"]
    conn.close()


def test_sqlite3_transaction_semantics(tmp_path: Path) -> None:
    use_backend("rust")
    path = tmp_path / "tx.db"
    conn = database.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    assert not conn.in_transaction
    cur = conn.execute("INSERT INTO t (v) VALUES (?)", ("a",))
    assert (cur.rowcount, cur.lastrowid) == (1, 1)
    assert conn.in_transaction  # implicit BEGIN before DML, as sqlite3 does
    with sqlite3.connect(path) as other:  # another connection does not see it yet
        assert other.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.commit()
    with conn:
        conn.execute("INSERT INTO t (v) VALUES ('b')")
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"), conn:
        conn.execute("INSERT INTO t (v) VALUES ('c')")
        conn.execute("INSERT INTO t (v) VALUES (NULL)")
    conn.execute("INSERT INTO t (v) VALUES ('d')")
    conn.close()  # uncommitted 'd' is rolled back, as sqlite3's close does
    with pytest.raises(sqlite3.ProgrammingError, match="closed database"):
        conn.execute("SELECT 1")
    check = database.connect(path)
    cur = check.execute("SELECT v FROM t ORDER BY id")
    assert [d[0] for d in cur.description] == ["v"]
    assert cur.fetchall() == [("a",), ("b",)]
    assert check.execute("SELECT v FROM t").fetchone() == ("a",)
    check.close()


def test_values_round_trip_like_sqlite3(tmp_path: Path) -> None:
    use_backend("rust")
    conn = database.connect(tmp_path / "v.db")
    conn.execute("CREATE TABLE t (a, b, c, d, e, f)")
    row = (None, 2**62, 1.25, "héllo ✓", b"\x00\xff", True)
    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", row)
    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)", (None, None, None, None, bytearray(b"ab"), memoryview(b"cd")))
    conn.commit()
    rows = conn.execute("SELECT * FROM t").fetchall()
    assert rows[0] == (None, 2**62, 1.25, "héllo ✓", b"\x00\xff", 1)
    assert rows[1][4:] == (b"ab", b"cd")
    conn.close()



def test_sorts_beyond_the_page_cache_stay_in_memory(tmp_path: Path) -> None:
    """A sorted read larger than SQLite's 2 MB cache (a long run's kickoff
    outputs) is sorted in memory, not spilled to a temporary file."""
    use_backend("rust")
    conn = database.connect(tmp_path / "sort.db")
    assert conn.execute("PRAGMA temp_store").fetchone() == (2,)  # MEMORY
    conn.execute("CREATE TABLE t (k INTEGER, v TEXT)")
    keys = [(i * 7919) % 3000 for i in range(3000)]
    conn.executemany("INSERT INTO t VALUES (?, ?)", [(k, f"{k:04d}" * 256) for k in keys])
    conn.commit()
    rows = conn.execute("SELECT k, v FROM t ORDER BY k").fetchall()
    assert [k for k, _ in rows] == sorted(keys) and rows[5][1] == "0005" * 256
    conn.close()

def test_lazy_rows_fetch_like_sqlite3(tmp_path: Path) -> None:
    use_backend("rust")
    conn = database.connect(tmp_path / "lazy.db")
    conn.execute("CREATE TABLE t (n)")
    for n in range(5):
        conn.execute("INSERT INTO t VALUES (?)", (n,))
    conn.commit()
    cursor = conn.execute("SELECT n FROM t ORDER BY n")
    assert cursor.fetchone() == (0,)
    assert cursor.fetchmany(2) == [(1,), (2,)]
    assert cursor.fetchall() == [(3,), (4,)]
    assert cursor.fetchall() == [] and cursor.fetchone() is None
    assert conn.execute("SELECT n FROM t ORDER BY n").fetchall() == [(n,) for n in range(5)]
    assert list(conn.execute("SELECT n FROM t WHERE n > 2 ORDER BY n")) == [(3,), (4,)]
    # The rows are read when the statement runs, as sqlite3's are stepped before its first fetch.
    cursor = conn.execute("SELECT n FROM t ORDER BY n")
    conn.execute("DELETE FROM t")
    conn.commit()
    assert len(cursor.fetchall()) == 5
    conn.close()


@pytest.mark.parametrize("fetch", ["fetchone", "fetchall", "fetchall_records"])
def test_text_that_is_not_utf8_raises_sqlite3s_error_at_its_row(tmp_path: Path, fetch: str) -> None:
    """Text another writer stored as invalid UTF-8 raises what sqlite3 raises, at
    the row it raises at; the rows before it are returned."""
    path = tmp_path / "bad-text.db"
    with sqlite3.connect(path) as setup:
        setup.execute('CREATE TABLE t (n INTEGER, "colé" TEXT)')
        setup.execute("INSERT INTO t VALUES (1, 'fine')")
        setup.execute("INSERT INTO t VALUES (2, CAST(X'41FF42' || X'00' || X'43' AS TEXT))")
        setup.execute("INSERT INTO t VALUES (3, CAST(X'FF' || hex(zeroblob(150)) AS TEXT))")
    outcomes = {}
    for backend in ("python", "rust"):
        use_backend(backend)
        conn = database.connect(path)
        fetched: list[Any] = []
        errors: list[str] = []
        for n in (1, 2, 3):
            cursor = conn.execute('SELECT n, "colé" FROM t WHERE n IN (1, ?) ORDER BY n', (n,))
            try:
                if fetch == "fetchone":
                    while (row := cursor.fetchone()) is not None:
                        fetched.append(row)
                elif fetch == "fetchall":
                    fetched.extend(cursor.fetchall())
                else:
                    fetched.extend(database.fetch_records(cursor) or [dict(zip(("n", "colé"), row)) for row in cursor.fetchall()])
            except sqlite3.OperationalError as error:
                errors.append(str(error))
            # A statement stopped mid-fetch keeps its read lock until reset, and both
            # backends share one SQLite library (one lock table) in this process.
            cursor.close()
        conn.close()
        outcomes[backend] = (fetched, errors)
    assert outcomes["rust"] == outcomes["python"]
    fetched, errors = outcomes["rust"]
    assert errors[0] == "Could not decode to UTF-8 column 'col\ufffd\ufffd' with text 'A\ufffdB'"
    assert len(errors) == 2 and len(errors[1]) == 198
    assert fetched[0] in [(1, "fine"), {"n": 1, "colé": "fine"}]


JSON_COLUMNS_ROWS = [
    ("a", '{"raw": "r", "n": 1, "nested": [1.5, null, true]}', "[]", 1),
    ("é ✓", '"\\ud800 lone"', '{"big": 123456789012345678901234567890}', None),
    ("c", "  [1, 2]  ", '"\\u00e9"', 2.5),
]


def _json_table(path: Path) -> Any:
    conn = database.connect(path)
    conn.execute("CREATE TABLE t (name TEXT, doc TEXT, extra TEXT, plain)")
    for row in JSON_COLUMNS_ROWS:
        conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", row)
    conn.commit()
    return conn


@pytest.mark.parametrize("serialization", ["rust", "python"])
def test_fetch_records_builds_what_a_loop_over_fetchall_builds(
    tmp_path: Path, serialization: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREWAI_RUST_SERIALIZATION", "1" if serialization == "rust" else "0")
    use_backend("rust")
    conn = _json_table(tmp_path / "records.db")
    expected = [
        {"name": name, "doc": json.loads(doc), "extra": json.loads(extra), "plain": plain}
        for name, doc, extra, plain in conn.execute("SELECT * FROM t").fetchall()
    ]
    records = database.fetch_records(conn.execute("SELECT * FROM t"), json_columns=("doc", "extra"))
    assert records == expected
    assert [list(record) for record in records] == [["name", "doc", "extra", "plain"]] * 3
    assert records[1]["doc"] == "\ud800 lone"  # a lone surrogate escape, left to json.loads
    # The rows not fetched yet, whichever way the cursor was read before.
    cursor = conn.execute("SELECT * FROM t")
    cursor.fetchone()
    assert database.fetch_records(cursor, json_columns=("doc", "extra")) == expected[1:]
    assert database.fetch_records(cursor, json_columns=("doc", "extra")) == []
    cursor = conn.execute("SELECT name, plain FROM t")
    assert database.fetch_records(cursor) == [{"name": r["name"], "plain": r["plain"]} for r in expected]
    conn.close()


def test_fetch_records_raises_what_json_loads_raises(tmp_path: Path) -> None:
    use_backend("rust")
    conn = _json_table(tmp_path / "bad-json.db")
    conn.execute("INSERT INTO t VALUES (?, ?, ?, ?)", ("bad", "{oops", None, 0))
    conn.commit()
    with pytest.raises(json.JSONDecodeError) as native_error:
        database.fetch_records(conn.execute("SELECT * FROM t"), json_columns=("doc",))
    with pytest.raises(json.JSONDecodeError) as upstream_error:
        json.loads("{oops")
    assert str(native_error.value) == str(upstream_error.value)
    with pytest.raises(TypeError, match="not NoneType"):  # json.loads(None), as upstream's loop
        database.fetch_records(conn.execute("SELECT * FROM t"), json_columns=("extra",))
    conn.close()


def test_fetch_records_leaves_sqlite3_cursors_to_their_caller(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "plain.db") as conn:
        assert database.fetch_records(conn.execute("SELECT 1"), json_columns=()) is None


def test_bad_parameters_get_sqlite3_errors(tmp_path: Path) -> None:
    use_backend("rust")
    conn = database.connect(tmp_path / "bad.db")
    conn.execute("CREATE TABLE t (a)")
    with pytest.raises(sqlite3.ProgrammingError, match="Error binding parameter 1: type 'dict' is not supported"):
        conn.execute("INSERT INTO t VALUES (?)", ({"x": 1},))
    with pytest.raises(OverflowError, match="too large"):
        conn.execute("INSERT INTO t VALUES (?)", (2**70,))
    with pytest.raises(sqlite3.ProgrammingError, match="Incorrect number of bindings"):
        conn.execute("INSERT INTO t VALUES (?)", ())
    with pytest.raises(sqlite3.ProgrammingError, match="one statement at a time"):
        conn.execute("SELECT 1; SELECT 2")
    with pytest.raises(sqlite3.OperationalError, match="no such table: missing"):
        conn.execute("SELECT * FROM missing")
    with pytest.raises(UnicodeEncodeError):
        conn.execute("INSERT INTO t VALUES (?)", ("\ud800",))
    conn.close()


def test_corrupt_file_is_a_clear_error_and_is_not_overwritten(tmp_path: Path) -> None:
    use_backend("rust")
    path = tmp_path / "corrupt.db"
    junk = b"this is not a database" * 500
    path.write_bytes(junk)
    with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
        database.connect(path)
    assert path.read_bytes() == junk


def test_missing_directory_is_sqlite3s_error(tmp_path: Path) -> None:
    use_backend("rust")
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        database.connect(tmp_path / "no" / "such" / "dir.db")


def test_file_removed_while_pooled_is_recreated(tmp_path: Path) -> None:
    use_backend("rust")
    path = tmp_path / "gone.db"
    with database.connect(path) as conn:
        conn.execute("CREATE TABLE t (v)")
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = database.connect(path)
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM t").fetchone() == (1,)


def test_close_pools_releases_the_file(tmp_path: Path) -> None:
    use_backend("rust")
    path = tmp_path / "closed.db"
    conn = database.connect(path)
    conn.execute("CREATE TABLE t (v)")
    conn.close()
    database.close_pools(path)
    # A new pool opens on the next connect.
    conn = database.connect(path)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
    conn.close()


# --------------------------------------------------------------------------- crewai's three stores


def _kickoff_storage(path: Path) -> Any:
    from crewai.memory.storage.kickoff_task_outputs_storage import KickoffTaskOutputsSQLiteStorage

    return KickoffTaskOutputsSQLiteStorage(str(path))


def _task(n: int) -> Any:
    from crewai import Task

    return Task(description=f"task {n}", expected_output=f"output {n}")


@pytest.mark.parametrize("writer", ["python", "rust"])
def test_kickoff_outputs_written_by_one_backend_are_read_by_the_other(tmp_path: Path, writer: str) -> None:
    path = tmp_path / "kickoff.db"
    use_backend(writer)
    storage = _kickoff_storage(path)
    tasks = [_task(i) for i in range(3)]
    for i, task in enumerate(tasks):
        storage.add(task, {"raw": f"r{i}", "n": i}, i, inputs={"topic": "x"})
    storage.update(1, output={"raw": "changed"}, was_replayed=True)
    written = storage.load()

    use_backend(OTHER[writer])
    read = _kickoff_storage(path).load()
    assert read == written
    assert [row["output"] for row in read] == [{"raw": "r0", "n": 0}, {"raw": "changed"}, {"raw": "r2", "n": 2}]
    assert [row["was_replayed"] for row in read] == [0, 1, 0]
    assert read[0]["task_id"] == str(tasks[0].id)
    # And the reader can keep writing to the same file.
    _kickoff_storage(path).delete_all()
    use_backend(writer)
    assert _kickoff_storage(path).load() == []


@pytest.mark.parametrize("serialization", ["rust", "python"])
def test_kickoff_load_on_rust_equals_upstreams_loop(
    tmp_path: Path, serialization: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The natively built records (patch 0011) equal, key order included, what
    upstream's loop over sqlite3 rows builds from the same file."""
    monkeypatch.setenv("CREWAI_RUST_SERIALIZATION", "1" if serialization == "rust" else "0")
    path = tmp_path / "kickoff.db"
    use_backend("rust")
    storage = _kickoff_storage(path)
    outputs = [{"raw": "é ✓ \ud800", "n": 2**70, "f": 0.1, "list": [None, True, {"k": []}]}, {}, {"raw": "x"}]
    for i, output in enumerate(outputs):
        storage.add(_task(i), output, i, inputs={"topic": "é", "i": i} if i else {})
    built = []
    fetchall_records = database.Cursor.fetchall_records

    def spy(cursor: Any, json_columns: Any = ()) -> Any:
        built.append(tuple(json_columns))
        return fetchall_records(cursor, json_columns)

    monkeypatch.setattr(database.Cursor, "fetchall_records", spy)
    native = storage.load()
    assert built == [("output", "inputs")]  # the native path ran
    use_backend("python")
    upstream = _kickoff_storage(path).load()
    assert native == upstream and len(native) == 3
    assert [list(row) for row in native] == [list(row) for row in upstream]
    assert [type(value) for row in native for value in row.values()] == [
        type(value) for row in upstream for value in row.values()
    ]


def test_kickoff_storage_errors_are_upstreams(tmp_path: Path) -> None:
    from crewai.utilities.errors import DatabaseOperationError

    use_backend("rust")
    path = tmp_path / "corrupt.db"
    path.write_bytes(b"garbage" * 1000)
    with pytest.raises(DatabaseOperationError, match="Database initialization error: file is not a database"):
        _kickoff_storage(path)
    assert path.read_bytes() == b"garbage" * 1000


def _flow_persistence(path: Path) -> Any:
    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence

    return SQLiteFlowPersistence(str(path))


def _feedback_context(flow_id: str) -> Any:
    from crewai.flow.async_feedback.types import PendingFeedbackContext

    return PendingFeedbackContext(
        flow_id=flow_id, flow_class="tests.Flow", method_name="review",
        method_output="draft", message="Please review",
    )


@pytest.mark.parametrize("writer", ["python", "rust"])
def test_flow_states_written_by_one_backend_are_read_by_the_other(tmp_path: Path, writer: str) -> None:
    path = tmp_path / "flows.db"
    use_backend(writer)
    persistence = _flow_persistence(path)
    persistence.save_state("f1", "start", {"step": 1, "text": "é" * 100})
    persistence.save_state("f1", "next", {"step": 2, "nested": {"a": [1, 2, None]}})
    persistence.save_pending_feedback("f2", _feedback_context("f2"), {"step": 9})

    use_backend(OTHER[writer])
    other = _flow_persistence(path)
    assert other.load_state("f1") == {"step": 2, "nested": {"a": [1, 2, None]}}
    state, context = other.load_pending_feedback("f2")
    assert state == {"step": 9} and context.method_name == "review"
    other.clear_pending_feedback("f2")
    other.save_state("f1", "last", {"step": 3})

    use_backend(writer)
    assert _flow_persistence(path).load_pending_feedback("f2") is None
    assert _flow_persistence(path).load_state("f1") == {"step": 3}


def test_flow_state_that_cannot_be_serialized_writes_nothing(tmp_path: Path) -> None:
    use_backend("rust")
    persistence = _flow_persistence(tmp_path / "flows.db")
    persistence.save_state("f1", "start", {"ok": True})
    with pytest.raises(ValueError, match="state_data must be either a Pydantic BaseModel or dict"):
        persistence.save_state("f1", "bad", ["not", "a", "dict"])  # type: ignore[arg-type]
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        persistence.save_state("f1", "bad", circular)
    assert persistence.load_state("f1") == {"ok": True}


def test_flow_persistence_on_a_corrupt_file_fails_without_overwriting(tmp_path: Path) -> None:
    use_backend("rust")
    path = tmp_path / "flows.db"
    path.write_bytes(b"\x00junk" * 2000)
    with pytest.raises(sqlite3.DatabaseError, match="file is not a database"):
        _flow_persistence(path)
    assert path.read_bytes() == b"\x00junk" * 2000


def _provider() -> Any:
    from crewai.state.provider.sqlite_provider import SqliteProvider

    return SqliteProvider()


_HAS_SYSTEM_JSONB = sqlite3.sqlite_version_info >= (3, 45)


def test_checkpoints_work_on_the_rust_backend_whatever_the_system_sqlite(tmp_path: Path) -> None:
    use_backend("rust")
    provider = _provider()
    db = str(tmp_path / "cp" / "checkpoints.db")
    payload = json.dumps({"tasks": [{"i": i, "text": "x" * 50} for i in range(20)]})
    first = provider.checkpoint(payload, db)
    second = provider.checkpoint(payload, db, parent_id=provider.extract_id(first))
    assert json.loads(provider.from_checkpoint(second)) == json.loads(payload)
    assert provider.prune(db, 1) == 1
    with pytest.raises(ValueError, match="Checkpoint not found"):
        provider.from_checkpoint(first)


async def _async_round_trip(db: str, payload: str) -> str:
    provider = _provider()
    location = await provider.acheckpoint(payload, db, branch="b")
    return await provider.afrom_checkpoint(location)


def test_async_checkpoints_on_the_rust_backend(tmp_path: Path) -> None:
    import asyncio

    use_backend("rust")
    payload = json.dumps({"a": [1, 2, 3]})
    assert json.loads(asyncio.run(_async_round_trip(str(tmp_path / "a.db"), payload))) == {"a": [1, 2, 3]}


@pytest.mark.parametrize("writer", ["python", "rust"])
def test_checkpoints_cross_backends(tmp_path: Path, writer: str) -> None:
    """Both backends run one SQLite library; below 3.45 the Rust side writes text JSON, which
    upstream's reader (json(data)) reads; upstream's own writer needs jsonb there."""
    if writer == "python" and not _HAS_SYSTEM_JSONB:
        pytest.skip(f"upstream's provider cannot write on SQLite {sqlite3.sqlite_version} (no jsonb)")
    db = str(tmp_path / "checkpoints.db")
    use_backend(writer)
    location = _provider().checkpoint('{"k": 1}', db)
    use_backend(OTHER[writer])
    assert json.loads(_provider().from_checkpoint(location)) == {"k": 1}


def test_checkpoint_without_jsonb_fails_on_the_python_backend_only(tmp_path: Path) -> None:
    if _HAS_SYSTEM_JSONB:
        pytest.skip("the system SQLite has jsonb")
    use_backend("python")
    with pytest.raises(sqlite3.OperationalError, match="no such function: jsonb"):
        _provider().checkpoint("{}", str(tmp_path / "cp.db"))


# --------------------------------------------------------------------------- concurrency


def test_threads_writing_one_store_lose_nothing(tmp_path: Path) -> None:
    use_backend("rust")
    path = tmp_path / "flows.db"
    persistence = _flow_persistence(path)

    def writer(t: int) -> None:
        for i in range(40):
            persistence.save_state(f"flow-{t}", f"m{i}", {"t": t, "i": i})

    run_in_threads(writer, 8)
    with sqlite3.connect(path) as check:
        assert check.execute("SELECT count(*) FROM flow_states").fetchone() == (320,)
    for t in range(8):
        assert persistence.load_state(f"flow-{t}") == {"t": t, "i": 39}


_PROCESS_WRITER = """
import sys
import crewai_rust
crewai_rust.configure_rust_components(database={backend!r} == "rust")
from crewai.memory.storage.kickoff_task_outputs_storage import KickoffTaskOutputsSQLiteStorage
from crewai.flow.persistence.sqlite import SQLiteFlowPersistence
from crewai import Task
flows = SQLiteFlowPersistence({flows!r})
kickoff = KickoffTaskOutputsSQLiteStorage({kickoff!r})
for i in range(60):
    flows.save_state("proc-{name}", f"m{{i}}", {{"i": i}})
    kickoff.add(Task(description="d", expected_output="e"), {{"i": i}}, {offset} + i)
print("done")
"""


def test_two_processes_on_different_backends_write_one_store(tmp_path: Path) -> None:
    flows, kickoff = str(tmp_path / "flows.db"), str(tmp_path / "kickoff.db")
    codes = [
        _PROCESS_WRITER.format(backend=backend, flows=flows, kickoff=kickoff, name=backend, offset=offset)
        for backend, offset in (("rust", 0), ("python", 1000))
    ]
    env = {"CREWAI_STORAGE_DIR": str(tmp_path)}
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda code: run_python(code, env=env), codes))
    for result in results:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "done"
    with sqlite3.connect(flows) as check:
        assert check.execute("SELECT count(*) FROM flow_states").fetchone() == (120,)
    with sqlite3.connect(kickoff) as check:
        assert check.execute("SELECT count(*) FROM latest_kickoff_task_outputs").fetchone() == (120,)
    use_backend("rust")
    assert _flow_persistence(Path(flows)).load_state("proc-python") == {"i": 59}
    assert _flow_persistence(Path(flows)).load_state("proc-rust") == {"i": 59}


def test_status_reports_the_database_component_on_rust() -> None:
    assert crewai_rust.component_status()["database"].backend == "rust"
    result = run_python("import crewai_rust; print(crewai_rust.component_status()['database'].backend)",
                        env={"CREWAI_RUST_DATABASE": "0"})
    assert result.stdout.strip() == "python"


def test_execution_log_update_does_not_reload_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from crewai.utilities.task_output_storage_handler import TaskOutputStorageHandler

    monkeypatch.setenv("CREWAI_STORAGE_DIR", str(tmp_path))
    use_backend("rust")
    handler = TaskOutputStorageHandler()
    handler.storage = _kickoff_storage(tmp_path / "log.db")
    loads: list[int] = []
    real_load = handler.storage.load
    monkeypatch.setattr(handler.storage, "load", lambda: loads.append(1) or real_load())
    task = _task(0)
    for i in range(5):
        handler.update(i, {"task": task, "output": {"raw": i}, "task_index": i, "inputs": {}, "was_replayed": False})
    assert loads == []
    assert len(real_load()) == 1  # same task id: INSERT OR REPLACE keeps one row


@pytest.mark.skipif(_HAS_SYSTEM_JSONB, reason="this SQLite reads JSONB; the message is for one that cannot")
def test_a_jsonb_checkpoint_on_an_older_sqlite_says_why_and_what_to_do(tmp_path: Path) -> None:
    """A checkpoint written as JSONB (SQLite 3.45+, or the fork's earlier bundled build) cannot be read here."""
    db = tmp_path / "cp.db"
    use_backend("rust")
    location = _provider().checkpoint('{"k": 1}', str(db))
    with sqlite3.connect(db) as conn:  # what a JSONB writer stores: a blob
        conn.execute("UPDATE checkpoints SET data = ?", (b"\x8c\x17k\x13\x01",))
    conn.close()
    database.close_pools()
    with pytest.raises(sqlite3.OperationalError, match=r"^malformed JSON \(if the value is a JSONB checkpoint") as info:
        _provider().from_checkpoint(location)
    assert "3.45" in str(info.value) and sqlite3.sqlite_version in str(info.value)
