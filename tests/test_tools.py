"""The tools component: tool schemas described once, deep and huge schemas,
tool selection and names, on both backends where they must agree."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, Field, create_model

from crewai_rust import tools
from crewai_rust._backend import every_component_forced, forced_backend

WATCHDOG = pytest.mark.timeout(300, method="thread")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CREWAI_TRACING_ENABLED", "false")
    yield


def _deep_model(levels: int) -> type[BaseModel]:
    """A model nesting ``levels`` models, each with an optional child (pydantic
    itself recurses per level while building it: the limit is raised for that)."""
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(max(saved, 40 * levels + 2000))
    try:
        model: type[BaseModel] = create_model(f"Level{levels}_0", value=(int, 0))
        for i in range(1, levels):
            model = create_model(f"Level{levels}_{i}", child=(model | None, None))
        return model
    finally:
        sys.setrecursionlimit(saved)


# --------------------------------------------------------------------------- descriptions


def test_a_description_is_the_same_and_a_fresh_copy_each_time() -> None:
    from crewai.utilities.pydantic_schema_utils import generate_model_description

    class Args(BaseModel):
        query: str = Field(description="what to look for")
        limit: int = 10

    with forced_backend("tools", "python"):
        upstream = generate_model_description(Args)
    with forced_backend("tools", "rust"):
        first = generate_model_description(Args)
        first["json_schema"]["schema"]["properties"].clear()  # a caller mutating its copy
        second = generate_model_description(Args)
    assert second == upstream
    assert first != upstream


def test_a_model_is_described_once_until_it_is_rebuilt() -> None:
    class Args(BaseModel):
        x: int

    calls: list[int] = []

    def compute(model: type, strip_null_types: bool) -> dict[str, Any]:
        calls.append(1)
        return {"described": len(calls)}

    with forced_backend("tools", "rust"):
        assert tools.model_description(Args, True, compute) == {"described": 1}
        assert tools.model_description(Args, True, compute) == {"described": 1}
        assert tools.model_description(Args, False, compute) == {"described": 2}
        Args.model_rebuild(force=True)
        assert tools.model_description(Args, True, compute) == {"described": 3}
    with forced_backend("tools", "python"):
        assert tools.model_description(Args, True, compute) is None


def test_a_tool_block_follows_the_tools_name_and_description() -> None:
    from crewai.tools.structured_tool import format_description_for_llm

    class Args(BaseModel):
        x: int

    for name, args, description in (("one", Args, "first"), ("one", Args, "second"), ("two", Args, "first"),
                                     ("one", None, "first"), ("one", None, "second")):
        with forced_backend("tools", "python"):
            upstream = format_description_for_llm(name, args, description)
        with forced_backend("tools", "rust"):
            assert format_description_for_llm(name, args, description) == upstream


@WATCHDOG
@pytest.mark.parametrize("levels", [20, 60, 200])
def test_a_deep_schema_is_described_where_upstream_recursed_too_far(levels: int) -> None:
    from crewai.tools.structured_tool import format_description_for_llm

    model = _deep_model(levels)
    upstream = None
    if levels >= 60:  # upstream's path, in this test's own stack
        with forced_backend("tools", "python"), pytest.raises(RecursionError):
            format_description_for_llm("deep_tool", model, "goes deep")
    else:
        with forced_backend("tools", "python"):
            upstream = format_description_for_llm("deep_tool", model, "goes deep")
    with forced_backend("tools", "rust"):
        block = format_description_for_llm("deep_tool", model, "goes deep")
    assert block.startswith("Tool Name: deep_tool\nTool Arguments: {")
    assert block.count('"child": {') == levels - 1
    if upstream is not None:
        assert block == upstream


@WATCHDOG
def test_a_schema_past_the_bound_is_refused_naming_the_tool() -> None:
    from crewai.tools.structured_tool import format_description_for_llm
    from crewai.utilities.agent_utils import convert_tools_to_openai_schema

    model = _deep_model(450)
    with forced_backend("tools", "rust"):
        with pytest.raises(tools.ToolSchemaError, match="tool 'too_deep': .* past 800 levels"):
            format_description_for_llm("too_deep", model, "d")
        with pytest.raises(tools.ToolSchemaError, match="tool 'too_deep'"):
            convert_tools_to_openai_schema([_tool("too_deep", model)])


def _tool(name: str, args: type[BaseModel]) -> Any:
    from crewai.tools import BaseTool

    class Named(BaseTool):
        def _run(self, **kwargs: Any) -> str:
            return "ran"

    return Named(name=name, description=f"the {name} tool", args_schema=args)


# --------------------------------------------------------------------------- repeated definitions


def _doubling_model(levels: int) -> type[BaseModel]:
    """Each level uses the next one twice: inlined, 2**levels copies of the bottom."""
    model: type[BaseModel] = create_model("Leaf0", value=(int, 0))
    for i in range(1, levels):
        model = create_model(f"Pair{i}", left=(model, ...), right=(model, ...))
    return model


def test_repeated_definitions_stay_linear_and_resolvable() -> None:
    from crewai.utilities.pydantic_schema_utils import generate_model_description

    model = _doubling_model(12)
    with forced_backend("tools", "python"):
        upstream = json.dumps(generate_model_description(model))
    with forced_backend("tools", "rust"):
        described = generate_model_description(model)
    text = json.dumps(described)
    assert len(upstream) > 500_000  # 2**11 copies of the leaf
    assert len(text) < 20_000
    schema = described["json_schema"]["schema"]
    defs = schema["$defs"]
    refs = {ref.split("/")[-1] for ref in _values_of(schema, "$ref")}
    assert refs and refs <= set(defs)


def test_a_small_schema_with_a_definition_used_twice_is_inlined_as_upstream() -> None:
    from crewai.utilities.pydantic_schema_utils import generate_model_description

    model = _doubling_model(3)
    with forced_backend("tools", "python"):
        upstream = generate_model_description(model)
    with forced_backend("tools", "rust"):
        assert generate_model_description(model) == upstream
    assert "$ref" not in json.dumps(upstream)


def _values_of(node: Any, key: str) -> Iterator[Any]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            if key in current:
                yield current[key]
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


# --------------------------------------------------------------------------- selection and names


@pytest.mark.parametrize("asked", ["lookup_source_3", "Lookup Source 3", "lookup_sourc_3", "nothing_like_it"])
def test_tool_selection_picks_what_upstream_picks(asked: str) -> None:
    from crewai.tools.tool_usage import ToolUsage

    from crewai_rust.bench.tasks import other_tools

    structured = [tool.to_structured_tool() for tool in other_tools(8)]

    def select(backend: str) -> str:
        with forced_backend("tools", backend):  # type: ignore[arg-type]
            usage = ToolUsage(tools_handler=None, tools=structured, task=None, function_calling_llm=None)
            try:
                return usage._select_tool(asked).name
            except Exception as error:  # noqa: BLE001 - the miss message is compared too
                return f"error: {error}"

    assert select("rust") == select("python")


@pytest.mark.parametrize("name", ["Search The Web", "searchTheWeb", "ünïcode tool", "a" * 80, "", "__x__"])
def test_a_sanitized_name_is_upstreams(name: str) -> None:
    from crewai.utilities.string_utils import sanitize_tool_name

    with forced_backend("tools", "python"):
        upstream = sanitize_tool_name(name)
    with forced_backend("tools", "rust"):
        assert sanitize_tool_name(name) == upstream
        assert sanitize_tool_name(name) == upstream  # from the cache


def test_a_tool_usage_renders_its_tool_lists_as_upstream_at_first_read() -> None:
    from crewai.tools.tool_usage import ToolUsage

    from crewai_rust.bench.tasks import other_tools

    structured = [tool.to_structured_tool() for tool in other_tools(5)]

    def lists(backend: str) -> tuple[str, str]:
        with forced_backend("tools", backend):  # type: ignore[arg-type]
            usage = ToolUsage(tools_handler=None, tools=structured, task=None, function_calling_llm=None)
        deferred = "tools_description" not in vars(usage)
        assert deferred == (backend == "rust")
        return usage.tools_description, usage.tools_names

    upstream = lists("python")
    assert "lookup_source_4" in upstream[1]
    assert lists("rust") == upstream
    with forced_backend("tools", "rust"):
        usage = ToolUsage(tools_handler=None, tools=structured, task=None, function_calling_llm=None)
    usage.tools_names = "assigned"
    assert usage.tools_names == "assigned"
    reminder = usage._remember_format("result")
    assert "only one name of [assigned]" in reminder
    assert upstream[0] in reminder


def _method_tool_class() -> type:
    from crewai.tools import BaseTool

    class Pair(BaseModel):
        a: int

    class PairTool(BaseTool):
        name: str = "pair"
        description: str = "pairs"
        args_schema: type[BaseModel] = Pair

        def _run(self, a: int, b: int = 1) -> str:
            return f"{a},{b}"

    return PairTool


@pytest.mark.parametrize("backend", ["python", "rust"])
def test_a_function_signature_is_checked_again_when_it_changes(backend: str,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature check is kept per function and schema; a function whose
    defaults change is checked again (``b`` loses its default: not in the schema)."""
    import inspect

    inspected: list[Any] = []
    signature = inspect.signature
    monkeypatch.setattr(inspect, "signature", lambda fn, **kw: inspected.append(fn) or signature(fn, **kw))
    tool_class = _method_tool_class()
    with forced_backend("tools", backend):  # type: ignore[arg-type]
        tool = tool_class()
        assert tool.to_structured_tool().invoke({"a": 2}) == "2,1"
        assert tool.to_structured_tool().invoke({"a": 3}) == "3,1"
        checks = sum(1 for fn in inspected if getattr(fn, "__func__", None) is tool_class._run)
        assert checks == (1 if backend == "rust" else 2)
        tool_class._run.__defaults__ = None
        with pytest.raises(ValueError, match="Required function parameter 'b' not found in args_schema"):
            tool.to_structured_tool()
        tool_class._run.__defaults__ = (5,)
        assert tool.to_structured_tool().invoke({"a": 4}) == "4,5"


