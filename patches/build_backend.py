"""PEP 517 backend: maturin, after making sure the patched ``crewai/`` exists.

A fresh clone has no ``crewai/`` (it is generated, never committed), so the
first build materializes it from the pinned sdist with the patch series. An
sdist of the fork already carries the patched tree and builds offline.
"""

from __future__ import annotations

import sys

import maturin
from maturin import *  # the hooks this backend does not wrap

from patches import tool


def _ensure_patched_tree() -> None:
    """Materialize or refresh crewai/ so the wheel holds the pin + series as committed."""
    layout = tool.Layout.for_root(tool.PROJECT_ROOT)
    pin = tool.read_pin(layout)
    if layout.git_dir.is_dir():
        edits = tool.pending_edits(layout, pin)
        if edits:
            # An engineer trying out edits before exporting them: build them as they are.
            print(f"patches: building with {len(edits)} unexported edit(s) under the generated trees",
                  file=sys.stderr)
            return
        tool.apply(layout, quiet=True)
    elif not (layout.package_dir(pin) / "__init__.py").is_file():
        tool.apply(layout)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    _ensure_patched_tree()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):  # type: ignore[no-untyped-def]
    _ensure_patched_tree()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):  # type: ignore[no-untyped-def]
    _ensure_patched_tree()
    return maturin.build_sdist(sdist_directory, config_settings)
