"""The bench CLI runs every registered workload on both sides and reports ratios."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_python

from crewai_rust import bench


def test_bench_quick_runs_both_sides_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_python(
        "import sys; from crewai_rust.cli import main; "
        f"sys.exit(main(['bench', '--quick', '--rounds', '2', '--json', {str(out)!r}]))"
    )
    assert result.returncode == 0, result.stderr
    assert "speedup" in result.stdout
    assert "bench: [1/" in result.stderr  # progress while it runs
    data = json.loads(out.read_text())
    bench._load_workloads()
    assert {row["workload"] for row in data["results"]} == set(bench.REGISTRY)
    for row in data["results"]:
        assert row["rust"]["median"] > 0
        if row["upstream"] is None:
            assert row["upstream_unavailable"], row  # a side that cannot run says why
            continue
        assert row["upstream"]["minimum"] <= row["upstream"]["median"] <= row["upstream"]["maximum"]
        assert row["speedup"] > 0


def test_bench_only_filters_and_rejects_unknown_names() -> None:
    result = run_python("import sys; from crewai_rust.cli import main; sys.exit(main(['bench', '--only', 'no-such-workload']))")
    assert result.returncode == 2
    assert "no workload matches" in result.stderr


def test_every_component_workload_checks_results_before_timing() -> None:
    """For every registered workload and case: the check accepts the real result
    and, where the case returns a value, rejects a wrong one, so a fast wrong
    answer fails the bench. (Write cases return None; their checks compare the
    two stores' files.)"""
    bench._load_workloads()
    components = {w.component for w in bench.REGISTRY.values()}
    assert components >= {"memory", "serialization", "database", "tasks"}
    wrong = object()
    for workload in bench.REGISTRY.values():
        cases = 0
        for case in workload.cases(True):  # evaluated inside the generator's context
            cases += 1
            reference = case.upstream() if case.upstream else None
            result = case.rust()
            case.check(reference, result)
            if result is None:
                continue
            with pytest.raises(Exception):  # noqa: B017 - any failure stops the bench
                case.check(reference if case.upstream else wrong, wrong)
                pytest.fail(f"{workload.name} / {case.label}: the check accepts a wrong result")
        assert cases, f"{workload.name} has no case"