# --------------------------------------------------------------------------- through kickoff


def _deep_tool_llm(native: bool) -> Any:
    from crewai_rust.bench.tasks import _instant_llm_class

    class OneCallLLM(_instant_llm_class()):  # type: ignore[misc]
        native_calls: bool = native

        def respond(self, messages: list[Any]) -> Any:
            done = any(m.get("role") == "tool" or "Observation:" in str(m.get("content", ""))
                       for m in messages if m.get("role") != "system")
            if done:
                return "done" if self.native_calls else "Thought: I know\nFinal Answer: done"
            if self.native_calls:
                return [{"id": "call_0", "type": "function",
                         "function": {"name": "deep_tool", "arguments": '{"value": 1}'}}]
            return 'Thought: use it\nAction: deep_tool\nAction Input: {"value": 1}'

        def supports_function_calling(self) -> bool:
            return self.native_calls

    return OneCallLLM(model="one-call")


@WATCHDOG
@pytest.mark.parametrize("native", [True, False], ids=["native", "react"])
@pytest.mark.parametrize("levels", [20, 35, 60, 120, 200, 300, 400])
def test_a_deep_tool_schema_through_kickoff(native: bool, levels: int) -> None:
    """A crew whose tool nests ``levels`` models: the tool runs or, past the
    bound (800 nested JSON containers once described: the native path's
    schema keeps its null branches and nests deeper per level), kickoff fails
    naming it before the first LLM call; never a RecursionError."""
    from crewai import Agent, Crew, Task
    from crewai.tools import BaseTool

    ran: list[int] = []
    nested = _deep_model(levels)
    saved = sys.getrecursionlimit()
    sys.setrecursionlimit(max(saved, 40 * levels + 2000))  # pydantic builds the model recursively too
    try:
        args = create_model(f"DeepArgs{levels}", value=(int, ...), nested=(nested | None, None))
    finally:
        sys.setrecursionlimit(saved)

    class DeepTool(BaseTool):
        name: str = "deep_tool"
        description: str = "takes a deep argument"
        args_schema: type[BaseModel] = args

        def _run(self, value: int, nested: Any = None) -> str:
            ran.append(value)
            return "deep result"

    agent = Agent(role="r", goal="g", backstory="b", llm=_deep_tool_llm(native), tools=[DeepTool()],
                  verbose=False, max_iter=4)
    crew = Crew(agents=[agent], tasks=[Task(description="use the tool", expected_output="x", agent=agent)],
                verbose=False)
    with every_component_forced("rust"):
        try:
            output = crew.kickoff()
        except tools.ToolSchemaError as error:
            assert "tool 'deep_tool'" in str(error)
            assert "past 800 levels" in str(error)
            assert levels >= 200, f"refused at {levels} levels"
            assert ran == []
            return
    assert output.raw == "done"
    assert ran == [1]


