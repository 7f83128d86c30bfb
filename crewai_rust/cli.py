"""Command line: ``status`` (what runs on Rust and why), ``bench`` (upstream vs Rust) and
``memory-export`` (bring LanceDB up to date with the Rust memory store now)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from crewai_rust import _backend


def _status_rows() -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for component in _backend.COMPONENTS:
        try:
            status = _backend.resolve(component)
            rows.append({
                "component": component,
                "requested": status.requested,
                "source": status.source,
                "backend": status.backend,
                "reason": status.reason,
            })
        except (_backend.ConfigurationError, _backend.NativeModuleMissingError,
                _backend.ComponentNotImplementedError) as exc:
            errors.append(str(exc))
            rows.append({
                "component": component, "requested": "?", "source": "?",
                "backend": "error", "reason": str(exc),
            })
    return rows, errors


def _check_requirement(required: str, rows: list[dict[str, Any]]) -> list[str]:
    """Why the backend in force is not ``required`` (empty when it is)."""
    problems = []
    if required == "python":
        problems += [f"{row['component']} runs on {row['backend']}" for row in rows
                     if row["backend"] != "python"]
    else:
        if _backend.load_native() is None:
            problems.append(f"native module missing ({_backend.native_import_error()})")
        if _backend.master_setting() == "off":
            problems.append(f"{_backend.MASTER_VARIABLE}=0")
        problems += [
            f"{row['component']} runs on {row['backend']} ({row['reason']})"
            for row in rows
            if row["component"] in _backend.IMPLEMENTED_COMPONENTS and row["backend"] != "rust"
        ]
    return problems


def cmd_status(args: argparse.Namespace) -> int:
    native = _backend.load_native()
    info = dict(native.build_info()) if native is not None else None
    rows, errors = _status_rows()
    problems = _check_requirement(args.require, rows) if args.require else []
    master = os.environ.get(_backend.MASTER_VARIABLE)
    if args.json:
        report = {
            "master": {"variable": _backend.MASTER_VARIABLE, "value": master},
            "native": {"available": native is not None, "import_error": _backend.native_import_error(),
                       "build": info, "path": getattr(native, "__file__", None)},
            "components": rows,
            "implemented": sorted(_backend.IMPLEMENTED_COMPONENTS),
            "errors": errors,
            "require": args.require,
            "require_failures": problems,
        }
        print(json.dumps(report, indent=2))
    else:
        if info:
            features = ",".join(info["features"]) or "-"
            print(f"native module: crewai_rust._native {info['version']} (git {info['git_sha']}, "
                  f"{info['profile']}, {info['target']}, features: {features})")
        else:
            print(f"native module: missing ({_backend.native_import_error()})")
        print(f"{_backend.MASTER_VARIABLE}={master if master is not None else '(unset: auto)'}")
        width = max(len(c) for c in _backend.COMPONENTS)
        print(f"{'component':<{width}}  {'requested':<9}  {'backend':<7}  why")
        for row in rows:
            print(f"{row['component']:<{width}}  {row['requested']:<9}  {row['backend']:<7}  {row['reason']}")
            if args.verbose:
                print(f"{'':<{width}}  setting from: {row['source']}; variable "
                      f"{_backend.component_variable(row['component'])}="
                      f"{os.environ.get(_backend.component_variable(row['component']), '(unset)')}")
        if args.verbose and native is not None:
            print(f"native path: {native.__file__}")
        for problem in problems:
            print(f"required backend {args.require!r} is not in force: {problem}", file=sys.stderr)
    if errors:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if problems else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from crewai_rust import bench

    return bench.run(quick=args.quick, json_path=args.json, only=args.only, rounds=args.rounds)


def cmd_memory_export(args: argparse.Namespace) -> int:
    from crewai_rust.memory import export_to_lancedb

    count = export_to_lancedb(args.path)
    print(f"LanceDB in {args.path or 'the default memory directory'} is up to date: {count} memory record(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m crewai_rust")
    sub = parser.add_subparsers(dest="command", required=True)
    p_status = sub.add_parser("status", help="per component: requested setting, backend in force, why")
    p_status.add_argument("--verbose", "-v", action="store_true")
    p_status.add_argument("--json", action="store_true", help="machine-readable output")
    p_status.add_argument("--require", choices=("rust", "python"),
                          help="exit 1 unless this backend is in force (native module loaded and every "
                               "implemented component on Rust, or every component on Python)")
    p_bench = sub.add_parser("bench", help="upstream Python path vs Rust path, same data, one run")
    p_bench.add_argument("--quick", action="store_true", help="smaller sizes and fewer rounds")
    p_bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p_bench.add_argument("--only", metavar="NAME", action="append",
                         help="run workloads whose name contains NAME (repeatable)")
    p_bench.add_argument("--rounds", type=int, default=None, help="timed rounds per side")
    p_export = sub.add_parser("memory-export",
                              help="bring LanceDB up to date with the Rust memory store now (opening it does the same)")
    p_export.add_argument("path", nargs="?", default=None,
                          help="the memory directory (default: LanceDBStorage's default, $CREWAI_STORAGE_DIR/memory)")
    args = parser.parse_args(argv)
    if args.command == "status":
        return cmd_status(args)
    if args.command == "memory-export":
        return cmd_memory_export(args)
    return cmd_bench(args)
