"""Workloads of the tasks component: crewai's own cost of running tasks and flows.

* tasks.crew_sequential: ``Crew.kickoff()`` of a sequential crew whose agents
  use an instant LLM, per task, in process CPU time (the steps run on worker
  threads upstream).
* flow.dispatch: a user ``Flow`` of 200 sync steps mixing ``@listen``,
  ``@router``, ``or_`` and ``and_``, per step.
* tools.call_native / tools.call_react: one task whose agent makes 30 tool
  calls (native function calling, or ReAct text) before answering, per tool
  call (the task's own cost is spread over the 30 calls on both sides).
* tasks.async_fanout: a crew of 10 or 100 async tasks (one agent each, an
  LLM that waits 50 ms without the GIL) and one final sync task, wall time
  per kickoff; under the row, the most threads each side had at once.
* tasks.parts: the first three with only some of the component's parts on
  (the fixes upstream could take, the native index, the flow thread), for
  the share each part has in the gain.

The upstream side runs every component on upstream's code (what users of
crewai 1.15.30 run), the Rust side every component on the fork's. The LLM is
:class:`InstantLLM`: it answers at once but does on crewai's side what a
provider's ``call()`` does (call events, hooks, token tracking).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from crewai_rust._backend import every_component_forced
from crewai_rust.bench import Case, quiet_runtime, workload

_FINAL_ANSWER = "Thought: I now know the final answer\nFinal Answer: done"


def instant_llm() -> Any:
    """An LLM that answers at once, doing crewai's part of a provider call."""
    return _instant_llm_class()(model="instant")


@functools.cache
def _instant_llm_class() -> type:
    # One class per process: defining a pydantic model costs milliseconds, no part of a kickoff.
    from crewai.events.types.llm_events import LLMCallType
    from crewai.llms.base_llm import BaseLLM, llm_call_context

    class InstantLLM(BaseLLM):
        answer: str = _FINAL_ANSWER

        def respond(self, messages: list[Any]) -> str | list[dict[str, Any]]:
            """The reply: text, or a list of native tool calls."""
            return self.answer

        def call(self, messages: Any, tools: Any = None, callbacks: Any = None, available_functions: Any = None,
                 from_task: Any = None, from_agent: Any = None, response_model: Any = None) -> Any:
            with llm_call_context():
                self._emit_call_started_event(messages=messages, tools=tools, callbacks=callbacks,
                                              available_functions=available_functions,
                                              from_task=from_task, from_agent=from_agent)
                formatted = self._format_messages(messages)
                self._invoke_before_llm_call_hooks(formatted, from_agent)
                usage = {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}
                self._track_token_usage_internal(usage)
                response = self.respond(formatted)
                if isinstance(response, str):  # providers run the after-call hooks on text only
                    response = self._invoke_after_llm_call_hooks(formatted, response, from_agent)
                call_type = LLMCallType.TOOL_CALL if isinstance(response, list) else LLMCallType.LLM_CALL
                self._emit_call_completed_event(response=response, call_type=call_type, from_task=from_task,
                                                from_agent=from_agent, messages=formatted, usage=usage)
                return response

        def supports_function_calling(self) -> bool:
            return False

        def get_context_window_size(self) -> int:
            return 128_000

    return InstantLLM


_TOOL_CALLS = 30


def scripted_tool_llm(native: bool) -> Any:
    """An instant LLM that calls the ``add_numbers`` tool until the conversation
    holds ``_TOOL_CALLS`` results, then answers: with native tool calls
    (OpenAI's shape) or, for ``native=False``, in ReAct text."""
    return _scripted_tool_llm_class()(model="scripted", native_calls=native)