# --------------------------------------------------------------------------- RustToolExecutor


class _Add(BaseModel):
    a: int
    b: int


def _function_tool(name: str, fn: Any, args: type[BaseModel] | None = _Add) -> Any:
    from crewai.tools import BaseTool

    class FunctionTool(BaseTool):
        def _run(self, **kwargs: Any) -> Any:
            return fn(**kwargs)

    return FunctionTool(name=name, description=f"the {name} tool", args_schema=args or _Add)


@pytest.fixture
def executor() -> Iterator[tools.RustToolExecutor]:
    running = tools.RustToolExecutor(timeout=5)
    yield running
    running.shutdown()


def test_execute_tool_runs_a_registered_tool(executor: tools.RustToolExecutor) -> None:
    executor.register(_function_tool("Add Numbers", lambda a, b: a + b))
    assert executor.tool_names() == ["add_numbers"]
    assert executor.execute_tool("add_numbers", {"a": 2, "b": 3}) == 5
    assert executor.execute_tool("Add Numbers", '{"a": 1, "b": 1}') == 2


def test_execute_tool_names_unknown_tools_and_bad_arguments(executor: tools.RustToolExecutor) -> None:
    executor.register(_function_tool("add", lambda a, b: a + b))
    with pytest.raises(tools.ToolExecutionError, match="tool 'nope': no such tool; the registered tools are add"):
        executor.execute_tool("nope", {})
    with pytest.raises(tools.ToolExecutionError, match=r"(?s)tool 'add': .*Arguments validation failed: .*b\n  Field "
                                                       r"required"):
        executor.execute_tool("add", {"a": 1})
    with pytest.raises(tools.ToolExecutionError, match=r"(?s)tool 'add': .*Arguments validation failed: .*b\n  Input "
                                                       r"should be a valid integer"):
        executor.execute_tool("add", {"a": 1, "b": "two"})
    with pytest.raises(tools.ToolExecutionError, match="Failed to parse arguments as JSON"):
        executor.execute_tool("add", "{not json")


