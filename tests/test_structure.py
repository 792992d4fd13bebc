"""The shape of the code, checked: the runtime imports without torch or export/, no
import cycle among realtime/, export/ and models/ (imports for type checking and inside
functions included), realtime/'s rooms in layers that only import downwards, no two
modules named alike, the .onnx format spelled in one module, no file over 400 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("realtime", "export", "models")
FORMAT_NAMES = {"images", "logits", "features", "cam_weight", "cam_bias", "topk_scores", "topk_ids",
                "cams"}
# the same spelling meaning something else: COCO JSON's list of images (realtime.evaluate)
NOT_THE_FORMAT = {("realtime.evaluate", "images")}

# refuses torch, onnx and the torch side of camloc, installed before anything else runs
_BLOCK = """
import sys
class _Refuse:
    BLOCKED = ("torch", "torchvision", "onnx", "export", "models")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, _Refuse())
"""


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _module_level_imports(name: str, path: Path, known: dict[str, Path],
                          everywhere: bool = False) -> set[str]:
    """Our modules that ``name`` imports when it is imported (not inside functions, not
    under ``if TYPE_CHECKING``); ``everywhere``: those too."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join(parent + ([base] if base else []))
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if everywhere or "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif everywhere and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.ClassDef, ast.With, ast.For, ast.While)):
                visit(node.body)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)

    visit(ast.parse(path.read_text()).body)
    return {m for m in out if m in known and m != name}


def test_import_realtime_without_torch_or_export():
    modules = [m for m in _modules() if m.startswith("realtime.") and not m.endswith("__main__")]
    code = _BLOCK + (f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
                     "import realtime\nfrom realtime import CamlocError, Localizer, Result\n"
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                     "('torch', 'onnx', 'export', 'models')))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# realtime/'s rooms, lowest first: a module imports only from lower layers or its own room
LAYERS = (("realtime.errors",), ("realtime.model", "realtime.sources"), ("realtime.outputs",),
          ("realtime.pipeline",), ("realtime.commands",),
          ("realtime.cli", "realtime.batch", "realtime.bench", "realtime.evaluate",
           "realtime.__main__", "realtime"))


def _room(module: str) -> tuple[int, str]:
    """(layer, room) of a realtime module: its sub-package, or itself at the top."""
    for level, rooms in enumerate(LAYERS):
        if level == len(LAYERS) - 1 and module in rooms:
            return level, "the commands"  # the top: one room
        for room in rooms:
            if module == room or module.startswith(room + ".") and room != "realtime":
                return level, room
    raise AssertionError(f"{module} is in no room of LAYERS: add it there and to docs/DESIGN.md")


def _graph(everywhere: bool) -> dict[str, set[str]]:
    known = _modules()
    return {m: _module_level_imports(m, p, known, everywhere) for m, p in known.items()}


def test_realtime_rooms_only_import_downwards():
    offenders = []
    for m, deps in _graph(everywhere=True).items():
        if not m.startswith("realtime"):
            continue
        level, room = _room(m)
        for n in deps:
            if n.startswith("realtime"):
                n_level, n_room = _room(n)
                if n_room != room and n_level >= level:
                    offenders.append(f"{m} -> {n}")
    assert offenders == []


def test_no_two_realtime_modules_are_named_alike():
    names: dict[str, list[str]] = {}
    for m in _modules():
        leaf = m.rsplit(".", 1)[-1]
        if m.startswith("realtime.") and leaf not in ("__init__", "__main__"):
            names.setdefault(leaf, []).append(m)
    assert {k: v for k, v in names.items() if len(v) > 1} == {}


def test_no_import_cycle():
    graph = _graph(everywhere=True)
    walked = {"realtime.outputs.sinks", "realtime.model.draw"}
    assert graph["realtime.pipeline.runner"] >= walked  # the walk works
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import cycle: " + " -> ".join([*path, m, n])
            if n not in state:
                walk(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            walk(m, [])


def test_the_format_is_spelled_in_one_module():
    """Every camloc.* key and output name is a string in realtime/format.py only."""
    offenders = []
    for name, path in _modules().items():
        if name == "realtime.model.format":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value.startswith("camloc.") or node.value in FORMAT_NAMES) and (
                    (name, node.value) not in NOT_THE_FORMAT):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert offenders == []


def test_no_file_over_400_lines():
    files = [p for d in (*PACKAGES, "tests", "tools") for p in (ROOT / d).rglob("*.py")]
    long = {str(p.relative_to(ROOT)): n for p in files
            if (n := len(p.read_text().splitlines())) > 400}
    assert len(files) > 40 and long == {}
