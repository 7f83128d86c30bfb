"""The tasks component: crewai's Flow runtime on the fork's dispatch core.

Each behaviour is checked on both backends (``python``: upstream's code path;
``rust``: the fork's), and where the two must agree, against each other on the
same input.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import multiprocessing
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crewai_rust._backend import every_component_forced, forced_backend

BACKENDS = ["python", "rust"]


@pytest.fixture(autouse=True)
def _no_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from crewai.events.listeners.tracing.utils import _tui_mode

    monkeypatch.setenv("CREWAI_TRACING_ENABLED", "false")
    token = _tui_mode.set(True)  # no console panel per step
    yield
    _tui_mode.reset(token)


def _flow_class(name: str, build: Callable[[dict[str, Any]], None], base: type | None = None) -> type:
    from crewai.flow.flow import Flow

    namespace: dict[str, Any] = {}
    build(namespace)
    return type(name, (base or Flow,), namespace)


def _method(name: str, body: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def method(self: Any) -> Any:
        return body(self)

    method.__name__ = name
    return method


# --------------------------------------------------------------------------- which methods fire


def _random_condition(rng: random.Random, events: list[str], depth: int = 2) -> Any:
    from crewai.flow.flow import and_, or_

    if depth == 0 or rng.random() < 0.5:
        return rng.choice(events)
    branches = [_random_condition(rng, events, depth - 1) for _ in range(rng.randint(1, 3))]
    return (and_ if rng.random() < 0.5 else or_)(*branches)


def _random_graph_flow(seed: int) -> tuple[type, list[str]]:
    """A Flow whose listeners and routers listen to random conditions over its
    methods and router outcomes (the bodies never run here)."""
    from crewai.flow.flow import listen, router, start

    rng = random.Random(seed)
    names = [f"m{i}" for i in range(rng.randint(2, 14))]
    events = [*names, "out_a", "out_b", "stray"]

    def build(ns: dict[str, Any]) -> None:
        ns[names[0]] = start()(_method(names[0], lambda self: None))
        for name in names[1:]:
            condition = _random_condition(rng, [e for e in events if e != name])  # no listener of itself
            decorator = router if rng.random() < 0.3 else listen
            ns[name] = decorator(condition)(_method(name, lambda self: None))

    return _flow_class(f"Graph{seed}", build), events


@pytest.mark.parametrize("seed", range(40))
def test_the_native_graph_fires_what_upstreams_walk_fires(seed: int) -> None:
    """Random method graphs (routers, nested or_/and_, repeated triggers, re-armed
    or_ listeners): the same methods, in the same order, and the same fired set."""
    flow_class, events = _random_graph_flow(seed)
    rng = random.Random(seed + 1000)
    flows = {backend: flow_class() for backend in BACKENDS}
    for step in range(60):
        trigger, router_only = rng.choice(events), rng.random() < 0.4
        if step % 13 == 12:
            for flow in flows.values():
                flow._clear_or_listeners()
        fired = {}
        for backend, flow in flows.items():
            with forced_backend("tasks", backend):  # type: ignore[arg-type]
                fired[backend] = list(flow._find_triggered_methods(trigger, router_only))
        assert fired["python"] == fired["rust"], (step, trigger, router_only)
        assert flows["python"]._fired_or_listeners == flows["rust"]._fired_or_listeners


def test_the_native_graph_is_used_only_with_the_component_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from crewai_rust import tasks

    flow_class, _ = _random_graph_flow(3)
    flow = flow_class()
    monkeypatch.setattr(tasks, "flow_graph", lambda definition: pytest.fail("graph consulted"))
    with forced_backend("tasks", "python"):
        flow._find_triggered_methods("m0", False)


def test_a_condition_the_graph_does_not_compile_is_read_by_upstreams_walk() -> None:
    """A hand-made condition dict with neither "and" nor "or": upstream's walk
    raises KeyError when a trigger reaches it; so does the fork (it hands the
    flow to the walk)."""
    from crewai.flow.flow import listen, start

    from crewai_rust import tasks

    def build(ns: dict[str, Any]) -> None:
        ns["begin"] = start()(_method("begin", lambda self: "x"))
        ns["odd"] = listen("begin")(_method("odd", lambda self: None))

    flow_class = _flow_class("OddCondition", build)
    definition = flow_class.flow_definition()
    definition.methods["odd"].listen = {"xor": ["begin"]}
    try:
        assert tasks.flow_graph(definition) is None
        for backend in BACKENDS:
            with forced_backend("tasks", backend), pytest.raises(KeyError, match="or"):  # type: ignore[arg-type]
                flow_class()._find_triggered_methods("begin", False)
    finally:
        del flow_class._flow_definition


# --------------------------------------------------------------------------- whole runs


def _recording_flow(seed: int) -> type:
    """A random runnable flow: a start, then listeners and routers over earlier
    methods and outcomes; every step records its name (thread-safe)."""
    from crewai.flow.flow import and_, listen, or_, router, start

    rng = random.Random(seed)
    n = rng.randint(4, 16)

    def build(ns: dict[str, Any]) -> None:
        def record(name: str, value: Any) -> Callable[[Any], Any]:
            def body(self: Any) -> Any:
                with self.lock:
                    self.ran.append(name)
                return value

            return body

        ns["m0"] = start()(_method("m0", record("m0", 0)))
        emitted = ["m0"]
        for i in range(1, n):
            name = f"m{i}"
            pick = lambda k: rng.sample(emitted, min(k, len(emitted)))
            kind = rng.random()
            if kind < 0.2:
                condition: Any = and_(*pick(2))
            elif kind < 0.4:
                condition = or_(*pick(2))
            else:
                condition = rng.choice(emitted)
            if rng.random() < 0.25:
                outcome = f"o{i}"
                ns[name] = router(condition)(_method(name, record(name, outcome)))
                emitted.append(outcome)
            else:
                ns[name] = listen(condition)(_method(name, record(name, i)))
                emitted.append(name)

    base = _flow_class(f"RecordingBase{seed}", lambda ns: None)

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        base.__init__(self, *args, **kwargs)
        object.__setattr__(self, "ran", [])
        object.__setattr__(self, "lock", threading.Lock())

    cls = _flow_class(f"Recording{seed}", build, base)
    cls.__init__ = init  # type: ignore[misc]
    return cls


@pytest.mark.parametrize("seed", range(25))
def test_a_kickoff_runs_the_same_steps_on_both_backends(seed: int) -> None:
    flow_class = _recording_flow(seed)
    runs = {}
    for backend in BACKENDS:
        with every_component_forced(backend):  # type: ignore[arg-type]
            flow = flow_class()
            result = flow.kickoff()
        # Listeners of one trigger run in parallel (on both backends): their order among
        # themselves, and so which output is the flow's result, may vary from run to run.
        assert result in [entry["output"] for entry in flow._method_outputs]
        runs[backend] = (collections.Counter(flow.ran), sorted(map(repr, flow.method_outputs)))
    assert runs["python"] == runs["rust"]


def _chain(length: int) -> type:
    from crewai.flow.flow import listen, start

    def build(ns: dict[str, Any]) -> None:
        ns["s0"] = start()(_method("s0", lambda self: 0))
        for i in range(1, length):
            ns[f"s{i}"] = listen(f"s{i - 1}")(_method(f"s{i}", lambda self, i=i: i))

    return _flow_class(f"Chain{length}", build)


@pytest.mark.parametrize("backend", BACKENDS)
def test_events_of_a_run_are_the_same_on_both_backends(backend: str) -> None:
    from crewai.events.event_bus import crewai_event_bus
    from crewai.events.types.flow_events import (
        FlowFinishedEvent,
        FlowStartedEvent,
        MethodExecutionFinishedEvent,
        MethodExecutionStartedEvent,
    )

    flow_class = _chain(5)
    seen: list[tuple[int, str, str | None]] = []
    lock = threading.Lock()

    def capture(source: Any, event: Any) -> None:  # handlers run on the bus's threads: sort by emission
        with lock:
            seen.append((event.emission_sequence, type(event).__name__, getattr(event, "method_name", None)))

    with crewai_event_bus.scoped_handlers():
        for event_type in (FlowStartedEvent, MethodExecutionStartedEvent, MethodExecutionFinishedEvent,
                           FlowFinishedEvent):
            crewai_event_bus.on(event_type)(capture)
        with every_component_forced(backend):  # type: ignore[arg-type]
            assert flow_class().kickoff() == 4
        crewai_event_bus.flush()
    steps = [f"s{i}" for i in range(5)]
    expected = [("FlowStartedEvent", None)]
    for step in steps:
        expected += [("MethodExecutionStartedEvent", step), ("MethodExecutionFinishedEvent", step)]
    expected.append(("FlowFinishedEvent", None))
    assert [(name, method) for _, name, method in sorted(seen)] == expected


# --------------------------------------------------------------------------- steps without a hop


_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sync_step_sees_what_a_worker_thread_sees(backend: str) -> None:
    """Not the caller's thread, no running or current event loop (asyncio.run
    works inside), the caller's context vars; what it sets stays inside."""
    from crewai.flow.flow import listen, start

    observed: dict[str, Any] = {}

    def first(self: Any) -> str:
        observed["thread"] = threading.get_ident()
        try:
            asyncio.get_running_loop()
            observed["loop"] = "running"
        except RuntimeError:
            observed["loop"] = "none"
        observed["nested"] = asyncio.run(asyncio.sleep(0, result="nested ok"))
        observed["request"] = _request_id.get()
        _request_id.set("changed inside")
        return "first"

    def second(self: Any) -> str:
        observed["second_request"] = _request_id.get()
        return "second"

    def build(ns: dict[str, Any]) -> None:
        ns["first"] = start()(_method("first", first))
        ns["second"] = listen("first")(_method("second", second))

    token = _request_id.set("from caller")
    try:
        with every_component_forced(backend):  # type: ignore[arg-type]
            assert _flow_class("Worker", build)().kickoff() == "second"
        assert _request_id.get() == "from caller"
    finally:
        _request_id.reset(token)
    assert observed["thread"] != threading.get_ident()
    assert observed["loop"] == "none"
    assert observed["nested"] == "nested ok"
    assert observed["request"] == "from caller"
    assert observed["second_request"] == "from caller"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", BACKENDS)