def test_failing_tools_become_tool_execution_errors(executor: tools.RustToolExecutor) -> None:
    class Stop(BaseException):
        pass

    def forever(a: int, b: int) -> int:
        return forever(a, b)

    def raises_recursion(a: int, b: int) -> int:
        raise RecursionError("deliberate")

    def stops(a: int, b: int) -> int:
        raise Stop("a BaseException")

    def sleeps(a: int, b: int) -> int:
        import time

        time.sleep(30)
        return 0

    for name, fn in (("forever", forever), ("raises_recursion", raises_recursion), ("stops", stops)):
        executor.register(_function_tool(name, fn))
    with pytest.raises(tools.ToolExecutionError, match="tool 'forever': recursed past the recursion limit"):
        executor.execute_tool("forever", {"a": 1, "b": 2})
    with pytest.raises(tools.ToolExecutionError, match="(?s)tool 'raises_recursion': recursed .*deliberate"):
        executor.execute_tool("raises_recursion", {"a": 1, "b": 2})
    with pytest.raises(tools.ToolExecutionError, match="tool 'stops': Stop: a BaseException"):
        executor.execute_tool("stops", {"a": 1, "b": 2})
    quick = tools.RustToolExecutor(timeout=0.2)
    try:
        quick.register(_function_tool("sleeps", sleeps))
        with pytest.raises(tools.ToolExecutionError, match=r"tool 'sleeps': timed out after 0.2 seconds"):
            quick.execute_tool("sleeps", {"a": 1, "b": 2})
    finally:
        quick.shutdown()


