"""``python -m crewai_rust bench``: upstream's Python path against the Rust path.

Each workload builds its data once and hands the same data to both sides in
the same process: the *upstream* side runs crewai's own code (not a fallback
of ours), the *rust* side runs exactly what the fork's hook runs. Both results
are compared before anything is timed, so a fast wrong answer fails the bench.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any


@dataclasses.dataclass
class Case:
    """One size of a workload: two callables over the same prepared data."""

    label: str
    upstream: Callable[[], Any] | None
    rust: Callable[[], Any]
    # Raises AssertionError when the two results differ (or, without an
    # upstream side, when the Rust result is wrong).
    check: Callable[[Any, Any], None]
    # Why upstream's path cannot run here (then only the Rust side is timed).
    upstream_unavailable: str | None = None
    # A reference point timed alongside, not compared (e.g. orjson for JSON):
    # it shows how far the Rust side is from the fastest known tool.
    anchor: Callable[[], Any] | None = None
    # Process CPU time (every thread's) instead of wall time: for workloads
    # whose framework spreads work over threads and waits (a crew's steps).
    cpu_time: bool = False
    # Units one call does (tasks of a crew, steps of a flow): times are per unit.
    units_per_call: int = 1
    # What the sides saw besides time (peak threads, say), printed under the row;
    # it receives the upstream and Rust timings.
    report: Callable[[Timing | None, Timing], str] | None = None


@dataclasses.dataclass
class Workload:
    name: str
    component: str
    description: str
    cases: Callable[[bool], Iterator[Case]]


REGISTRY: dict[str, Workload] = {}


def workload(name: str, component: str, description: str) -> Callable[[Callable[[bool], Iterator[Case]]], Callable[[bool], Iterator[Case]]]:
    """Register a generator of cases (it receives ``quick``) under ``name``."""

    def register(cases: Callable[[bool], Iterator[Case]]) -> Callable[[bool], Iterator[Case]]:
        if name in REGISTRY:
            raise ValueError(f"bench workload {name!r} registered twice")
        REGISTRY[name] = Workload(name, component, description, cases)
        return cases

    return register


@contextlib.contextmanager
def quiet_runtime() -> Iterator[None]:
    """crewai's runtime minus two host-side costs that are no part of what a workload measures.

    * ``CREWAI_TRACING_ENABLED=false``: without it a first run (no user data)
      collects local "first-time" traces, and the tracing handler of the
      encode flow's FlowStartedEvent waits its full 5 s readiness timeout for
      the span of the MemorySaveStartedEvent that remember emitted just
      before (every remember takes 5 s, on both backends).
    * the console formatter's ``verbose`` off: no rich panel printed per
      remember/recall or agent step.

    Both are restored when the workload's cases are done.
    """
    from crewai.events.event_bus import crewai_event_bus
    from crewai.events.event_listener import event_listener

    saved_env = os.environ.get("CREWAI_TRACING_ENABLED")
    formatter = event_listener.formatter
    saved_verbose = formatter.verbose
    os.environ["CREWAI_TRACING_ENABLED"] = "false"
    formatter.verbose = False
    try:
        yield
    finally:
        crewai_event_bus.flush()  # handlers run on the bus's threads: let them finish quietly
        formatter.verbose = saved_verbose
        if saved_env is None:
            os.environ.pop("CREWAI_TRACING_ENABLED", None)
        else:
            os.environ["CREWAI_TRACING_ENABLED"] = saved_env


@dataclasses.dataclass
class Timing:
    median: float
    minimum: float
    maximum: float

    @classmethod
    def of(cls, samples: list[float]) -> Timing:
        return cls(statistics.median(samples), min(samples), max(samples))


def _calls_per_round(fn: Callable[[], Any], target_seconds: float) -> int:
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, min(10_000, int(target_seconds / once)))


def measure(case: Case, rounds: int, target_seconds: float = 0.02) -> tuple[Timing | None, Timing, Timing | None]:
    """Per-call seconds of upstream, Rust and the anchor; rounds alternate sides so drift hits all alike."""
    case.check(case.upstream() if case.upstream else None, case.rust())
    sides = [fn for fn in (case.upstream, case.rust, case.anchor) if fn is not None]
    clock = time.process_time if case.cpu_time else time.perf_counter
    numbers = [_calls_per_round(fn, target_seconds) for fn in sides]
    samples: list[list[float]] = [[] for _ in sides]
    for _ in range(rounds):
        for index, fn in enumerate(sides):
            number = numbers[index]
            gc.collect()  # the other side's garbage is not collected on this side's clock
            start = clock()
            for _ in range(number):
                fn()
            samples[index].append((clock() - start) / (number * case.units_per_call))
    timings = iter(Timing.of(side) for side in samples)
    upstream = next(timings) if case.upstream else None
    rust = next(timings)
    anchor = next(timings) if case.anchor else None
    return upstream, rust, anchor


def _format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _cell(timing: Timing) -> str:
    return f"{_format_seconds(timing.median)} ({_format_seconds(timing.minimum)}-{_format_seconds(timing.maximum)})"


def _load_workloads() -> None:
    # Imported for their registrations; each component issue adds its module here.
    from crewai_rust.bench import database, memory, serialization, tasks, tools  # noqa: F401


def run(quick: bool = False, json_path: str | None = None, only: list[str] | None = None,
        rounds: int | None = None) -> int:
    from crewai_rust import _backend

    _load_workloads()
    if _backend.load_native() is None:
        print(f"bench: the native module is missing ({_backend.native_import_error()}); "
              "build it first (see README)", file=sys.stderr)
        return 2
    selected = [w for w in REGISTRY.values() if not only or any(o in w.name for o in only)]
    if not selected:
        print(f"bench: no workload matches {only}; workloads: {', '.join(REGISTRY)}", file=sys.stderr)
        return 2
    rounds = rounds or (5 if quick else 15)
    results: list[dict[str, Any]] = []
    header = (f"{'workload':<26} {'case':<28} {'upstream median (min-max)':<30} {'rust median (min-max)':<30} "
              f"{'speedup':>8}  {'anchor (orjson)':<14}")
    lines = [header, "-" * len(header)]
    for index, wl in enumerate(selected, 1):
        for case in wl.cases(quick):
            print(f"bench: [{index}/{len(selected)}] {wl.name} {case.label} ...", file=sys.stderr, flush=True)
            up, rs, anchor = measure(case, rounds)
            ratio = up.median / rs.median if up is not None and rs.median > 0 else None
            results.append({
                "workload": wl.name, "component": wl.component, "case": case.label,
                "rounds": rounds,
                "clock": "process CPU" if case.cpu_time else "wall",
                "units_per_call": case.units_per_call,
                "upstream": dataclasses.asdict(up) if up else None,
                "upstream_unavailable": case.upstream_unavailable,
                "rust": dataclasses.asdict(rs),
                "anchor": dataclasses.asdict(anchor) if anchor else None,
                "speedup": ratio,
            })
            up_cell = _cell(up) if up else f"n/a: {case.upstream_unavailable}"
            ratio_cell = f"{ratio:>7.1f}x" if ratio is not None else f"{'-':>8}"
            anchor_cell = _format_seconds(anchor.median) if anchor else "-"
            lines.append(f"{wl.name:<26} {case.label:<28} {up_cell:<30} {_cell(rs):<30} {ratio_cell}  {anchor_cell:<14}")
            if case.report is not None:
                note = case.report(up, rs)
                results[-1]["report"] = note
                lines.append(f"{'':<26} {note}")
    print("\n".join(lines))
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"quick": quick, "results": results}, fh, indent=2)
        print(f"bench: results written to {json_path}", file=sys.stderr)
    return 0