def test_listeners_of_one_trigger_still_run_at_the_same_time(backend: str) -> None:
    """Two sync listeners that each wait for the other: serialized, they would hang."""
    from crewai.flow.flow import listen, start

    barrier = threading.Barrier(2, timeout=20)

    def build(ns: dict[str, Any]) -> None:
        ns["go"] = start()(_method("go", lambda self: "go"))
        ns["left"] = listen("go")(_method("left", lambda self: barrier.wait()))
        ns["right"] = listen("go")(_method("right", lambda self: barrier.wait()))

    with every_component_forced(backend):  # type: ignore[arg-type]
        _flow_class("Parallel", build)().kickoff()
    assert not barrier.broken


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_steps_run_on_the_flow_event_loop(backend: str) -> None:
    from crewai.flow.flow import listen, start

    async def fetch(self: Any) -> str:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop()).__name__

    fetch.__name__ = "fetch"

    def build(ns: dict[str, Any]) -> None:
        ns["fetch"] = start()(fetch)
        ns["after"] = listen("fetch")(_method("after", lambda self: self.method_outputs[-1]))

    with every_component_forced(backend):  # type: ignore[arg-type]
        assert "EventLoop" in _flow_class("AsyncSteps", build)().kickoff()


class _StepFailed(Exception):
    pass


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("error", [_StepFailed("boom"), KeyboardInterrupt()])
def test_an_exception_in_a_step_ends_the_kickoff_with_it(backend: str, error: BaseException) -> None:
    from crewai.flow.flow import listen, start

    ran_after: list[str] = []

    def fail(self: Any) -> None:
        raise error

    def build(ns: dict[str, Any]) -> None:
        ns["begin"] = start()(_method("begin", lambda self: 1))
        ns["fail"] = listen("begin")(_method("fail", fail))
        ns["after"] = listen("fail")(_method("after", lambda self: ran_after.append("after")))

    with every_component_forced(backend), pytest.raises(type(error)):  # type: ignore[arg-type]
        _flow_class("Failing", build)().kickoff()
    assert ran_after == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_step_may_kick_off_another_flow(backend: str) -> None:
    from crewai.flow.flow import start

    inner = _chain(3)

    def build(ns: dict[str, Any]) -> None:
        ns["outer"] = start()(_method("outer", lambda self: ("inner", inner().kickoff())))

    with every_component_forced(backend):  # type: ignore[arg-type]
        assert _flow_class("Outer", build)().kickoff() == ("inner", 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_sync_kickoff_inside_a_running_event_loop(backend: str) -> None:
    async def main() -> Any:
        return _chain(3)().kickoff()

    with every_component_forced(backend):  # type: ignore[arg-type]
        assert asyncio.run(main()) == 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_cycle_cap_ends_a_flow_that_never_ends(backend: str) -> None:
    """A router that always loops back: upstream's max_method_calls stops it;
    the same exception and message on both backends."""
    from crewai.flow.flow import listen, or_, router, start

    def build(ns: dict[str, Any]) -> None:
        ns["begin"] = start()(_method("begin", lambda self: 0))
        ns["spin"] = router(or_("begin", "again"))(_method("spin", lambda self: "again"))
        ns["never"] = listen("done")(_method("never", lambda self: None))

    outcomes = {}
    for each in BACKENDS:
        with every_component_forced(each):  # type: ignore[arg-type]
            try:
                outcomes[each] = ("returned", _flow_class("Spin", build)(max_method_calls=20).kickoff())
            except Exception as exc:  # noqa: BLE001 - compared across backends
                outcomes[each] = (type(exc).__name__, str(exc))
    assert outcomes["python"] == outcomes["rust"]


def _run_on_flow_thread_in_child(queue: Any) -> None:
    from crewai_rust.tasks import flow_runner

    async def answer() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    try:
        with every_component_forced("rust"):
            queue.put(flow_runner()(answer()) != threading.get_ident())  # type: ignore[misc]
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put(repr(exc))


def test_a_forked_child_gets_flow_threads_of_its_own() -> None:
    """The parent's idle flow threads do not exist in a forked child: the child
    starts its own. (A whole ``Flow.kickoff`` in such a child waits forever on
    both backends: crewai's event bus thread does not survive the fork.)"""
    with every_component_forced("rust"):
        assert _chain(4)().kickoff() == 3  # the parent's flow threads exist now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_run_on_flow_thread_in_child, args=(queue,))
    child.start()
    try:
        child.join(60)
        assert child.exitcode == 0
        assert queue.get(timeout=5) is True
    finally:
        if child.exitcode is None:
            child.kill()


def test_only_parts_switches_single_parts_and_names_unknown_ones() -> None:
    from crewai_rust import tasks

    flow = _chain(3)()
    with every_component_forced("rust"):
        with tasks.only_parts("dispatch_index"):
            assert tasks.flow_runner() is None
            assert tasks.find_triggered_methods(flow, "s0", False) == ["s1"]
        with tasks.only_parts("flow_thread"):
            assert tasks.flow_runner() is not None
            assert tasks.find_triggered_methods(flow, "s0", False) is None
        assert tasks.flow_runner() is not None
        with pytest.raises(ValueError, match="unknown tasks parts \\['index'\\]"), tasks.only_parts("index"):
            pass


def test_an_idle_flow_thread_ends_after_its_idle_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from crewai_rust.tasks import _FlowThread

    monkeypatch.setattr(_FlowThread, "IDLE_SECONDS", 0.05)
    monkeypatch.setattr(_FlowThread, "_idle", [])
    with every_component_forced("rust"):
        assert _chain(3)().kickoff() == 2
    idle = list(_FlowThread._idle)
    assert len(idle) == 1
    deadline = time.monotonic() + 30
    while _FlowThread._idle or idle[0]._thread.is_alive():
        assert time.monotonic() < deadline, "the idle flow thread never ended"
        time.sleep(0.01)
    with every_component_forced("rust"):  # a new one is made when needed
        assert _chain(3)().kickoff() == 2


# --------------------------------------------------------------------------- persistence


RESUMABLE_FLOW = Path(__file__).with_name("resumable_flow.py")


def _run_resumable(db: Path, backend: str, state_id: str | None = None) -> dict[str, Any]:
    """One process running ``resumable_flow.py``: what it ran and the state it ended with."""
    args = [sys.executable, "-P", str(RESUMABLE_FLOW), str(db), backend, *([state_id] if state_id else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("first", "second"), [(a, b) for a in BACKENDS for b in BACKENDS])
def test_a_flow_that_failed_resumes_from_persistence_in_a_new_process(tmp_path: Path, first: str,
                                                                     second: str) -> None:
    """A persisted flow fails in one process and is resumed by its state id in
    another, each on either backend: what each run does, and the state saved,
    are upstream's whichever backend wrote or reads it."""
    db = tmp_path / "flows.db"
    failed = _run_resumable(db, first)
    assert failed["ran"] == ["begin", "fetch", "decide"]
    assert failed["error"] == "the first run fails after fetch"
    assert failed["state"]["done"] == ["begin", "fetch"]
    assert failed["state"]["runs"] == 1

    resumed = _run_resumable(db, second, failed["state"]["id"])
    assert resumed["error"] is None
    assert resumed["ran"] == ["begin", "fetch", "decide", "finish"]
    assert resumed["state"] == {"id": failed["state"]["id"], "done": ["begin", "fetch", "finish"], "runs": 2}

    from crewai.flow.persistence.sqlite import SQLiteFlowPersistence

    assert SQLiteFlowPersistence(str(db)).load_state(failed["state"]["id"]) == resumed["state"]


# --------------------------------------------------------------------------- private attributes, file store


def test_private_attributes_read_the_same_on_both_backends() -> None:
    from crewai.flow.flow import Flow
    from pydantic import PrivateAttr

    class WithOwnPrivate(Flow):  # type: ignore[misc]
        _own: list[int] = PrivateAttr(default_factory=lambda: [1])

    flow = WithOwnPrivate()
    reads = {}
    for backend in BACKENDS:
        with forced_backend("tasks", backend):  # type: ignore[arg-type]
            reads[backend] = (flow._definition, flow._completed_methods, flow._own, flow._pending_events)
    assert reads["python"] == reads["rust"]
    flow._completed_methods = {"x"}
    with forced_backend("tasks", "rust"):
        assert flow._completed_methods == {"x"}
        assert type(Flow._definition).__name__ == "ModelPrivateAttr"
        with pytest.raises(AttributeError):
            flow._not_an_attribute  # noqa: B018


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_file_store_reads_and_clears_as_upstream(backend: str) -> None:
    import uuid

    from crewai.utilities import file_store

    crew_id, task_id = uuid.uuid4(), uuid.uuid4()
    with every_component_forced(backend):  # type: ignore[arg-type]
        assert file_store.get_all_files(crew_id, task_id) is None
        file_store.clear_task_files(task_id)
        file_store.store_task_files(task_id, {"note": "a file input"})  # type: ignore[dict-item]
        assert file_store.get_all_files(crew_id, task_id) == {"note": "a file input"}
        file_store.clear_task_files(task_id)
        assert file_store.get_all_files(crew_id, task_id) is None


def test_a_typed_flow_state_class_is_made_once_per_state_type() -> None:
    from crewai.flow.flow import Flow, start
    from pydantic import BaseModel

    class Counter(BaseModel):
        count: int = 0

    class Typed(Flow[Counter]):  # type: ignore[misc]
        @start()
        def bump(self) -> int:
            self.state.count += 1
            return self.state.count

    classes = {}
    for backend in BACKENDS:
        with every_component_forced(backend):  # type: ignore[arg-type]
            first, second = Typed(), Typed()
            assert (first.kickoff(), first.kickoff(), second.kickoff()) == (1, 2, 1)
            assert first.state.id != second.state.id
            classes[backend] = (type(first.state), type(second.state))
    for state_class in (*classes["python"], *classes["rust"]):
        assert state_class.__name__ == "StateWithId"
        assert state_class.__qualname__ == "Flow._create_initial_state.<locals>.StateWithId"
        assert set(state_class.model_fields) == {"id", "count"}
    assert classes["python"][0] is not classes["python"][1]  # upstream: one class per instance
    assert classes["rust"][0] is classes["rust"][1]



def _event_types(root: type) -> set[type]:
    found, todo = set(), [root]
    while todo:
        for sub in todo.pop().__subclasses__():
            if sub not in found:
                found.add(sub)
                todo.append(sub)
    return found


def _capturing_into(seen: list[tuple[int, str]]) -> Callable[[Any, Any], None]:
    lock = threading.Lock()

    def capture(source: Any, event: Any) -> None:
        with lock:
            seen.append((event.emission_sequence or 0, type(event).__name__))

    return capture


def test_a_crews_events_are_the_same_on_both_backends() -> None:
    """The event types of a two-task crew run, in emission order, compared across backends."""
    from crewai.events.base_events import BaseEvent
    from crewai.events.event_bus import crewai_event_bus

    from crewai_rust.bench.tasks import _crew

    _crew(1, 1).kickoff()  # once-per-process events (DefaultEnvEvent) out of the way
    sequences = {}
    for backend in BACKENDS:
        seen: list[tuple[int, str]] = []
        capture = _capturing_into(seen)  # (source, event): a third parameter would receive the bus's state

        with crewai_event_bus.scoped_handlers():
            for event_type in _event_types(BaseEvent):  # the bus dispatches on the exact type
                crewai_event_bus.on(event_type)(capture)
            with every_component_forced(backend):  # type: ignore[arg-type]
                output = _crew(2, 1).kickoff()
            crewai_event_bus.flush()
        assert [t.raw for t in output.tasks_output] == ["done", "done"]
        sequences[backend] = [name for _, name in sorted(seen)]
    assert sequences["python"] == sequences["rust"], "\n".join(map(str, sequences.values()))
    assert sequences["rust"].count("TaskCompletedEvent") == 2


@pytest.mark.parametrize("outcome", [5, None, "stop"])
def test_a_router_outcome_that_is_not_a_plain_string_routes_as_upstream(outcome: Any) -> None:
    """str() of a router's return value is the event (5 -> "5"); None ends the route."""
    from crewai.flow.flow import listen, router, start

    ran: dict[str, list[str]] = {}

    def build(ns: dict[str, Any]) -> None:
        ns["begin"] = start()(_method("begin", lambda self: 1))
        ns["decide"] = router("begin")(_method("decide", lambda self: outcome))
        for name in ("5", "None", "stop"):
            ns[f"on_{name}"] = listen(name)(_method(f"on_{name}", lambda self, name=name: self.ran.append(name)))

    for backend in BACKENDS:
        flow = _flow_class(f"Route{backend}", build)()
        object.__setattr__(flow, "ran", [])
        with every_component_forced(backend):  # type: ignore[arg-type]
            flow.kickoff()
        ran[backend] = flow.ran
    assert ran["python"] == ran["rust"]


def test_a_condition_naming_no_method_never_fires_on_either_backend() -> None:
    from crewai.flow.flow import listen, start

    def build(ns: dict[str, Any]) -> None:
        ns["begin"] = start()(_method("begin", lambda self: "b"))
        ns["orphan"] = listen("no_such_method")(_method("orphan", lambda self: "orphan ran"))

    results = {}
    for backend in BACKENDS:
        with every_component_forced(backend):  # type: ignore[arg-type]
            flow = _flow_class("Orphan", build)()
            results[backend] = (flow.kickoff(), [o["method"] for o in flow._method_outputs])
    assert results["python"] == results["rust"] == ("b", ["begin"])


_INTERRUPTED_FLOW = """
import os, signal, sys, threading, time
from crewai.flow.flow import Flow, listen, start
from crewai_rust._backend import every_component_forced

ran = []

class Slow(Flow):
    @start()
    def begin(self):
        ran.append("begin")
        threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        time.sleep(2)
        ran.append("begin done")
        return 1

    @listen("begin")
    def after(self):
        ran.append("after")

with every_component_forced(sys.argv[1]):
    try:
        Slow().kickoff()
        print("returned", ran, flush=True)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", ran, flush=True)
"""


@pytest.mark.timeout(180)
def test_ctrl_c_during_a_step_ends_the_kickoff_as_upstream() -> None:
    """SIGINT while a sync step runs: the step finishes (a thread cannot be
    interrupted), no later step starts, kickoff raises KeyboardInterrupt.
    With crewai's telemetry on, its SIGINT handler first flushes spans, and a
    step may start meanwhile on the fork (see the README): telemetry is off here."""
    import os
    import subprocess
    import sys

    from conftest import REPO_ROOT

    env = {**os.environ, "CREWAI_DISABLE_TELEMETRY": "true", "CREWAI_TRACING_ENABLED": "false"}
    outcomes = {}
    for backend in BACKENDS:
        child = subprocess.run([sys.executable, "-c", _INTERRUPTED_FLOW, backend], capture_output=True, text=True,
                               cwd=REPO_ROOT.parent, env=env, timeout=120, check=False)
        last = [line for line in child.stdout.splitlines() if line.startswith(("KeyboardInterrupt", "returned"))]
        outcomes[backend] = last[-1] if last else f"no outcome: {child.stderr[-2000:]}"
    assert outcomes["python"] == "KeyboardInterrupt ['begin', 'begin done']", outcomes
    assert outcomes["rust"] == outcomes["python"]
