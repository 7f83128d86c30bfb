"""Serialization workloads: crewai's JSON paths, upstream Python vs the Rust encoder.

The upstream side runs upstream's own code: ``to_serializable``'s Python body
(called with a non-None ``_ancestors``, which skips the fork's hook) and the
standard library's ``json.dumps``/``json.loads`` with crewai's arguments. The
Rust side runs what the fork's patched call sites run, hook included, with
the serialization component forced on. Results are compared before timing:
identical values, identical text.

The anchor column is orjson on the same data, given the ``default=`` hook
crewai's objects need (pydantic models through ``model_dump(mode="json")``).
It writes compact, non-ASCII-escaped JSON, so its text differs from
``json.dumps``'s; it is the speed reference, not an equivalent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from crewai_rust._backend import forced_backend
from crewai_rust.bench import Case, workload


def _orjson() -> Any:
    try:
        import orjson
    except ImportError:  # the bench runs without its anchor column
        return None
    return orjson


def _orjson_default(obj: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def messages(count: int) -> list[dict[str, Any]]:
    """An agent's LLM message list after ``count`` messages: prompts, tool calls, tool results."""
    out: list[dict[str, Any]] = [{
        "role": "system",
        "content": "You are Senior Researcher. You dig up the latest facts and cite them. "
                   "Your personal goal is: find what matters about the topic.\n" * 12,
    }]
    for i in range(count - 1):
        if i % 3 == 0:
            out.append({"role": "user", "content": f"Current Task: research item {i}; report the key "
                                                   "findings with sources.\n" * 4})
        elif i % 3 == 1:
            out.append({
                "role": "assistant",
                "content": None,
                "tool_calls": [{
                    "id": f"call_{i:04d}",
                    "type": "function",
                    "function": {"name": "search_the_web",
                                 "arguments": json.dumps({"query": f"item {i} latest news", "limit": 5})},
                }],
            })
        else:
            out.append({
                "role": "tool",
                "tool_call_id": f"call_{i - 1:04d}",
                "name": "search_the_web",
                "content": f"Result {i}: the café's report (€ {i}.50) says growth was 3.2% — see "
                           "https://example.com/report.\n" * 6,
            })
    return out


def stamped_messages(count: int) -> list[dict[str, Any]]:
    """:func:`messages`, each carrying a ``uuid.UUID`` id and an aware ``datetime``
    timestamp, as crewai's event records do."""
    import uuid
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
    return [{**message, "id": uuid.UUID(int=0x1234_5678_9ABC_DEF0 * (i + 1)), "timestamp": start + timedelta(
        seconds=i, microseconds=i * 7)} for i, message in enumerate(messages(count))]


def crew_events(count: int) -> list[Any]:
    """``count`` rounds of an agent's LLM call started/completed (with its
    messages), a tool call finished and a task completed: crewai's own event objects."""
    from datetime import datetime, timedelta, timezone

    from crewai.events.types.llm_events import (
        LLMCallCompletedEvent,
        LLMCallStartedEvent,
        LLMCallType,
    )
    from crewai.events.types.task_events import TaskCompletedEvent
    from crewai.events.types.tool_usage_events import ToolUsageFinishedEvent

    history = messages(12)
    start = datetime(2026, 11, 30, 9, 0)
    events: list[Any] = []
    for i in range(count):
        events.append(LLMCallStartedEvent(messages=history, model="gpt-4o-mini", call_id=f"call-{i}",
                                          temperature=0.2))
        events.append(LLMCallCompletedEvent(messages=history, response=f"Thought: step {i} done.",
                                            call_type=LLMCallType.LLM_CALL, model="gpt-4o-mini", call_id=f"call-{i}",
                                            usage={"prompt_tokens": 900 + i, "completion_tokens": 40}))
        events.append(ToolUsageFinishedEvent(tool_name="search_the_web", tool_args={"query": f"item {i}"},
                                             started_at=start + timedelta(seconds=i),
                                             finished_at=(start + timedelta(seconds=i, milliseconds=350)).replace(
                                                 tzinfo=timezone.utc),
                                             output=f"Result {i}: growth was 3.2%.", agent_role="Researcher"))
        events.append(TaskCompletedEvent(output=_task_output(i), task_name=f"research_{i}"))
    return events


