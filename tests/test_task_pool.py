"""The tasks component's async tasks: the native task pool (RustTaskExecutor),
one agent running several tasks at once (crewAI #7332), and no hang when an
async task raises a BaseException.

Every test that could hang runs under pytest-timeout's thread method: past
its limit it prints every thread's stack and ends the run.
"""

from __future__ import annotations

import asyncio
import contextvars
import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from crewai_rust import task_pool
from crewai_rust._backend import every_component_forced

WATCHDOG = pytest.mark.timeout(120, method="thread")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CREWAI_TRACING_ENABLED", "false")
    yield


# --------------------------------------------------------------------------- the pool


@pytest.fixture
def pool() -> Iterator[Callable[[int], task_pool.RustTaskExecutor]]:
    """Makes pools of a given bound; each is shut down after the test."""
    made: list[task_pool.RustTaskExecutor] = []

    def make(max_concurrency: int) -> task_pool.RustTaskExecutor:
        made.append(task_pool.RustTaskExecutor(max_concurrency=max_concurrency))
        return made[-1]

    yield make
    for executor in made:
        executor.shutdown()


@WATCHDOG
def test_results_come_back_in_input_order_within_the_bound(pool: Callable[[int], task_pool.RustTaskExecutor]) -> None:
    executor = pool(4)
    running, most = 0, 0
    lock = threading.Lock()

    def work(i: int) -> Any:
        def call() -> int:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.002 * (i % 3))
            with lock:
                running -= 1
            return i

        return call

    assert executor.execute_concurrent_tasks([work(i) for i in range(40)]) == list(range(40))
    assert most <= 4
    assert executor.stats().peak_workers <= 4


@WATCHDOG
def test_a_thousand_tiny_tasks_do_not_make_a_thousand_threads(pool: Callable[[int], task_pool.RustTaskExecutor]) -> None:
    executor = pool(8)
    threads_seen: set[int] = set()

    def tiny(i: int) -> Any:
        return lambda: (threads_seen.add(threading.get_ident()), i)[1]

    assert executor.execute_concurrent_tasks([tiny(i) for i in range(1000)]) == list(range(1000))
    assert len(threads_seen) <= 8
    assert executor.stats().peak_workers <= 8


@WATCHDOG
def test_the_first_failure_is_raised_and_queued_tasks_are_cancelled(pool: Callable[[int], task_pool.RustTaskExecutor]) -> None:
    executor = pool(1)
    ran: list[int] = []

    def fails() -> None:
        ran.append(0)
        raise KeyError("first")

    gate = threading.Event()

    def later(i: int) -> Any:
        def call() -> None:
            ran.append(i)
            gate.wait(30)  # holds the only worker: the rest stay queued until cancelled

        return call

    try:
        with pytest.raises(KeyError, match="first"):
            executor.execute_concurrent_tasks([fails, *[later(i) for i in range(1, 50)]])
        gate.set()
        executor.shutdown(wait=True, timeout=30)
        assert ran[0] == 0
        assert len(ran) <= 2  # at most the one that had started; the queued ones never did
    finally:
        gate.set()


@WATCHDOG
def test_a_base_exception_resolves_its_future() -> None:
    class Stop(BaseException):
        pass

    def stops() -> None:
        raise Stop("stopped")

    future = task_pool.default_task_executor().submit(stops)
    with pytest.raises(Stop, match="stopped"):
        future.result(timeout=30)
    with pytest.raises(Stop):
        task_pool.execute_concurrent_tasks([stops, lambda: 1])


@WATCHDOG
def test_a_timeout_names_the_unfinished_tasks() -> None:
    release = threading.Event()
    try:
        with pytest.raises(TimeoutError, match="1 of 2 tasks had not finished after 0.2 seconds"):
            task_pool.execute_concurrent_tasks([lambda: 1, lambda: release.wait(30)], timeout=0.2)
    finally:
        release.set()


