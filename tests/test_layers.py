"""smps/ in layers that only point down.

Every import of an smps module (at the top of a file, inside a function, under
TYPE_CHECKING, or a cimport in smps/_native) goes to the importer's own layer or
a lower one, and no two parts of the map below import each other, directly or
round a circle. A new module takes the layer of the package it is in; a new
module directly in smps/ needs an entry here.
"""

import ast
import re
from collections import deque
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent

# Lowest first: (layer, what it holds, its parts). A part is a package, standing for
# everything under it, or one module; a module belongs to its longest part.
LAYERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "basics",
        "what any layer may import: version, errors, configuration, logging, metric "
        "helpers, password hashing",
        ("smps", "smps.errors", "smps.config", "smps.log", "smps.metrics", "smps.passwords"),
    ),
    (
        "native",
        "compiled and sans-I/O: PDU codec, text, fan-out, originals in flight, histograms, "
        "the per-PDU session core and the SMPP state table it follows",
        ("smps._native",),
    ),
    ("smpp", "SMPP sessions on asyncio: toward SMSCs, for NEs, bind guard", ("smps.smpp",)),
    (
        "proxy",
        "the message path: dispatcher, verdicts, decision records, tracing; beside it, "
        "on SMPP alone, the simulated SMSC and NEs",
        ("smps.proxy", "smps.sim"),
    ),
    (
        "store",
        "the database: schema, migrations, the record writer, queries, configuration with audit",
        ("smps.store",),
    ),
    ("web", "HTTP: /health, /metrics, /api/v1, the admin UI", ("smps.web",)),
    (
        "runtime",
        "processes and roles, which put the layers below together: master, workers, the "
        "control channel, the mesh, HA roles; the one-process node of demo and tests",
        ("smps.runtime", "smps.ha", "smps.app"),
    ),
    (
        "entry",
        "commands: `smps` and its subcommands, python -m smps and python -m smps.runtime",
        (
            "smps.__main__",
            "smps.cli",
            "smps.cli_support",
            "smps.api_cli",
            "smps.ha_cli",
            "smps.trace_cli",
            "smps.screen_cli",
            "smps.demo",
            "smps.sim.cli",
            "smps.sim.commands",
            "smps.store.cli",
            "smps.runtime.__main__",
        ),
    ),
)

LAYER_OF = {part: index for index, (_name, _what, parts) in enumerate(LAYERS) for part in parts}
ORDER = " < ".join(name for name, _what, _parts in LAYERS)
SOURCES = (".py", ".pyx", ".pxd")
# `from smps.x import y` / `from smps.x cimport (` / `import smps.x` / `cimport smps.x`
CYTHON_IMPORT = re.compile(
    r"^\s*(?:from\s+(?P<module>smps[\w.]*)\s+c?import\s+(?P<names>[\w, ]*)"
    r"|c?import\s+(?P<plain>smps[\w.]*))"
)


Resolve = Callable[[str, str | None], str]  # (from-module, imported name) -> module


class Import(NamedTuple):
    where: str  # path:line, relative to the checkout
    importer: str
    imported: str


def module_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: Path) -> dict[str, Path]:
    """Every module of smps/ by dotted name (a .pyx and its .pxd are one module)."""
    found = {}
    for path in sorted((root / "smps").rglob("*")):
        if path.suffix in SOURCES and "__pycache__" not in path.parts:
            found.setdefault(module_of(path, root), path)
    return found


def part_of(module: str) -> str | None:
    """The LAYERS part `module` belongs to; the bare `smps` part only holds smps itself."""
    names = module.split(".")
    for end in range(len(names), 0, -1):
        part = ".".join(names[:end])
        if part in LAYER_OF and (part != "smps" or module == "smps"):
            return part
    return None


def imports(root: Path) -> list[Import]:
    """Every import of an smps module in smps/, function-level ones included."""
    known = modules(root)

    def resolve(module: str, name: str | None) -> str:
        """`from smps.store import repo` imports the module smps.store.repo."""
        return f"{module}.{name}" if name and f"{module}.{name}" in known else module

    found = []
    for importer, path in known.items():
        sources = [path] if path.suffix == ".py" else [path.with_suffix(s) for s in SOURCES[1:]]
        for source in filter(Path.exists, sources):
            read = _python_imports if source.suffix == ".py" else _cython_imports
            where = source.relative_to(root)
            found += [
                Import(f"{where}:{line}", importer, imported)
                for line, imported in read(source, importer, resolve)
                if imported == "smps" or imported.startswith("smps.")
            ]
    return found


def _python_imports(source: Path, importer: str, resolve: Resolve) -> list[tuple[int, str]]:
    """(line, module) of each import statement anywhere in the file."""
    package = importer if source.name == "__init__.py" else importer.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: the importer's package, then level - 1 up
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = dict.fromkeys(resolve(base, alias.name) for alias in node.names)
            found += [(node.lineno, target) for target in targets]
    return found


