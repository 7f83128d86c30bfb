"""One SQLite library per process: a store's file also opened through ``sqlite3`` loses nothing.

POSIX advisory locks belong to the process, and SQLite keeps its own table of
the locks it holds per file. With two copies of the library in one process
(a bundled one in the native module and the one ``sqlite3`` uses), closing the
file through one copy drops the other's locks and lets it delete a WAL still in
use: the committed writes after that were invisible to other processes and
gone after a crash. The native module now uses the very library ``sqlite3``
uses. Each test runs the sequence in a fresh process on the Rust backend,
checks what a second process reads while the writer is still alive, then ends
the writer with ``os._exit`` (no close, no checkpoint) and reads the file.
"""

from __future__ import annotations

import ctypes
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

import crewai_rust

# How each store writes its Nth record and reads, and the table that holds the records.
STORES = {
    "kickoff": ("latest_kickoff_task_outputs", """
from crewai.memory.storage.kickoff_task_outputs_storage import KickoffTaskOutputsSQLiteStorage
from crewai import Task
store = KickoffTaskOutputsSQLiteStorage(PATH)
def write(n):
    store.add(Task(description=f"d{n}", expected_output="e"), {"n": n}, n)
    store.update(n, output={"n": n, "updated": True})
def read():
    store.load()
"""),
    "flow_states": ("flow_states", """
from crewai.flow.persistence.sqlite import SQLiteFlowPersistence
store = SQLiteFlowPersistence(PATH)
def write(n):
    store.save_state(f"flow-{n}", "m", {"n": n})
def read():
    store.load_state("flow-0")
"""),
    "checkpoints": ("checkpoints", """
from crewai.state.provider.sqlite_provider import SqliteProvider
store = SqliteProvider()
def write(n):
    store.checkpoint(json.dumps({"n": n}), PATH)
def read():
    store.prune(PATH, 100)
"""),
    "memory": ("memories", """
from crewai.memory.types import MemoryRecord
from crewai_rust.memory import RustMemoryStorage
store = RustMemoryStorage(os.path.dirname(PATH))
def write(n):
    store.save([MemoryRecord(id=f"r{n}", content=f"c{n}", scope="/s", embedding=[float(n), 1.0])])
"""),
}

# Ways user code (or the fork's own backend switch) touches the same file through sqlite3.
TOUCHES = {
    "open_read_close_between_writes": """
def before():
    pass
def between():
    c = sqlite3.connect(PATH)
    c.execute(f"SELECT count(*) FROM {TABLE}").fetchall()
    c.close()
""",
    "open_before_the_first_write_close_after_it": """
held = []
def before():
    held.append(sqlite3.connect(PATH))
    held[0].execute("SELECT 1").fetchall()
def between():
    held.pop().close()
""",
    # The store's own next call runs upstream's sqlite3 code: open, read, close.
    "switch_the_backend_to_python_and_back": """
def before():
    pass
def between():
    crewai_rust.configure_rust_components(database=False)
    read()
    crewai_rust.clear_rust_component_overrides()
""",
}

WRITER = """
import json, os, sqlite3, subprocess, sys
import crewai_rust
PATH, TABLE = sys.argv[1], sys.argv[2]
{store}
{touch}
before()
write(0)
between()
write(1)
write(2)
reader = subprocess.run(
    [sys.executable, "-c",
     "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
     "print(c.execute('SELECT count(*) FROM ' + sys.argv[2]).fetchone()[0])", PATH, TABLE],
    capture_output=True, text=True, check=True)
print("other process reads", reader.stdout.strip(), flush=True)
os._exit(0)
"""


def _file_for(store: str, tmp_path: Path) -> Path:
    if store == "memory":
        return tmp_path / "memory" / "memories.sqlite3"
    return tmp_path / f"{store}.db"