@WATCHDOG
def test_a_task_submitted_from_a_running_task_never_waits_behind_it(
        pool: Callable[[int], task_pool.RustTaskExecutor]) -> None:
    executor = pool(1)

    def outer() -> int:
        return executor.submit(lambda: 41).result(timeout=30) + 1

    assert executor.execute_concurrent_tasks([outer]) == [42]


@WATCHDOG
def test_context_variables_reach_the_task_as_a_copy() -> None:
    seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")
    seen.set("caller")

    def read_and_change() -> str:
        value = seen.get()
        seen.set("task")
        return value

    assert task_pool.execute_concurrent_tasks([read_and_change, read_and_change]) == ["caller", "caller"]
    assert seen.get() == "caller"


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="max_concurrency must be at least 1, not 0"):
        task_pool.RustTaskExecutor(max_concurrency=0)
    executor = task_pool.RustTaskExecutor(max_concurrency=1)
    with pytest.raises(TypeError, match="a pooled job must be callable, not int"):
        executor._current_pool().submit(3)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="cannot schedule new tasks after shutdown"):
        executor.submit(lambda: 1)


def test_the_default_bound_reads_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREWAI_RUST_TASKS_MAX_CONCURRENCY", raising=False)
    assert task_pool.default_max_concurrency() == 64
    monkeypatch.setenv("CREWAI_RUST_TASKS_MAX_CONCURRENCY", "3")
    assert task_pool.default_max_concurrency() == 3
    for bad in ("0", "many"):
        monkeypatch.setenv("CREWAI_RUST_TASKS_MAX_CONCURRENCY", bad)
        with pytest.raises(ValueError, match="CREWAI_RUST_TASKS_MAX_CONCURRENCY must be a positive integer"):
            task_pool.default_max_concurrency()


def _pool_in_child(queue: Any) -> None:
    try:
        queue.put(task_pool.execute_concurrent_tasks([lambda: os.getpid(), lambda: 2]))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        queue.put(repr(exc))


@WATCHDOG
def test_a_forked_child_gets_a_pool_of_its_own() -> None:
    assert task_pool.execute_concurrent_tasks([lambda: 1]) == [1]  # the parent's pool exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_pool_in_child, args=(queue,))
    child.start()
    try:
        child.join(60)
        assert child.exitcode == 0
        assert queue.get(timeout=5) == [child.pid, 2]
    finally:
        if child.exitcode is None:
            child.kill()


# --------------------------------------------------------------------------- crews with async tasks


class _Overlap:
    """Counts the LLM calls in flight; the most at once tells whether tasks overlapped."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def _crew(one_agent: bool, overlap: _Overlap, fail_on: str | None = None, error: BaseException | None = None) -> Any:
    from crewai import Agent, Crew, Task

    from crewai_rust.bench.tasks import _instant_llm_class

    both_started = threading.Barrier(2, timeout=5)

    class WaitingLLM(_instant_llm_class()):  # type: ignore[misc]
        def respond(self, messages: list[Any]) -> Any:
            text = str(messages)
            if fail_on is not None and fail_on in text:
                raise error  # type: ignore[misc]
            with overlap:
                if "async task" in text:
                    try:  # both async tasks in flight at once, or a broken barrier after 5 s
                        both_started.wait()
                    except threading.BrokenBarrierError:
                        pass
            return self.answer

    llm = WaitingLLM(model="waiting")
    agents = [Agent(role=f"role {i}", goal="g", backstory="b", llm=llm, verbose=False) for i in range(2)]
    first, second = (agents[0], agents[0]) if one_agent else (agents[0], agents[1])
    work = [
        Task(description="async task one", expected_output="x", agent=first, async_execution=True),
        Task(description="async task two", expected_output="x", agent=second, async_execution=True),
        Task(description="final task", expected_output="x", agent=first),
    ]
    return Crew(agents=[first] if one_agent else agents, tasks=work, verbose=False)


def _kick(crew: Any, how: str) -> Any:
    if how == "kickoff":
        return crew.kickoff()
    if how == "akickoff":
        return asyncio.run(crew.akickoff())
    return asyncio.run(crew.kickoff_async())


KICKOFFS = ["kickoff", "akickoff", "kickoff_async"]


@WATCHDOG
@pytest.mark.parametrize("how", KICKOFFS)
def test_one_agent_runs_its_two_async_tasks_at_once(how: str) -> None:
    """crewAI #7332: on the fork the crew runs, its async tasks overlapping."""
    overlap = _Overlap()
    with every_component_forced("rust"):
        output = _kick(_crew(one_agent=True, overlap=overlap), how)
    assert [t.raw for t in output.tasks_output] == ["done", "done", "done"]
    assert overlap.most == 2


