"""The serialization patches: upstream's callers give the same results on both backends.

Each test runs one of the patched call sites (``to_serializable``, the
kickoff store, flow persistence, the checkpoint writer) with the
serialization component on Rust and on Python, and compares what lands in
the return value or the file byte for byte.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import run_python

from crewai_rust import _backend, configure_rust_components


def _on(backend: str) -> None:
    configure_rust_components(serialization=backend == "rust")
    assert _backend.use_rust("serialization") is (backend == "rust")


def _messages() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be precise. Café, €, — and \U0001f600."},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": '{"q": "x"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "name": "search", "content": "result\twith\ncontrols"},
    ]


def test_patched_to_serializable_runs_the_native_walker_only_when_on() -> None:
    from crewai.utilities import serialization

    payload = {"messages": _messages(), "n": float("inf"), (1, 2): {3, 4}}
    _on("python")
    assert serialization._serializer_override() is None
    expected = serialization.to_serializable(payload)
    _on("rust")
    assert serialization._serializer_override() is not None
    assert serialization.to_serializable(payload) == expected
    assert serialization.to_string(payload) == json.dumps(expected)


def test_event_to_json_is_the_same_on_both_backends() -> None:
    from crewai.events.types.llm_events import LLMCallStartedEvent

    event = LLMCallStartedEvent(messages=_messages(), model="gpt-4o-mini", call_id="c1")
    _on("python")
    expected = event.to_json()
    _on("rust")
    assert event.to_json() == expected


def _kickoff_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT task_id, output, inputs FROM latest_kickoff_task_outputs ORDER BY task_index"
        ).fetchall()


def test_kickoff_store_writes_identical_json_and_reads_it_back(tmp_path: Path) -> None:
    from crewai import Task
    from crewai.memory.storage.kickoff_task_outputs_storage import KickoffTaskOutputsSQLiteStorage
    from crewai.tasks.output_format import OutputFormat

    task = Task(description="d", expected_output="e")
    output = {"raw": "r é", "messages": _messages(), "output_format": OutputFormat.RAW, "pydantic": None}
    loaded = {}
    for backend in ("python", "rust"):
        _on(backend)
        store = KickoffTaskOutputsSQLiteStorage(str(tmp_path / f"{backend}.db"))
        store.add(task, output, 0, inputs={"topic": "AI", "when": 1.5})
        store.update(0, output={**output, "raw": "updated"})
        loaded[backend] = store.load()
    # Same task id in both files: the row text must match byte for byte.
    assert _kickoff_rows(tmp_path / "python.db") == _kickoff_rows(tmp_path / "rust.db")
    assert loaded["python"] == loaded["rust"]
    assert loaded["rust"][0]["output"]["raw"] == "updated"
    assert loaded["rust"][0]["output"]["output_format"] == "raw"


def test_flow_state_round_trips_identically(tmp_path: Path) -> None:
    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence

    state = {"id": "flow-1", "notes": ["é", float("nan")], "count": 3, "nested": {"when": "2026-11-25"}}
    texts = {}
    for backend in ("python", "rust"):
        _on(backend)
        store = SQLiteFlowPersistence(str(tmp_path / f"{backend}.db"))
        store.save_state("flow-1", "step", state)
        got = store.load_state("flow-1")
        assert json.dumps(got) == json.dumps(state)
        with sqlite3.connect(tmp_path / f"{backend}.db") as conn:
            texts[backend] = conn.execute("SELECT state_json FROM flow_states").fetchall()
    assert texts["python"] == texts["rust"]


def test_checkpoint_writer_uses_the_fork_encoder() -> None:
    from crewai.state import checkpoint_listener

    import crewai_rust.serialization

    assert checkpoint_listener._json_dumps is crewai_rust.serialization.dumps
    payload = {"entities": [{"name": "crew", "tasks": _messages()}], "event_record": {"nodes": {}}}
    _on("rust")
    assert checkpoint_listener._json_dumps(payload) == json.dumps(payload)


@pytest.mark.parametrize("switch", ["CREWAI_RUST_SERIALIZATION=0", "native module missing"])
def test_upstream_paths_run_when_rust_is_off(switch: str) -> None:
    block_native = switch == "native module missing"
    code = (
        ("import sys; sys.modules['crewai_rust._native'] = None\n" if block_native else "")
        + "import json\n"
        "from crewai.utilities.serialization import to_serializable\n"
        "from crewai_rust import _backend, serialization\n"
        "assert not _backend.use_rust('serialization')\n"
        "assert serialization.serializer_override() is None\n"
        "value = {'a': [1, 2.5, None], 1: {'b'}}\n"
        "assert to_serializable(value) == {'a': [1, 2.5, None], '1': ['b']}\n"
        "assert serialization.dumps(value, default=list) == json.dumps(value, default=list)\n"
        "assert serialization.loads('[1, NaN]')[0] == 1\n"
        "print('ok')\n"
    )
    env = {} if block_native else {"CREWAI_RUST_SERIALIZATION": "0"}
    result = run_python(code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")