@pytest.mark.parametrize("touch", sorted(TOUCHES))
@pytest.mark.parametrize("store", sorted(STORES))
def test_committed_writes_survive_sqlite3_in_the_same_process(tmp_path: Path, store: str, touch: str) -> None:
    if store == "memory" and touch == "switch_the_backend_to_python_and_back":
        pytest.skip("the memory component chooses its storage at construction, not per call")
    path = _file_for(store, tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table, code = STORES[store]
    script = WRITER.format(store=code, touch=TOUCHES[touch])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREWAI_RUST")}
    env["CREWAI_RUST"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), table],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT.parent, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = 3
    assert result.stdout.split() == ["other", "process", "reads", str(expected)], result.stdout
    # The writer died without closing anything: the file alone must hold every commit.
    with sqlite3.connect(path) as check:
        assert check.execute(f"SELECT count(*) FROM {table}").fetchone() == (expected,)
    check.close()


def test_the_native_module_uses_the_sqlite_library_of_pythons_sqlite3() -> None:
    import _sqlite3

    native = crewai_rust._native
    python_side = ctypes.cast(ctypes.CDLL(_sqlite3.__file__).sqlite3_libversion, ctypes.c_void_p).value
    assert native.sqlite_library_address() == python_side
    assert native.sqlite_version() == sqlite3.sqlite_version
    assert crewai_rust.component_status()["database"].backend == "rust"


def test_checkpoints_are_text_json_where_the_library_has_no_jsonb(tmp_path: Path) -> None:
    """Where SQLite < 3.45 lacks jsonb(), the Rust backend stores the provider's JSON as text."""
    from crewai.state.provider.sqlite_provider import SqliteProvider

    crewai_rust.configure_rust_components(database=True)
    db = str(tmp_path / "cp.db")
    location = SqliteProvider().checkpoint(json.dumps({"k": [1, 2]}), db)
    assert json.loads(SqliteProvider().from_checkpoint(location)) == {"k": [1, 2]}
    with sqlite3.connect(db) as check:
        kind = check.execute("SELECT typeof(data) FROM checkpoints").fetchone()[0]
    check.close()
    assert kind == ("blob" if sqlite3.sqlite_version_info >= (3, 45) else "text")


CLEAN_EXIT = """
import sqlite3, sys
from crewai import Task
from crewai.memory.storage.kickoff_task_outputs_storage import KickoffTaskOutputsSQLiteStorage
from crewai.memory.types import MemoryRecord
from crewai_rust.memory import RustMemoryStorage
kickoff = KickoffTaskOutputsSQLiteStorage(sys.argv[1])
kickoff.add(Task(description="d", expected_output="e"), {"n": 1}, 0)
memory = RustMemoryStorage(sys.argv[2])
memory.save([MemoryRecord(id="r", content="c", scope="/s", embedding=[1.0, 2.0])])
for path in (sys.argv[1], sys.argv[2] + "/memories.sqlite3"):  # user code reading the files too
    c = sqlite3.connect(path)
    c.execute("SELECT count(*) FROM sqlite_master").fetchall()
    c.close()
kickoff.add(Task(description="d", expected_output="e"), {"n": 2}, 1)
memory.save([MemoryRecord(id="s", content="c", scope="/s", embedding=[1.0, 2.0])])
"""


def test_a_clean_exit_leaves_no_wal_or_shm_files(tmp_path: Path) -> None:
    """SQLite removes a WAL at the last connection's close; every pooled and store connection closes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREWAI_RUST")}
    env["CREWAI_RUST"] = "1"
    kickoff, memory = tmp_path / "kickoff.db", tmp_path / "memory"
    result = subprocess.run([sys.executable, "-c", CLEAN_EXIT, str(kickoff), str(memory)], capture_output=True,
                            text=True, env=env, cwd=REPO_ROOT.parent, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    left = sorted(p.name for p in (*tmp_path.iterdir(), *memory.iterdir()) if p.name.endswith(("-wal", "-shm")))
    assert left == []
    with sqlite3.connect(kickoff) as check:
        assert check.execute("SELECT count(*) FROM latest_kickoff_task_outputs").fetchone() == (2,)
    check.close()