def _task_output(index: int) -> Any:
    from crewai.tasks.task_output import TaskOutput

    return TaskOutput(
        description=f"Research item {index} and report the key findings. " * 3,
        name=f"research_{index}",
        expected_output="A bullet list of findings with sources.",
        summary=f"Research item {index}...",
        raw="- finding one (source: https://example.com/a)\n- finding two\n" * 8,
        json_dict={"findings": [f"finding {n}" for n in range(5)], "confidence": 0.87},
        agent="Senior Researcher",
        messages=messages(10),  # type: ignore[arg-type]
    )


def _kickoff_row(output: Any) -> dict[str, Any]:
    """What ``Crew._store_execution_log`` hands the kickoff store for one task."""
    return {
        "description": output.description,
        "summary": output.summary,
        "raw": output.raw,
        "pydantic": output.pydantic,
        "json_dict": output.json_dict,
        "output_format": output.output_format,
        "agent": output.agent,
        "messages": output.messages,
    }


def _crew_output(tasks: int) -> Any:
    from crewai.crews.crew_output import CrewOutput
    from crewai.types.usage_metrics import UsageMetrics

    outputs = [_task_output(i) for i in range(tasks)]
    return CrewOutput(
        raw=outputs[-1].raw,
        json_dict=outputs[-1].json_dict,
        tasks_output=outputs,
        token_usage=UsageMetrics(total_tokens=12345, prompt_tokens=10000, completion_tokens=2345,
                                 successful_requests=tasks * 3),
    )


def checkpoint_payload(target_bytes: int = 1_700_000) -> dict[str, Any]:
    """``RuntimeState.model_dump(mode="json")`` of a 10-task crew whose event record holds LLM calls.

    Built from crewai's own classes (Crew, RuntimeState, LLM call events), then
    grown with further LLM-call events until its JSON is ``target_bytes`` long,
    as a long run's automatic checkpoint is.
    """
    from crewai import Agent, Crew, Task
    from crewai.events.types.llm_events import (
        LLMCallCompletedEvent,
        LLMCallStartedEvent,
        LLMCallType,
    )
    from crewai.state.runtime import RuntimeState

    agents = [Agent(role=f"Researcher {i}", goal="Find the facts that matter. " * 3,
                    backstory="A careful analyst. " * 20, llm="gpt-4o-mini") for i in range(3)]
    tasks = [Task(description=f"Research item {i}. " * 15, expected_output="A report with sources.",
                  agent=agents[i % 3]) for i in range(10)]
    state = RuntimeState(root=[Crew(agents=agents, tasks=tasks)])
    call = 0
    while len(json.dumps(state.model_dump(mode="json"))) < target_bytes:
        for _ in range(20):
            history = messages(4 + call % 12)
            state.event_record.add(LLMCallStartedEvent(messages=history, model="gpt-4o-mini",
                                                       call_id=f"call-{call}"))
            state.event_record.add(LLMCallCompletedEvent(messages=history, response=history[-1]["content"],
                                                         call_type=LLMCallType.LLM_CALL, model="gpt-4o-mini",
                                                         call_id=f"call-{call}"))
            call += 1
    return state.model_dump(mode="json")


def _same(upstream: Any, rust: Any) -> None:
    assert upstream == rust, "the Rust serializer gave a different result than upstream's"


def _upstream_to_serializable(value: Any) -> Callable[[], Any]:
    from crewai.utilities.serialization import to_serializable

    return lambda: to_serializable(value, _ancestors=set())


def _hooked_to_serializable(value: Any) -> Callable[[], Any]:
    from crewai.utilities.serialization import to_serializable

    return lambda: to_serializable(value)