def _cython_imports(source: Path, _importer: str, resolve: Resolve) -> list[tuple[int, str]]:
    """(line, module) of each import and cimport line of a .pyx or .pxd file."""
    found = []
    for number, line in enumerate(source.read_text().splitlines(), 1):
        match = CYTHON_IMPORT.match(line)
        if match:
            module = match["module"] or match["plain"]
            names = (name.strip() for name in (match["names"] or "").split(","))
            found += [
                (number, target) for target in dict.fromkeys(resolve(module, n) for n in names)
            ]
    return found


def unmapped(root: Path) -> list[str]:
    """Modules without a layer, and parts of the map that name nothing."""
    known = modules(root)
    problems = [
        f"{path.relative_to(root)}: {module} has no layer: add it to LAYERS in tests/test_layers.py"
        for module, path in known.items()
        if part_of(module) is None
    ]
    problems += [
        f"LAYERS names {part}, which is no module or package of smps/"
        for part in LAYER_OF
        if part not in known
    ]
    return problems


def upward(root: Path) -> list[str]:
    """Imports of a higher layer's module."""
    problems = []
    for i in imports(root):
        source, target = part_of(i.importer), part_of(i.imported)
        if source is None or target is None:
            continue  # unmapped() names them
        if LAYER_OF[target] > LAYER_OF[source]:
            problems.append(
                f"{i.where}: {i.importer} (layer {LAYERS[LAYER_OF[source]][0]}) imports "
                f"{i.imported} (layer {LAYERS[LAYER_OF[target]][0]}): a module imports "
                f"from its own layer or below, {ORDER}"
            )
    return problems


def cycles(root: Path) -> list[str]:
    """Circles of imports between parts of the map, each with one import per step."""
    edges: dict[str, dict[str, Import]] = {}
    for i in imports(root):
        source, target = part_of(i.importer), part_of(i.imported)
        if source and target and source != target:
            edges.setdefault(source, {}).setdefault(target, i)
    problems, seen = [], set()
    for start in sorted(edges):
        for first in sorted(edges[start]):
            path = _path(edges, first, start)
            if path is None:
                continue
            circle = [start, *path]
            key = frozenset(circle)
            if key in seen:
                continue
            seen.add(key)
            steps = [edges[a][b] for a, b in pairwise(circle)]
            problems.append(
                f"import cycle {' -> '.join(circle)}: "
                + "; ".join(f"{s.where} imports {s.imported}" for s in steps)
            )
    return problems


def _path(edges: dict[str, dict[str, Import]], start: str, goal: str) -> list[str] | None:
    """The shortest chain of parts from `start` to `goal` (both included), or None."""
    before: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        part = queue.popleft()
        if part == goal:
            chain = []
            while part is not None:
                chain.append(part)
                part = before[part]
            return chain[::-1]
        for following in sorted(edges.get(part, ())):
            if following not in before:
                before[following] = part
                queue.append(following)
    return None


def test_every_module_has_a_layer():
    problems = unmapped(ROOT)
    assert not problems, "\n".join(problems)


def test_imports_point_down():
    problems = upward(ROOT)
    assert not problems, "\n".join(problems)


def test_no_import_cycle_between_parts():
    problems = cycles(ROOT)
    assert not problems, "\n".join(problems)


def test_the_check_finds_what_it_is_for(tmp_path):
    """A function-level upward import, a cimport out of the lowest layer, a circle
    and a module nobody placed are each reported with file and line."""
    files = {
        "smps/__init__.py": "",
        "smps/_native/__init__.py": "",
        "smps/_native/session.pyx": "from smps.smpp.states cimport State\n",
        "smps/smpp/__init__.py": "",
        "smps/smpp/states.py": "",
        "smps/smpp/server.py": "import os\n\n\ndef bind():\n    from smps.store import repo\n",
        "smps/store/__init__.py": "",
        "smps/store/repo.py": "from smps.smpp import server\n",
        "smps/cli.py": "from . import stray\n",
        "smps/stray.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert upward(tmp_path) == [
        "smps/_native/session.pyx:1: smps._native.session (layer native) imports "
        f"smps.smpp.states (layer smpp): a module imports from its own layer or below, {ORDER}",
        "smps/smpp/server.py:5: smps.smpp.server (layer smpp) imports smps.store.repo "
        f"(layer store): a module imports from its own layer or below, {ORDER}",
    ]
    assert cycles(tmp_path) == [
        "import cycle smps.smpp -> smps.store -> smps.smpp: smps/smpp/server.py:5 imports "
        "smps.store.repo; smps/store/repo.py:1 imports smps.smpp.server",
    ]
    assert (
        "smps/stray.py: smps.stray has no layer: add it to LAYERS in tests/test_layers.py"
        in unmapped(tmp_path)
    )
    assert ("smps/cli.py:1", "smps.cli", "smps.stray") in imports(tmp_path)