@functools.cache
def _scripted_tool_llm_class() -> type:
    class ScriptedToolLLM(_instant_llm_class()):  # type: ignore[misc]
        native_calls: bool = True

        def _results_so_far(self, messages: list[Any]) -> int:
            if self.native_calls:
                return sum(1 for m in messages if m.get("role") == "tool")
            # Each answered ReAct step is an assistant message holding its Action (the prompt's
            # own format instructions mention "Observation:" too).
            return sum(1 for m in messages
                       if m.get("role") == "assistant" and "Action: add_numbers" in str(m.get("content", "")))

        def respond(self, messages: list[Any]) -> str | list[dict[str, Any]]:
            done = self._results_so_far(messages)
            if done >= _TOOL_CALLS:
                return "done" if self.native_calls else _FINAL_ANSWER
            arguments = f'{{"a": {done}, "b": 1}}'
            if self.native_calls:
                return [{"id": f"call_{done}", "type": "function",
                         "function": {"name": "add_numbers", "arguments": arguments}}]
            return f"Thought: I need the sum\nAction: add_numbers\nAction Input: {arguments}"

        def supports_function_calling(self) -> bool:
            return self.native_calls

        def get_context_window_size(self) -> int:
            return 1_000_000

    return ScriptedToolLLM


def _add_tool() -> Any:
    return _add_tool_class()()


@functools.cache
def _add_tool_class() -> type:
    from crewai.tools import BaseTool
    from pydantic import BaseModel

    class AddArgs(BaseModel):
        a: int
        b: int

    class AddNumbers(BaseTool):
        name: str = "add_numbers"
        description: str = "Adds two integers."
        args_schema: type[BaseModel] = AddArgs

        def _run(self, a: int, b: int) -> str:
            return str(a + b)

    return AddNumbers


def other_tools(count: int) -> list[Any]:
    """``count`` tools besides ``add_numbers``, each with an argument model of its own."""
    return [_other_tool_class(i)() for i in range(count)]


@functools.cache
def _other_tool_class(i: int) -> type:
    from crewai.tools import BaseTool
    from pydantic import BaseModel, Field, create_model

    class Address(BaseModel):
        street: str
        city: str = Field(description="the city")

    args = create_model(f"Lookup{i}Args", query=(str, Field(description=f"what to look up in source {i}")),
                        limit=(int, 10), address=(Address | None, None))

    def run(self: Any, **kwargs: Any) -> str:
        return f"nothing found in source {i}"

    return type(f"Lookup{i}", (BaseTool,), {
        "__module__": __name__, "__qualname__": f"Lookup{i}",
        "__annotations__": {"name": str, "description": str, "args_schema": type[BaseModel]},
        "name": f"lookup_source_{i}", "description": f"Looks things up in source {i}.", "args_schema": args,
        "_run": run,
    })


def _tool_task(native: bool, backend: str, tools: int = 1) -> Callable[[], Any]:
    def run() -> Any:
        from crewai import Agent, Crew, Task

        with every_component_forced(backend):  # type: ignore[arg-type]
            agent = Agent(role="adder", goal="add", backstory="b", llm=scripted_tool_llm(native),
                          tools=[*other_tools(tools - 1), _add_tool()], verbose=False, max_iter=_TOOL_CALLS + 5)
            task = Task(description="add numbers", expected_output="a sum", agent=agent)
            output = Crew(agents=[agent], tasks=[task], verbose=False).kickoff()
        return output.raw, len(output.token_usage.model_dump()) if output.token_usage else 0

    return run


def _crew(tasks: int, agents: int, llm: Any = None, async_execution: bool = False, final_task: bool = False) -> Any:
    """A crew of ``tasks`` tasks over ``agents`` agents in turn, on ``llm``
    (default: an instant one); with ``final_task``, one more sync task on the
    first agent closes it."""
    from crewai import Agent, Crew, Task

    llm = llm or instant_llm()
    members = [Agent(role=f"role {i}", goal="goal", backstory="backstory", llm=llm, verbose=False)
               for i in range(agents)]
    work = [Task(description=f"step {i}", expected_output="done", agent=members[i % agents],
                 async_execution=async_execution) for i in range(tasks)]
    if final_task:
        work.append(Task(description="final", expected_output="done", agent=members[0]))
    return Crew(agents=members, tasks=work, verbose=False)