def test_a_deeper_recursion_limit_for_tools_is_restored_after() -> None:
    def deep(a: int, b: int) -> int:
        return 0 if a == 0 else 1 + deep(a - 1, b)

    before = sys.getrecursionlimit()
    roomy = tools.RustToolExecutor(max_recursion_depth=20_000, timeout=60)
    try:
        roomy.register(_function_tool("deep", deep))
        assert roomy.execute_tool("deep", {"a": 10_000, "b": 0}) == 10_000
    finally:
        roomy.shutdown()
    assert sys.getrecursionlimit() == before
    with pytest.raises(ValueError, match="max_recursion_depth must be at least 50"):
        tools.RustToolExecutor(max_recursion_depth=3)


_RECURSING_TOOLS = """
import json, re, sys
from pydantic import BaseModel, field_validator
from crewai.tools import BaseTool
from crewai_rust import tools

class Args(BaseModel):
    a: int

class Nested(BaseModel):
    n: int

    @field_validator("n")
    @classmethod
    def deeper(cls, value):
        Nested(n=value + 1)  # each level one more validation: about 1.9 KiB of native stack per limit level
        return value

def through_map(n):
    return list(map(through_map, [n + 1]))

def through_re(n):
    return re.sub("a", lambda match: through_re(n + 1), "a")

bodies = {"pydantic": lambda a: Nested(n=a), "map": through_map, "re": through_re}
executor = tools.RustToolExecutor(max_recursion_depth=16_384, stack_size=64 * 1024 * 1024, timeout=120)
for name, body in bodies.items():
    tool = type(name, (BaseTool,), {"__module__": __name__,
                                    "__annotations__": {"name": str, "description": str, "args_schema": type},
                                    "name": name, "description": "recurses", "args_schema": Args,
                                    "_run": lambda self, a, body=body: body(a)})()
    executor.register(tool)
    try:
        executor.execute_tool(name, {"a": 0})
    except tools.ToolExecutionError as error:
        print(name, "recursed past the recursion limit" in str(error), flush=True)
executor.shutdown()
"""


@WATCHDOG
def test_recursing_to_max_recursion_depth_is_an_error_never_a_stack_overflow() -> None:
    """At the deepest ``max_recursion_depth`` a stack allows, a tool recursing
    through native code (pydantic validation, the heaviest measured; map; re)
    still gets RecursionError: in a child process, where an overflow would
    show as a signal."""
    import os
    import subprocess

    env = {**os.environ, "OTEL_SDK_DISABLED": "true", "CREWAI_TRACING_ENABLED": "false"}
    done = subprocess.run([sys.executable, "-P", "-c", _RECURSING_TOOLS], capture_output=True, text=True,
                          timeout=240, env=env, check=False)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.split() == ["pydantic", "True", "map", "True", "re", "True"], done.stdout
    with pytest.raises(ValueError, match="max_recursion_depth=16385 needs a stack_size of at least 65 MiB"):
        tools.RustToolExecutor(max_recursion_depth=16_385, stack_size=64 * 1024 * 1024)