def _orjson_round_trip(value: Any) -> Callable[[], Any] | None:
    orjson = _orjson()
    if orjson is None:
        return None
    return lambda: orjson.loads(orjson.dumps(value, default=_orjson_default))


@workload("serialization.messages", component="serialization",
          description="to_serializable of an agent's LLM message list (twice per LLM call, for the events)")
def message_cases(quick: bool) -> Iterator[Case]:
    with forced_backend("serialization", "rust"):
        for count in (10, 50, 200):
            payload = messages(count)
            yield Case(f"{count} messages", _upstream_to_serializable(payload), _hooked_to_serializable(payload),
                       _same, anchor=_orjson_round_trip(payload))
        stamped = stamped_messages(200)
        yield Case("200 messages with UUID ids and timestamps", _upstream_to_serializable(stamped),
                   _hooked_to_serializable(stamped), _same, anchor=_orjson_round_trip(stamped))


@workload("serialization.events", component="serialization",
          description="crewai's event objects (LLM call started/completed with their messages, tool usage "
                      "finished, task completed) through BaseEvent.to_json, as the event bus and tracing do")
def event_cases(quick: bool) -> Iterator[Case]:
    with forced_backend("serialization", "rust"):
        events = crew_events(5 if quick else 25)
        yield Case(f"{len(events)} events", _upstream_to_serializable(events), _hooked_to_serializable(events),
                   _same, anchor=_orjson_round_trip(events))


@workload("serialization.outputs", component="serialization",
          description="a TaskOutput and a 10-task CrewOutput: to_serializable (their events) and "
                      "json.dumps(cls=CrewJSONEncoder) (the kickoff store's row)")
def output_cases(quick: bool) -> Iterator[Case]:
    from crewai.utilities.crew_json_encoder import CrewJSONEncoder

    from crewai_rust.serialization import dumps

    orjson = _orjson()
    with forced_backend("serialization", "rust"):
        task_output = _task_output(0)
        crew_output = _crew_output(10)
        for label, model in (("TaskOutput", task_output), ("CrewOutput x10", crew_output)):
            yield Case(f"{label} event", _upstream_to_serializable(model), _hooked_to_serializable(model), _same,
                       anchor=_orjson_round_trip(model))
        row = _kickoff_row(task_output)
        yield Case(
            "TaskOutput row",
            lambda: json.dumps(row, cls=CrewJSONEncoder),
            lambda: dumps(row, cls=CrewJSONEncoder),
            _same,
            anchor=None if orjson is None else lambda: orjson.dumps(row, default=_orjson_default),
        )
        rows = [_kickoff_row(output) for output in crew_output.tasks_output]
        yield Case(
            "CrewOutput rows",
            lambda: [json.dumps(r, cls=CrewJSONEncoder) for r in rows],
            lambda: [dumps(r, cls=CrewJSONEncoder) for r in rows],
            _same,
            anchor=None if orjson is None else lambda: [orjson.dumps(r, default=_orjson_default) for r in rows],
        )


@workload("serialization.checkpoint", component="serialization",
          description="a 1.7 MB checkpoint: json.dumps of the dumped RuntimeState, and json.loads of its text")
def checkpoint_cases(quick: bool) -> Iterator[Case]:
    from crewai_rust.serialization import dumps, loads

    orjson = _orjson()
    payload = checkpoint_payload(300_000 if quick else 1_700_000)
    text = json.dumps(payload)
    size = f"{len(text) / 1e6:.1f} MB"
    with forced_backend("serialization", "rust"):
        yield Case(f"write {size}", lambda: json.dumps(payload), lambda: dumps(payload), _same,
                   anchor=None if orjson is None else lambda: orjson.dumps(payload))
        yield Case(f"read {size}", lambda: json.loads(text), lambda: loads(text), _same,
                   anchor=None if orjson is None else lambda: orjson.loads(text))
