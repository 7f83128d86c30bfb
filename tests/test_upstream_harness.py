"""The upstream-suite runner fails fast: stuck tests, crashed workers and silent hangs end the run.

Each test lays out a small suite the way ``python -m patches apply`` lays out
upstream's (``tests/`` with a ``cassettes/`` directory, so the harness conftest
is active) and runs ``run_upstream.py`` on it as tox does, with real xdist
workers and real signals.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import REPO_ROOT

RUNNER = REPO_ROOT / "tests" / "upstream_harness" / "run_upstream.py"

STUCK = """
    import signal
    import threading
    import time

    def test_blocked_in_native_code():
        # The main thread cannot run a SIGALRM handler, as when it waits
        # inside a native library (LanceDB's optimize, say).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        threading.Thread(target=time.sleep, args=(300,), name="helper", daemon=True).start()
        time.sleep(300)
"""

CRASH = """
    import ctypes

    def test_segfault():
        ctypes.string_at(0)
"""

STALL_AT_IMPORT = """
    import signal
    import time

    # Collection is outside any test's timeout.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(300)

    def test_never_reached():
        pass
"""

COMPACTION = """
    import os
    import threading
    import time
    from pathlib import Path

    RESULT = Path(__file__).parent / "seen-by-compaction.txt"

    def test_leaves_a_background_compaction_running():
        os.environ["HARNESS_TEST_MARK"] = "the test's environment"

        def compact():  # stands in for LanceDBStorage._compact_safe
            time.sleep(1.5)
            RESULT.write_text(os.environ.get("HARNESS_TEST_MARK", "environment restored under it"))

        threading.Thread(target=compact, name="lancedb-compact", daemon=True).start()

    def test_teardown_waited_for_it():
        assert RESULT.read_text() == "the test's environment"
        assert "HARNESS_TEST_MARK" not in os.environ
"""


SEEDED_KEY = """
    from pathlib import Path

    def test_a_fresh_home_already_has_the_credentials_key():
        # Two first kickoffs at once otherwise race to create it (crewai_core's TokenManager).
        key = Path.home() / ".local" / "share" / "crewai" / "credentials" / "secret.key"
        assert len(key.read_bytes()) == 44
        assert (key.stat().st_mode & 0o777) == 0o600
"""


def _suite(tmp_path: Path, **modules: str) -> Path:
    root = tmp_path / "suite"
    (root / "tests" / "cassettes").mkdir(parents=True)
    for name, text in modules.items():
        (root / "tests" / f"{name}.py").write_text(textwrap.dedent(text))
    return root


def _run(root: Path, *args: str, limit: float = 150) -> tuple[int, str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(RUNNER), "--root", str(root), "--no-deselect", *args],
        capture_output=True, text=True, timeout=limit, check=False,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


def test_a_test_stuck_in_native_code_fails_within_its_timeout_with_its_stacks(tmp_path: Path) -> None:
    root = _suite(tmp_path, test_stuck=STUCK)
    rc, out, elapsed = _run(root, "--", "--timeout=8", "-o", "faulthandler_timeout=4")
    assert rc != 0, out
    assert elapsed < 90, f"took {elapsed:.0f}s\n{out[-3000:]}"
    # Every thread's stack, dumped while the main thread was still blocked.
    assert "Timeout (0:00:04)!" in out, out[-3000:]
    assert "in test_blocked_in_native_code" in out, out[-3000:]
    assert out.count("Thread 0x") >= 2, out[-3000:]
    assert "crashed (Not properly terminated) while running tests/test_stuck.py::test_blocked_in_native_code" \
        in out, out[-3000:]


def test_a_crashed_worker_is_reported_by_name_with_its_test(tmp_path: Path) -> None:
    root = _suite(tmp_path, test_crash=CRASH)
    rc, out, _ = _run(root)
    assert rc != 0
    assert "Fatal Python error: Segmentation fault" in out
    lines = [line for line in out.splitlines() if line.startswith("run_upstream: worker gw")]
    assert lines and all("while running tests/test_crash.py::test_segfault" in line for line in lines), out[-3000:]


def test_a_silent_run_is_killed_with_every_process_stacks(tmp_path: Path) -> None:
    root = _suite(tmp_path, test_stall=STALL_AT_IMPORT)
    rc, out, elapsed = _run(root, "--stall-timeout=15")
    assert rc == 124, out[-3000:]
    assert elapsed < 90, f"took {elapsed:.0f}s"
    assert "no output for" in out and "stacks of pytest process" in out, out[-3000:]
    assert "test_stall.py\", line 7 in <module>" in out, out[-3000:]  # a worker, caught mid-collection
    assert "run_upstream: stuck: killed after 15s without output" in out


def test_teardown_waits_for_upstream_background_compaction(tmp_path: Path) -> None:
    root = _suite(tmp_path, test_compaction=COMPACTION)
    rc, out, _ = _run(root, "--", "-n", "0")
    assert rc == 0, out[-3000:]
    assert "2 passed" in out


def test_each_test_home_has_the_key_concurrent_kickoffs_would_race_for(tmp_path: Path) -> None:
    root = _suite(tmp_path, test_key=SEEDED_KEY)
    rc, out, _ = _run(root, "--", "-n", "0")
    assert rc == 0, out[-3000:]
    assert "1 passed" in out