def _kickoff(tasks: int, agents: int, backend: str) -> Callable[[], Any]:
    def run() -> Any:
        with every_component_forced(backend):  # type: ignore[arg-type]
            output = _crew(tasks, agents).kickoff()
        return [(t.agent, t.raw) for t in output.tasks_output]

    return run


def _same(expected: Any, got: Any) -> None:
    assert expected == got, f"results differ: {expected!r} vs {got!r}"


@workload("tasks.crew_sequential", component="tasks",
          description="Crew.kickoff() of a sequential crew with an instant LLM (events, hooks, token "
                      "tracking as a provider call): process CPU per task, every component on upstream "
                      "vs on the fork")
def crew_sequential_cases(quick: bool) -> Iterator[Case]:
    sizes = ((1, 1), (10, 1)) if quick else ((1, 1), (50, 1), (50, 5))
    with quiet_runtime():
        for tasks, agents in sizes:
            label = f"{tasks} task{'s' if tasks > 1 else ''}, {agents} agent{'s' if agents > 1 else ''}"
            yield Case(label, _kickoff(tasks, agents, "python"), _kickoff(tasks, agents, "rust"), _same,
                       cpu_time=True, units_per_call=tasks)


def dispatch_flow_class(steps: int) -> type:
    """A Flow of ``steps`` sync steps: a chain where every tenth step is a
    router (the next listens to its outcome), every tenth from the fifth
    joins the two before it with ``and_``, every tenth from the seventh
    listens to ``or_(previous, an event that never comes)``."""
    from crewai.flow.flow import Flow, and_, listen, or_, router, start

    def step(i: int) -> Callable[[Any], int]:
        def method(self: Any) -> int:
            return i

        method.__name__ = f"m{i}"
        return method

    def outcome(i: int) -> Callable[[Any], str]:
        def method(self: Any) -> str:
            return f"go{i}"

        method.__name__ = f"m{i}"
        return method

    namespace: dict[str, Any] = {"m0": start()(step(0))}
    previous = "m0"
    for i in range(1, steps):
        if i % 10 == 0:
            namespace[f"m{i}"] = router(previous)(outcome(i))
            previous = f"go{i}"
            continue
        if i % 10 == 5:
            condition: Any = and_(f"m{i - 1}", f"m{i - 2}")
        elif i % 10 == 7:
            condition = or_(previous, "never")
        else:
            condition = previous
        namespace[f"m{i}"] = listen(condition)(step(i))
        previous = f"m{i}"
    return type(f"DispatchFlow{steps}", (Flow,), namespace)


def _run_flow(flow_class: type, backend: str) -> Callable[[], Any]:
    from crewai.events.listeners.tracing.utils import _tui_mode, set_tui_mode

    def run() -> Any:
        # No console panel per step (as under crewai's TUI), on both sides: rendering two rich
        # panels per step costs more than the step and is the same code on both.
        token = set_tui_mode(True)
        try:
            with every_component_forced(backend):  # type: ignore[arg-type]
                flow = flow_class()
                flow.kickoff()
        finally:
            _tui_mode.reset(token)
        return list(flow.method_outputs)

    return run


@workload("flow.dispatch", component="tasks",
          description="Flow.kickoff() of a user flow of 200 sync steps mixing @listen, @router, or_ and "
                      "and_ (console panels off on both sides): process CPU per step, every component "
                      "on upstream vs on the fork")
def dispatch_cases(quick: bool) -> Iterator[Case]:
    steps = 200
    flow_class = dispatch_flow_class(steps)

    def check(expected: Any, got: Any) -> None:
        _same(expected, got)
        assert len(got) == steps, f"{len(got)} of {steps} steps ran"

    with quiet_runtime():
        yield Case(f"{steps} steps", _run_flow(flow_class, "python"), _run_flow(flow_class, "rust"), check,
                   cpu_time=True, units_per_call=steps)