def test_a_tool_whose_schema_is_too_deep_is_refused_at_registration(executor: tools.RustToolExecutor) -> None:
    with pytest.raises(tools.ToolSchemaError, match="tool 'too_deep': .*past 800 levels"):
        executor.register(_function_tool("too_deep", lambda **kw: 0, _deep_model(450)))
    assert executor.tool_names() == []


# --------------------------------------------------------------------------- an agent's tool calls


class _ToolDied(BaseException):
    pass


def _calling_llm(native: bool, tool_name: str, seen: list[str]) -> Any:
    """An instant LLM that calls ``tool_name`` once, records the tool's
    observation, then answers."""
    from crewai_rust.bench.tasks import _instant_llm_class

    class OneCallLLM(_instant_llm_class()):  # type: ignore[misc]
        native_calls: bool = native

        def respond(self, messages: list[Any]) -> Any:
            if self.native_calls:
                results = [str(m.get("content", "")) for m in messages if m.get("role") == "tool"]
            else:  # the messages after the assistant's Action carry its Observation
                acted = [i for i, m in enumerate(messages)
                         if m.get("role") == "assistant" and f"Action: {tool_name}" in str(m.get("content", ""))]
                results = [str(m.get("content", "")) for m in messages[acted[0]:]] if acted else []
            if results:
                seen.append("\n".join(results))
                return "done" if self.native_calls else "Thought: I know\nFinal Answer: done"
            if self.native_calls:
                return [{"id": "call_0", "type": "function",
                         "function": {"name": tool_name, "arguments": '{"a": 1, "b": 2}'}}]
            return f'Thought: use it\nAction: {tool_name}\nAction Input: {{"a": 1, "b": 2}}'

        def supports_function_calling(self) -> bool:
            return self.native_calls

    return OneCallLLM(model="one-call")


def _crew_with_tool(native: bool, tool: Any, seen: list[str]) -> Any:
    from crewai import Agent, Crew, Task

    agent = Agent(role="r", goal="g", backstory="b", llm=_calling_llm(native, tool.name, seen), tools=[tool],
                  verbose=False, max_iter=4)
    return Crew(agents=[agent], tasks=[Task(description="use the tool", expected_output="x", agent=agent)],
                verbose=False)


@WATCHDOG
@pytest.mark.parametrize("native", [True, False], ids=["native", "react"])
def test_a_tool_raising_a_base_exception_is_an_observation_and_the_crew_goes_on(native: bool) -> None:
    def dies(a: int, b: int) -> int:
        raise _ToolDied("the client library gave up")

    seen: list[str] = []
    with every_component_forced("python"), pytest.raises(_ToolDied):  # upstream: the crew ends with it
        _crew_with_tool(native, _function_tool("dies", dies), seen).kickoff()
    seen.clear()
    with every_component_forced("rust"):
        output = _crew_with_tool(native, _function_tool("dies", dies), seen).kickoff()
    assert output.raw == "done"
    assert any("the client library gave up" in observation for observation in seen)


def _fails(a: int, b: int) -> int:
    raise ValueError("bad input for the tool")


def _recurses_forever(a: int, b: int) -> int:
    return _recurses_forever(a, b)


def _raises_recursion_error(a: int, b: int) -> int:
    raise RecursionError("the tool gave up recursing")


@WATCHDOG
@pytest.mark.parametrize("native", [True, False], ids=["native", "react"])
@pytest.mark.parametrize(("body", "said"), [(_fails, "bad input for the tool"),
                                            (_recurses_forever, "maximum recursion depth exceeded"),
                                            (_raises_recursion_error, "the tool gave up recursing")],
                         ids=["raises", "recurses-forever", "raises-recursion-error"])