@WATCHDOG
def test_upstream_fails_one_agents_two_async_tasks() -> None:
    """What #7332 reports, on upstream's path (the reason for the fix)."""
    overlap = _Overlap()
    with every_component_forced("python"), pytest.raises(RuntimeError, match="Executor is already running"):
        _kick(_crew(one_agent=True, overlap=overlap), "kickoff")


@WATCHDOG
@pytest.mark.parametrize("backend", ["python", "rust"])
def test_two_agents_async_tasks_overlap_on_both_backends(backend: str) -> None:
    overlap = _Overlap()
    with every_component_forced(backend):  # type: ignore[arg-type]
        output = _kick(_crew(one_agent=False, overlap=overlap), "kickoff")
    assert [t.raw for t in output.tasks_output] == ["done", "done", "done"]
    assert overlap.most == 2


class _LLMDied(BaseException):
    pass


@WATCHDOG
@pytest.mark.parametrize("how", KICKOFFS)
@pytest.mark.parametrize("error", [_LLMDied("llm died"), asyncio.CancelledError("cancelled inside")])
def test_a_base_exception_in_an_async_task_ends_the_kickoff(how: str, error: BaseException) -> None:
    """Upstream waits forever here on kickoff() and kickoff_async() (its task
    thread dies without resolving the future); the fork raises it."""
    with every_component_forced("rust"), pytest.raises(type(error)):
        _kick(_crew(one_agent=False, overlap=_Overlap(), fail_on="async task two", error=error), how)


@WATCHDOG
def test_cancelling_akickoff_from_its_caller_ends_it() -> None:
    from crewai import Agent, Crew, Task

    from crewai_rust.bench.tasks import _instant_llm_class

    class SlowLLM(_instant_llm_class()):  # type: ignore[misc]
        def respond(self, messages: list[Any]) -> Any:
            time.sleep(0.5)
            return self.answer

    agent = Agent(role="r", goal="g", backstory="b", llm=SlowLLM(model="slow"), verbose=False)
    work = [Task(description=f"async {i}", expected_output="x", agent=agent, async_execution=True) for i in range(2)]
    work.append(Task(description="final", expected_output="x", agent=agent))
    crew = Crew(agents=[agent], tasks=work, verbose=False)

    async def caller() -> None:
        await asyncio.wait_for(crew.akickoff(), timeout=0.1)

    with every_component_forced("rust"), pytest.raises(TimeoutError):
        asyncio.run(caller())


@WATCHDOG
@pytest.mark.parametrize("async_execution", [False, True])
def test_a_task_past_max_execution_time_stops_at_its_running_step(async_execution: bool) -> None:
    """Upstream raises its TimeoutError once the timed-out execution has
    ended, through all its further steps. On the fork the execution is
    stopped at the deadline: its running LLM call ends, and the tool that call
    asks for never runs; the same TimeoutError is raised then."""
    from crewai import Agent, Crew, Task
    from crewai.tools import BaseTool

    from crewai_rust.bench.tasks import _instant_llm_class

    llm_calls: list[int] = []
    tool_runs: list[int] = []

    class SlowLLM(_instant_llm_class()):  # type: ignore[misc]
        def respond(self, messages: list[Any]) -> Any:
            llm_calls.append(1)
            time.sleep(1.5)  # past the agent's 1 s
            return 'Thought: add\nAction: add_numbers\nAction Input: {"a": 1, "b": 2}'

    class AddNumbers(BaseTool):
        name: str = "add_numbers"
        description: str = "Adds two integers."

        def _run(self, a: int, b: int) -> str:
            tool_runs.append(1)
            return str(a + b)

    agent = Agent(role="r", goal="g", backstory="b", llm=SlowLLM(model="slow"), tools=[AddNumbers()],
                  verbose=False, max_execution_time=1, max_retry_limit=0)
    work = [Task(description="timed", expected_output="x", agent=agent, async_execution=async_execution),
            Task(description="final", expected_output="x", agent=agent)]
    with every_component_forced("rust"), pytest.raises(TimeoutError, match="Task 'timed' execution timed out "
                                                                            "after 1 seconds"):
        Crew(agents=[agent], tasks=work, verbose=False).kickoff()
    assert llm_calls == [1]
    assert tool_runs == []



