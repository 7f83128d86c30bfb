#!/usr/bin/env python3
"""Run upstream crewai's sdist test suite offline with our root conftest.

Usage::

    python tests/upstream_harness/run_upstream.py --root DIR [-- extra pytest args]

``DIR`` contains upstream's ``tests/`` directory.  The runner copies this
directory's ``conftest.py`` and ``pytest.ini`` into ``DIR`` (so they act as the
root conftest / settings for ``DIR/tests``), then runs ``python -m pytest`` with
the interpreter it was started with, from ``DIR``, deselecting every node id in
``deselected.txt``.  A node id listed there that no longer exists makes the run
fail with a usage error (checked by the conftest during collection).  The exit
code is pytest's.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(HARNESS_DIR))
from conftest import read_deselect_file  # inert outside a tests/ root

DESELECT_FILE = HARNESS_DIR / "deselected.txt"
PYTHON_OLD_SQLITE_FILE = HARNESS_DIR / "python-backend-old-sqlite.txt"
LIST_OPTIONS = [
    f"--upstream-deselect-file={DESELECT_FILE}",
    f"--upstream-python-old-sqlite-file={PYTHON_OLD_SQLITE_FILE}",
]
COPIED_FILES = ("conftest.py", "pytest.ini")

# Mirrors upstream's root pytest addopts, with a fixed worker count.
BASE_ARGS = [
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
    "--import-mode=importlib",
    "--block-network",
    "--record-mode=none",
    "--timeout=60",
    "--max-worker-restart=2",
    "--tb=short",
    "-n",
    "2",
    "--dist=loadfile",
]

_SUMMARY_RE = re.compile(
    r"^=*\s*((?:\d+ [a-z]+|no tests ran)\b[^=]*?\bin [0-9.]+s\b[^=]*?)\s*=*$"
)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        cut = argv.index("--")
        own, extra = argv[:cut], argv[cut + 1 :]
    else:
        own, extra = argv, []
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--root",
        required=True,
        type=Path,
        help="directory containing upstream's tests/ (conftest.py and pytest.ini are written there)",
    )
    parser.add_argument(
        "--no-deselect",
        action="store_true",
        help="run without deselected.txt (to re-check environmental failures)",
    )
    return parser.parse_args(own), extra


def materialize(root: Path) -> None:
    if not (root / "tests").is_dir():
        sys.exit(f"run_upstream: {root}/tests does not exist")
    if not (root / "tests" / "cassettes").is_dir():
        sys.exit(f"run_upstream: {root}/tests/cassettes does not exist")
    for name in COPIED_FILES:
        shutil.copyfile(HARNESS_DIR / name, root / name)


def _pytest(root: Path, *args: str) -> list[str]:
    return [
        sys.executable, "-m", "pytest", "-c", str(root / "pytest.ini"), "--rootdir", str(root), *args,
    ]


def check_deselect_list(root: Path) -> int:
    """Collect only the modules named in the lists, in one process.

    The conftest raises a usage error (exit code 4) if an entry's module is
    gone or an entry's node id is not among the module's collected items.
    """
    entries = read_deselect_file(DESELECT_FILE) + read_deselect_file(PYTHON_OLD_SQLITE_FILE)
    files = sorted({e.split("::", 1)[0] for e in entries if "::" in e})
    missing = sorted({e.split("::", 1)[0] for e in entries if not (root / e.split("::", 1)[0]).exists()})
    if missing:
        print("run_upstream: the lists name files that do not exist:", *missing, sep="\n  ")
        return 4
    if not files:
        return 0
    cmd = _pytest(
        root, "-p", "no:randomly", "-p", "no:cacheprovider", "--import-mode=importlib",
        "--collect-only", "-q", *LIST_OPTIONS, *files,
    )
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode not in (0, 5):
        print(proc.stdout[-5000:], proc.stderr[-5000:], sep="\n")
        print(f"run_upstream: list check failed (exit {proc.returncode})")
        return proc.returncode
    return 0


def main(argv: list[str]) -> int:
    args, extra = parse_args(argv)
    root = args.root.resolve()
    materialize(root)

    cmd = _pytest(root, *BASE_ARGS)
    if not args.no_deselect:
        rc = check_deselect_list(root)
        if rc:
            return rc
        cmd += LIST_OPTIONS
    cmd += extra

    print("run_upstream:", " ".join(cmd), f"(cwd={root})", flush=True)
    started = time.monotonic()
    summary = None
    with subprocess.Popen(
        cmd,
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            match = _SUMMARY_RE.match(line.strip())
            if match:
                summary = match.group(1)
        rc = proc.wait()
    elapsed = time.monotonic() - started
    sys.stdout.flush()
    print(f"\nrun_upstream: exit code {rc}, wall time {elapsed:.0f}s")
    print(f"run_upstream: summary: {summary or '(no pytest summary line)'}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
