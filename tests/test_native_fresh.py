"""The compiled modules the tests load are built from the sources in the tree.

After a .pyx, .pxd or .pxi edit without `make build`, Python still imports the old
extension and every other test checks code that no longer exists.
"""

import importlib
import importlib.machinery
import re
from pathlib import Path

import pytest

NATIVE = Path(__file__).resolve().parent.parent / "smps" / "_native"
# `from smps._native.pdu cimport ...`, `cimport smps._native.pdu`, `include "x.pxi"`
DEPENDENCY = re.compile(
    r"^\s*(?:from\s+smps\._native\.(\w+)\s+cimport|cimport\s+smps\._native\.(\w+)"
    r"|include\s+[\"']([^\"']+)[\"'])",
    re.MULTILINE,
)


def sources(pyx: Path) -> set[Path]:
    """The .pyx, its own .pxd, and every .pxd and .pxi it reaches by cimport or include."""
    found: set[Path] = set()
    todo = [pyx, pyx.with_suffix(".pxd")]
    while todo:
        path = todo.pop()
        if path in found or not path.exists():
            continue
        found.add(path)
        for module, dotted, include in DEPENDENCY.findall(path.read_text()):
            todo.append(path.parent / include if include else NATIVE / f"{module or dotted}.pxd")
    return found


def test_dependencies_are_found():
    names = {path.name for path in sources(NATIVE / "session.pyx")}
    assert {"session.pyx", "fanout.pxd", "pdu.pxd"} <= names
    assert "gsm_tables.pxi" in {path.name for path in sources(NATIVE / "text.pyx")}


@pytest.mark.parametrize("pyx", sorted(NATIVE.glob("*.pyx")), ids=lambda path: path.stem)
def test_loaded_extension_is_newer_than_its_sources(pyx):
    module = importlib.import_module(f"smps._native.{pyx.stem}")
    built = Path(module.__file__)
    assert built.name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), (
        f"{module.__name__} was not loaded from a compiled extension ({built}): run `make build`"
    )
    stale = sorted(
        path.name for path in sources(pyx) if path.stat().st_mtime > built.stat().st_mtime
    )
    assert not stale, (
        f"{built.name} is older than {', '.join(stale)}: the tests would run the code of "
        "the last build, not the sources; run `make build`"
    )