def _os_threads() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))


@WATCHDOG
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="counts OS threads through /proc")
@pytest.mark.parametrize("backend", ["python", "rust"])
def test_a_crews_hundred_async_tasks_stay_within_the_pool(monkeypatch: pytest.MonkeyPatch, backend: str,
                                                         pool: Callable[[int], task_pool.RustTaskExecutor]) -> None:
    """Upstream starts a thread per async task (all 100 wait at once here); the
    fork's threads stay bounded by the pool (8 here), the flow threads of the
    executors it runs and crewai's own few."""
    from crewai import Agent, Crew, Task

    from crewai_rust.bench.tasks import _instant_llm_class

    seen: list[int] = []
    all_started = threading.Event()

    class CountingLLM(_instant_llm_class()):  # type: ignore[misc]
        def respond(self, messages: list[Any]) -> Any:
            seen.append(_os_threads())
            if len(seen) >= 100:
                all_started.set()
            if "async" in str(messages):
                all_started.wait(0.05)  # upstream's 100 threads all wait here together
            return self.answer

    bounded = pool(8)
    monkeypatch.setattr(task_pool, "_default_executor", bounded)
    llm = CountingLLM(model="counting")
    agents = [Agent(role=f"role {i}", goal="g", backstory="b", llm=llm, verbose=False) for i in range(100)]
    work = [Task(description=f"async {i}", expected_output="x", agent=agents[i], async_execution=True)
            for i in range(100)]
    work.append(Task(description="final", expected_output="x", agent=agents[0]))
    before = _os_threads()
    with every_component_forced(backend):  # type: ignore[arg-type]
        output = Crew(agents=agents, tasks=work, verbose=False).kickoff()
    assert len(output.tasks_output) == 101
    if backend == "python":
        assert max(seen) - before >= 100
    else:
        assert bounded.stats().peak_workers <= 8
        assert max(seen) - before < 50


@WATCHDOG
def test_an_async_crews_events_are_the_same_on_both_backends() -> None:
    """The same events, by type and count (async tasks interleave theirs in any order)."""
    import collections

    from crewai.events.base_events import BaseEvent
    from crewai.events.event_bus import crewai_event_bus

    counts: dict[str, collections.Counter[str]] = {}
    with every_component_forced("python"):  # once-per-process events (the environment's) out of the way
        _kick(_crew(one_agent=False, overlap=_Overlap()), "kickoff")
    for backend in ("python", "rust"):
        seen: collections.Counter[str] = collections.Counter()
        record = _counting_handler(seen)
        with crewai_event_bus.scoped_handlers():
            for event_type in _event_types(BaseEvent):
                crewai_event_bus.on(event_type)(record)
            with every_component_forced(backend):  # type: ignore[arg-type]
                _kick(_crew(one_agent=False, overlap=_Overlap()), "kickoff")
            crewai_event_bus.flush()
        counts[backend] = seen
    assert counts["python"]["TaskStartedEvent"] == 3
    assert counts["python"] == counts["rust"]


def _counting_handler(seen: Any) -> Any:
    lock = threading.Lock()

    def record(source: Any, event: Any) -> None:  # the bus passes exactly these two
        with lock:
            seen[type(event).__name__] += 1

    return record


def _event_types(base: type) -> list[type]:
    found, stack = [], [base]
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found
