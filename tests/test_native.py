"""The native module: panics become Python exceptions, kernels match upstream."""

from __future__ import annotations

import math
import random
import threading

import pytest
from conftest import run_python

import crewai_rust
from crewai_rust import _native


@pytest.mark.parametrize("release_gil", [False, True])
def test_panic_becomes_a_catchable_python_exception(release_gil: bool) -> None:
    with pytest.raises(crewai_rust.RustPanicError, match="boom from a test") as info:
        _native._panic_for_tests("boom from a test", release_gil=release_gil)
    # An ordinary Exception, so crewai's `except Exception` handlers still work.
    assert isinstance(info.value, RuntimeError)
    # The interpreter and the module keep working afterwards.
    assert _native.build_info()["version"]


def test_panic_in_a_fresh_interpreter_does_not_abort() -> None:
    code = (
        "from crewai_rust import _native, RustPanicError\n"
        "for _ in range(3):\n"
        "    try:\n"
        "        _native._panic_for_tests('again', release_gil=True)\n"
        "    except RuntimeError as exc:\n"
        "        assert isinstance(exc, RustPanicError)\n"
        "print('survived')\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "survived"


def test_panics_from_many_threads() -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            _native._panic_for_tests("threaded", release_gil=True)
        except BaseException as exc:  # noqa: BLE001 - collecting whatever escapes
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 8
    assert all(isinstance(e, crewai_rust.RustPanicError) for e in errors)


def test_build_info() -> None:
    info = crewai_rust.build_info()
    assert info is not None
    assert info["version"]
    assert info["git_sha"]
    assert info["profile"] in ("debug", "release")
    assert "python" in info["features"]


def _upstream_flags(vectors: list[list[float]], threshold: float) -> list[bool]:
    from crewai.memory.encoding_flow import EncodingFlow

    dropped = [False] * len(vectors)
    for j in range(1, len(vectors)):
        if not vectors[j]:
            continue
        for i in range(j):
            if dropped[i] or not vectors[i]:
                continue
            if EncodingFlow._cosine_similarity(vectors[i], vectors[j]) >= threshold:
                dropped[j] = True
                break
    return dropped


def test_batch_dedup_flags_match_upstream_on_random_batches() -> None:
    rng = random.Random(7)
    for _ in range(30):
        dims = rng.choice([1, 3, 16])
        vectors: list[list[float]] = []
        for _ in range(rng.randint(0, 25)):
            kind = rng.random()
            if kind < 0.1:
                vectors.append([])
            elif kind < 0.15:
                vectors.append([0.0] * dims)
            elif kind < 0.2:
                vectors.append([rng.gauss(0, 1) for _ in range(dims + 1)])
            elif vectors and kind < 0.5:
                base = rng.choice(vectors) or [1.0] * dims
                vectors.append([x + rng.gauss(0, 0.01) for x in base])
            else:
                vectors.append([rng.gauss(0, 1) for _ in range(dims)])
        threshold = rng.choice([0.5, 0.9, 0.98, 1.0])
        assert _native.batch_dedup_flags(vectors, threshold) == _upstream_flags(vectors, threshold)


def test_batch_dedup_memory_wrapper_marks_items() -> None:
    from crewai.memory.encoding_flow import ItemState

    from crewai_rust.memory import batch_dedup

    items = [
        ItemState(content="a", embedding=[1.0, 0.0]),
        ItemState(content="b", embedding=[1.0, 0.0001]),
        ItemState(content="c", embedding=[0.0, 1.0], dropped=True),
        ItemState(content="d", embedding=[0.0, 1.0]),
    ]
    assert batch_dedup(items, 0.98) == 1
    assert [item.dropped for item in items] == [False, True, True, False]


def test_batch_dedup_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="threshold must be a number"):
        _native.batch_dedup_flags([[1.0]], math.nan)
    with pytest.raises(TypeError):
        _native.batch_dedup_flags([["x"]], 0.5)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _native.batch_dedup_flags("not vectors", 0.5)  # type: ignore[arg-type]


def test_type_stub_matches_the_native_module() -> None:
    import ast
    from pathlib import Path

    stub = Path(_native.__file__).with_name("_native.pyi")
    tree = ast.parse(stub.read_text())
    def typing_only(node: ast.stmt) -> bool:  # a Protocol describes what the module accepts
        return isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "Protocol" for b in node.bases)

    declared = {node.name for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not typing_only(node)}
    exported = {name for name in dir(_native) if not name.startswith("__")}
    assert declared == exported