def test_a_tool_error_reads_the_same_on_both_backends(native: bool, body: Any, said: str) -> None:
    observations = {}
    for backend in ("python", "rust"):
        seen: list[str] = []
        with every_component_forced(backend):  # type: ignore[arg-type]
            output = _crew_with_tool(native, _function_tool("fails", body), seen).kickoff()
        assert output.raw == "done"
        observations[backend] = seen
    assert observations["rust"] == observations["python"]
    assert any(said in observation for observation in observations["rust"])


@WATCHDOG
def test_a_tool_past_the_timeout_is_an_observation(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release = threading.Event()

    def hangs(a: int, b: int) -> int:
        release.wait(60)
        return 0

    monkeypatch.setenv("CREWAI_RUST_TOOL_TIMEOUT", "0.3")
    monkeypatch.setattr(tools, "_agent_executor", None)
    seen: list[str] = []
    try:
        with every_component_forced("rust"):
            output = _crew_with_tool(True, _function_tool("hangs", hangs), seen).kickoff()
    finally:
        release.set()
        if tools._agent_executor is not None:
            tools._agent_executor.shutdown()
        monkeypatch.setattr(tools, "_agent_executor", None)
    assert output.raw == "done"
    assert any("timed out after 0.3 seconds" in observation for observation in seen)


# --------------------------------------------------------------------------- awaited tool calls


def _thread_name() -> str:
    """The calling thread's Python name and OS name (a natively created tool
    thread has only the second; a Python thread only the first)."""
    import threading

    with open(f"/proc/self/task/{threading.get_native_id()}/comm") as comm:
        return f"{threading.current_thread().name}/{comm.read().strip()}"


@WATCHDOG
@pytest.mark.parametrize("backend", ["python", "rust"])
def test_an_awaited_sync_tool_runs_on_a_tool_thread_without_blocking_the_loop(backend: str) -> None:
    import asyncio
    import threading

    from crewai.tools.structured_tool import CrewStructuredTool

    entered, release = threading.Event(), threading.Event()

    def add(a: int, b: int) -> str:
        entered.set()
        release.wait(30)
        return f"{a + b} on {_thread_name()}"

    structured = CrewStructuredTool.from_function(add, name="add", description="adds")

    async def main() -> str:
        call = asyncio.ensure_future(structured.ainvoke({"a": 1, "b": 2}))
        while not entered.is_set():  # the loop turns while the tool runs
            await asyncio.sleep(0.01)
        release.set()
        return await call

    with forced_backend("tools", backend):  # type: ignore[arg-type]
        result = asyncio.run(main())
    python_name, os_name = result.removeprefix("3 on ").split("/")
    if backend == "rust":
        assert os_name.startswith("crewai-tool-"), result
    else:  # upstream: the loop's default executor
        assert python_name.startswith("asyncio_"), result


class _AsyncTool:
    """A ``BaseTool`` whose async body is ``body``."""

    def __new__(cls, body: Any) -> Any:
        from crewai.tools import BaseTool

        class AsyncTool(BaseTool):
            name: str = "async_tool"
            description: str = "awaits"
            args_schema: type[BaseModel] = _Add

            def _run(self, a: int, b: int) -> Any:
                raise NotImplementedError

            async def _arun(self, a: int, b: int) -> Any:
                return await body(a, b)

        return AsyncTool()


@WATCHDOG
def test_an_async_tool_raising_a_base_exception_is_a_tool_execution_error() -> None:
    import asyncio

    from crewai.tools.structured_tool import CrewStructuredTool

    async def dies(a: int, b: int) -> int:
        raise _ToolDied("the async client gave up")

    async def cancels_itself(a: int, b: int) -> int:
        raise asyncio.CancelledError("the tool's own cancellation")

    async def adds(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    with forced_backend("tools", "python"), pytest.raises(_ToolDied):  # upstream: it reaches the caller
        asyncio.run(_AsyncTool(dies).arun(a=1, b=2))
    with forced_backend("tools", "rust"):
        assert asyncio.run(_AsyncTool(adds).arun(a=1, b=2)) == 3
        with pytest.raises(tools.ToolExecutionError, match="tool 'async_tool': _ToolDied: the async client gave up"):
            asyncio.run(_AsyncTool(dies).arun(a=1, b=2))
        with pytest.raises(tools.ToolExecutionError, match="CancelledError: the tool's own cancellation"):
            asyncio.run(_AsyncTool(cancels_itself).arun(a=1, b=2))
        structured = CrewStructuredTool.from_function(dies, name="dies", description="dies")
        with pytest.raises(tools.ToolExecutionError, match="tool 'dies': _ToolDied"):
            asyncio.run(structured.ainvoke({"a": 1, "b": 2}))


@WATCHDOG
def test_cancelling_the_caller_of_an_async_tool_still_cancels_it() -> None:
    import asyncio

    started: list[int] = []
    finished: list[int] = []

    async def slow(a: int, b: int) -> int:
        started.append(1)
        await asyncio.sleep(30)
        finished.append(1)
        return 0

    async def main() -> None:
        call = asyncio.ensure_future(_AsyncTool(slow).arun(a=1, b=2))
        while not started:
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    with forced_backend("tools", "rust"):
        asyncio.run(main())
    assert finished == []


@WATCHDOG
@pytest.mark.parametrize("body", ["async", "sync"])
def test_an_awaited_tool_past_the_timeout_is_a_tool_execution_error(body: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import threading

    from crewai.tools.structured_tool import CrewStructuredTool

    release = threading.Event()

    async def hangs_async(a: int, b: int) -> int:
        await asyncio.sleep(30)
        return 0

    def hangs(a: int, b: int) -> int:
        release.wait(30)
        return 0

    async def raises_its_own_timeout(a: int, b: int) -> int:
        raise TimeoutError("the service timed out")

    structured = CrewStructuredTool.from_function(hangs_async if body == "async" else hangs, name="hangs",
                                                  description="hangs")
    own_timeout = CrewStructuredTool.from_function(raises_its_own_timeout, name="own", description="own")
    monkeypatch.setenv("CREWAI_RUST_TOOL_TIMEOUT", "0.3")
    monkeypatch.setattr(tools, "_agent_executor", None)
    try:
        with forced_backend("tools", "rust"):
            with pytest.raises(tools.ToolExecutionError, match="tool 'hangs': timed out after 0.3 seconds"):
                asyncio.run(structured.ainvoke({"a": 1, "b": 2}))
            with pytest.raises(TimeoutError, match="the service timed out"):  # the tool's own: unchanged
                asyncio.run(own_timeout.ainvoke({"a": 1, "b": 2}))
    finally:
        release.set()
        if tools._agent_executor is not None:
            tools._agent_executor.shutdown()
        monkeypatch.setattr(tools, "_agent_executor", None)


def _deep_json_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {"value": {"type": "integer"}}}
    for _ in range(levels - 1):
        schema = {"type": "object", "properties": {"child": schema}}
    return schema


@WATCHDOG
def test_mcp_discovery_builds_deep_input_schemas_and_refuses_past_the_bound() -> None:
    from crewai.mcp.tool_resolver import MCPToolResolver

    deep = _deep_json_schema(300)
    with forced_backend("tools", "python"), pytest.raises(RecursionError):
        MCPToolResolver._json_schema_to_pydantic("deep_tool", deep)
    with forced_backend("tools", "rust"):
        model = MCPToolResolver._json_schema_to_pydantic("deep_tool", deep)
        assert "child" in model.model_fields
        with pytest.raises(tools.ToolSchemaError, match="tool 'too_deep': its input schema nests 1001 levels"):
            MCPToolResolver._json_schema_to_pydantic("too_deep", _deep_json_schema(500))