def _tool_cases(native: bool, quick: bool) -> Iterator[Case]:
    from crewai.events.event_bus import crewai_event_bus
    from crewai.events.types.tool_usage_events import ToolUsageFinishedEvent

    finished: list[int] = []

    def check(expected: Any, got: Any) -> None:
        _same(expected, got)

    def counted(run: Callable[[], Any]) -> Callable[[], Any]:
        def call() -> Any:
            finished.clear()
            result = run()
            crewai_event_bus.flush()
            assert len(finished) == _TOOL_CALLS, f"{len(finished)} of {_TOOL_CALLS} tool calls finished"
            return result

        return call

    with quiet_runtime(), crewai_event_bus.scoped_handlers():
        crewai_event_bus.on(ToolUsageFinishedEvent)(lambda source, event: finished.append(1))
        for tools in ((1,) if quick else (1, 30)):
            yield Case(f"{_TOOL_CALLS} calls, {tools} tool{'s' if tools > 1 else ''}",
                       counted(_tool_task(native, "python", tools)), counted(_tool_task(native, "rust", tools)),
                       check, cpu_time=True, units_per_call=_TOOL_CALLS,
                       report=_tool_count_cost(native, tools) if tools > 1 else None)


def _tool_count_cost(native: bool, tools: int, rounds: int = 15) -> Callable[[Any, Any], str]:
    """The fork's call with ``tools`` tools against its 1-tool call, timed in
    alternating rounds (the two rows above are timed minutes apart, so the
    machine's drift would sit in their ratio)."""

    def report(upstream: Any, rust: Any) -> str:
        import gc
        import statistics

        sides = {1: _tool_task(native, "rust", 1), tools: _tool_task(native, "rust", tools)}
        samples: dict[int, list[float]] = {count: [] for count in sides}
        for _ in range(rounds):
            for count, run in sides.items():
                gc.collect()
                start = time.process_time()
                run()
                samples[count].append(time.process_time() - start)
        ratio = statistics.median(samples[tools]) / statistics.median(samples[1])
        return f"fork: a call with {tools} tools costs {ratio:.2f}x a 1-tool call ({rounds} alternating rounds)"

    return report


@workload("tools.call_native", component="tools",
          description="An agent's native (function-calling) tool calls with an instant LLM: process CPU per "
                      "call, every component on upstream vs on the fork (the task's own cost spread over 30 calls)")
def call_native_cases(quick: bool) -> Iterator[Case]:
    yield from _tool_cases(native=True, quick=quick)


@workload("tools.call_react", component="tools",
          description="An agent's ReAct (text) tool calls with an instant LLM: process CPU per call, every "
                      "component on upstream vs on the fork (the task's own cost spread over 30 calls)")
def call_react_cases(quick: bool) -> Iterator[Case]:
    yield from _tool_cases(native=False, quick=quick)


# Cumulative selections of the component's parts (crewai_rust.tasks.PARTS) for tasks.parts.
_UPSTREAM_TAKEABLE = ("private_attributes", "state_class", "package_version", "file_store")
_PART_SELECTIONS = (
    ("none", ()),
    ("fixes", _UPSTREAM_TAKEABLE),
    ("index", ("dispatch_index",)),
    ("fixes+index", (*_UPSTREAM_TAKEABLE, "dispatch_index")),
    ("all", (*_UPSTREAM_TAKEABLE, "dispatch_index", "flow_thread")),
)


def _with_parts(parts: tuple[str, ...], run: Callable[[], Any]) -> Callable[[], Any]:
    from crewai_rust.tasks import only_parts

    def call() -> Any:
        with only_parts(*parts):
            return run()

    return call


@workload("tasks.parts", component="tasks",
          description="What each part of the tasks component gains: upstream vs the fork with only some parts "
                      "on (the other components on the fork in every case). none = no part; fixes = the four fixes upstream could take as they are (private attributes, one "
                      "state class, package version once, empty file store); index = the native dispatch "
                      "index (the Rust core); all = both plus the flow thread (steps without a thread hop)")
