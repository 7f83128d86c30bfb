"""Checkpoints are written from a consistent snapshot and never lost silently (patch 0012).

Real threads: one keeps adding events to the runtime's event record, as a
running crew does, while the checkpoint path dumps the state.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from crewai.events.types.task_events import TaskStartedEvent
from crewai.state import checkpoint_listener
from crewai.state.runtime import RuntimeState


def test_the_state_dumps_while_other_threads_add_events(backend: str) -> None:
    state = RuntimeState(root=[])
    record = state.event_record
    stop = threading.Event()
    added = 0

    def crew_thread() -> None:
        nonlocal added
        while not stop.is_set():
            record.add(TaskStartedEvent(context="c"))
            added += 1

    adder = threading.Thread(target=crew_thread, daemon=True)
    adder.start()
    dumps = 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            dumped = state.model_dump(mode="json")
            nodes = dumped["event_record"]["nodes"]
            # A snapshot: every node it names was complete when it was taken.
            assert all(node["event"]["event_id"] == event_id for event_id, node in nodes.items())
            dumps += 1
    finally:
        stop.set()
        adder.join()
    assert dumps > 10 and added > 100


class PanicException(BaseException):  # PyO3's name, which the listener matches
    """Stands in for a PyO3 extension's panic (pydantic-core's, say)."""


def test_a_panic_while_checkpointing_is_reported_as_a_checkpoint_failure(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from crewai.events.event_bus import crewai_event_bus
    from crewai.events.types.checkpoint_events import CheckpointFailedEvent
    from crewai.state.checkpoint_config import CheckpointConfig

    state = RuntimeState(root=[])
    cfg = CheckpointConfig(location="unused")
    failures: list[Any] = []

    def panicking_dump(*args: Any, **kwargs: Any) -> Any:
        raise PanicException("dictionary changed size during iteration")

    monkeypatch.setattr(RuntimeState, "model_dump", panicking_dump)
    monkeypatch.setattr(checkpoint_listener, "_should_checkpoint", lambda source, event: cfg)
    with crewai_event_bus.scoped_handlers():
        crewai_event_bus.on(CheckpointFailedEvent)(lambda source, event: failures.append(event))
        with caplog.at_level(logging.WARNING, logger="crewai.state.checkpoint_listener"):
            # Neither a PanicException nor anything else escapes into the crew.
            checkpoint_listener._on_any_event(cfg, TaskStartedEvent(context="c"), state)
        crewai_event_bus.flush()
    assert [f.error for f in failures] == ["dictionary changed size during iteration"]
    assert "Auto-checkpoint failed" in caplog.text


def test_keyboard_interrupt_still_stops_a_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from crewai.state.checkpoint_config import CheckpointConfig

    cfg = CheckpointConfig(location="unused")

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(RuntimeState, "model_dump", interrupted)
    monkeypatch.setattr(checkpoint_listener, "_should_checkpoint", lambda source, event: cfg)
    with pytest.raises(KeyboardInterrupt):
        checkpoint_listener._on_any_event(cfg, TaskStartedEvent(context="c"), RuntimeState(root=[]))
