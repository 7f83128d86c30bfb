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

A run never hangs: a test still running after ``--timeout`` has its threads'
stacks dumped (faulthandler, a C-level timer that fires while the main thread
is blocked in native code) and its worker ended (pytest-timeout's thread
method), and xdist reports that worker as crashed; a run that prints nothing
for ``--stall-timeout`` seconds (a hang outside any test) has every pytest
process dump its stacks, is killed, and exits with ``STALLED_EXIT_CODE``.
Crashed workers are listed by name at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HARNESS_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(HARNESS_DIR))
from conftest import STACKS_DIR_VARIABLE, read_deselect_file  # inert outside a tests/ root

DESELECT_FILE = HARNESS_DIR / "deselected.txt"
PYTHON_OLD_SQLITE_FILE = HARNESS_DIR / "python-backend-old-sqlite.txt"
LIST_OPTIONS = [
    f"--upstream-deselect-file={DESELECT_FILE}",
    f"--upstream-python-old-sqlite-file={PYTHON_OLD_SQLITE_FILE}",
]
COPIED_FILES = ("conftest.py", "pytest.ini")

TEST_TIMEOUT = 60
# Silence longer than any test may take (TEST_TIMEOUT) plus worker start-up.
DEFAULT_STALL_TIMEOUT = 600
STALLED_EXIT_CODE = 124

# Mirrors upstream's root pytest addopts, with a fixed worker count.
BASE_ARGS = [
    "-p",
    "no:randomly",
    "-p",
    "no:cacheprovider",
    "--import-mode=importlib",
    "--block-network",
    "--record-mode=none",
    f"--timeout={TEST_TIMEOUT}",
    # The signal method cannot fire while the main thread is blocked in native
    # code; the thread method ends the worker, which xdist reports and replaces.
    "--timeout-method=thread",
    # Dump every thread's stack a little before that, to the real stderr.
    "-o",
    f"faulthandler_timeout={TEST_TIMEOUT - 5}",
    "--max-worker-restart=4",
    "--tb=short",
    "-n",
    "2",
    "--dist=loadfile",
]

_NODE_DOWN_RE = re.compile(r"\[(gw\d+)\] node down: (.*)$")
_CRASHED_RE = re.compile(r"worker '(gw\d+)' crashed while running '([^']+)'")
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
        "--stall-timeout",
        type=float,
        default=DEFAULT_STALL_TIMEOUT,
        help="seconds without any output after which the run is declared stuck, "
        f"its stacks dumped and it is killed (default {DEFAULT_STALL_TIMEOUT})",
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
    with tempfile.TemporaryDirectory(prefix="upstream-stacks-") as stacks_dir:
        run = _Run(cmd, root, stacks_dir, args.stall_timeout)
        rc = run.wait()
    return rc


class _Run:
    """pytest as a child process group, its output streamed and watched."""

    def __init__(self, cmd: list[str], root: Path, stacks_dir: str, stall_timeout: float):
        self.stacks_dir = Path(stacks_dir)
        self.stall_timeout = stall_timeout
        self.started = time.monotonic()
        self.last_output = self.started
        self.summary: str | None = None
        self.node_down: dict[str, str] = {}
        self.crashed: dict[str, str] = {}
        self.stalled = False
        env = dict(os.environ, **{STACKS_DIR_VARIABLE: stacks_dir})
        self.proc = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, errors="replace", bufsize=1,
            start_new_session=True,  # one process group: the controller and its xdist workers
        )
        self.reader = threading.Thread(target=self._pump, name="run_upstream-output", daemon=True)
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.last_output = time.monotonic()
            sys.stdout.write(line)
            sys.stdout.flush()  # a run cut short by CI keeps everything printed so far
            text = line.strip()
            if match := _NODE_DOWN_RE.search(text):
                self.node_down[match.group(1)] = match.group(2)
            for worker, test in _CRASHED_RE.findall(text):
                self.crashed.setdefault(worker, test)
            if match := _SUMMARY_RE.match(text):
                self.summary = match.group(1)

    def wait(self) -> int:
        try:
            while self.proc.poll() is None:
                self.reader.join(1.0)
                silent = time.monotonic() - self.last_output
                if silent > self.stall_timeout:
                    self._kill_stalled(silent)
                    break
            rc = self.proc.wait()
        finally:
            # Nothing of the run outlives it (a worker whose controller died, say).
            self._signal_group(signal.SIGKILL)
        self.reader.join(5.0)
        return self._report(STALLED_EXIT_CODE if self.stalled else rc)

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.proc.pid, signum)
        except ProcessLookupError:
            pass

    def _kill_stalled(self, silent: float) -> None:
        self.stalled = True
        print(f"\nrun_upstream: no output for {silent:.0f}s: the run is stuck; "
              "stacks of every pytest process follow, then it is killed", flush=True)
        self._signal_group(signal.SIGUSR1)
        time.sleep(3.0)
        for dump in sorted(self.stacks_dir.glob("*.txt")):
            text = dump.read_text(errors="replace").strip()
            if text:
                print(f"----- stacks of pytest process {dump.stem} -----\n{text}", flush=True)
        self._signal_group(signal.SIGKILL)

    def _report(self, rc: int) -> int:
        elapsed = time.monotonic() - self.started
        sys.stdout.flush()
        print(f"\nrun_upstream: exit code {rc}, wall time {elapsed:.0f}s")
        for worker, reason in self.node_down.items():
            test = self.crashed.get(worker, "(no test running)")
            print(f"run_upstream: worker {worker} crashed ({reason}) while running {test}")
        if self.stalled:
            print(f"run_upstream: stuck: killed after {self.stall_timeout:.0f}s without output")
        print(f"run_upstream: summary: {self.summary or '(no pytest summary line)'}")
        return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