def parts_cases(quick: bool) -> Iterator[Case]:
    flow_class = dispatch_flow_class(200)
    shapes: list[tuple[str, Callable[[str], Callable[[], Any]], int]] = [
        ("crew 50 tasks", lambda backend: _kickoff(50, 1, backend), 50),
        ("native calls", lambda backend: _tool_task(True, backend), _TOOL_CALLS),
        ("flow 200 steps", lambda backend: _run_flow(flow_class, backend), 200),
    ]
    if quick:
        shapes = shapes[2:]
    with quiet_runtime():
        for shape, make, units in shapes:
            upstream = make("python")
            for selection, parts in _PART_SELECTIONS:
                yield Case(f"{shape}: {selection}", upstream, _with_parts(parts, make("rust")), _same,
                           cpu_time=True, units_per_call=units)


_FANOUT_WAIT = 0.05


@functools.cache
def _waiting_llm_class() -> type:
    class WaitingLLM(_instant_llm_class()):  # type: ignore[misc]
        def respond(self, messages: list[Any]) -> str | list[dict[str, Any]]:
            _threads_seen.append(_os_threads())
            time.sleep(_FANOUT_WAIT)  # a provider's network wait: the GIL is released
            return self.answer

    return WaitingLLM


_threads_seen: list[int] = []


def _os_threads() -> int:
    """The process's OS threads now (Python's and native ones alike)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    except (OSError, StopIteration):
        return threading.active_count()


def _fanout(tasks: int, backend: str, peaks: list[int], async_execution: bool = True,
            llm_class: Callable[[], type] = _waiting_llm_class) -> Callable[[], Any]:
    def run() -> Any:
        with every_component_forced(backend):  # type: ignore[arg-type]
            crew = _crew(tasks, tasks, llm_class()(model="waiting"), async_execution, final_task=True)
            _threads_seen.clear()
            output = crew.kickoff()
            peaks.append(max(_threads_seen, default=0))
        return [t.raw for t in output.tasks_output]

    return run


def _sequential_cost(tasks: int, backend: str) -> float:
    """Wall seconds per task of the same crew run sequentially with an instant
    LLM: the per-task framework cost the fan-out's ideal adds to the waits."""
    run = _fanout(tasks, backend, [], async_execution=False, llm_class=_instant_llm_class)
    run()
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return sorted(samples)[1] / (tasks + 1)


@workload("tasks.async_fanout", component="tasks",
          description="Crew.kickoff() of N async tasks (one agent each; the LLM waits 50 ms without the GIL) "
                      "and a final sync task: wall time per kickoff, every component on upstream vs on the "
                      "fork. Under the row: each side against its ideal (its waits, in waves of its bound, "
                      "plus N+1 times its own per-task cost on the sequential path) and the most OS threads")
def async_fanout_cases(quick: bool) -> Iterator[Case]:
    from crewai_rust.task_pool import default_max_concurrency

    bound = default_max_concurrency()
    with quiet_runtime():
        for tasks in ((10,) if quick else (10, 100)):
            upstream_peaks: list[int] = []
            fork_peaks: list[int] = []
            per_task = {backend: _sequential_cost(tasks, backend) for backend in ("python", "rust")}
            # Upstream runs every async task at once; the fork in waves of its bound. Then the final task.
            ideal = {"python": 2 * _FANOUT_WAIT + (tasks + 1) * per_task["python"],
                     "rust": (-(-tasks // bound) + 1) * _FANOUT_WAIT + (tasks + 1) * per_task["rust"]}

            def report(up: Any, rs: Any, up_peaks: list[int] = upstream_peaks, fork_peaks: list[int] = fork_peaks,
                       ideal: dict[str, float] = ideal, per_task: dict[str, float] = per_task) -> str:
                return (f"vs ideal: upstream {up.median / ideal['python']:.2f}x of {ideal['python'] * 1000:.0f} ms "
                        f"({per_task['python'] * 1000:.1f} ms/task), fork {rs.median / ideal['rust']:.2f}x of "
                        f"{ideal['rust'] * 1000:.0f} ms ({per_task['rust'] * 1000:.1f} ms/task, bound {bound}); "
                        f"most OS threads upstream {max(up_peaks)}, fork {max(fork_peaks)}")

            yield Case(f"{tasks} async tasks", _fanout(tasks, "python", upstream_peaks),
                       _fanout(tasks, "rust", fork_peaks), _same, report=report)
