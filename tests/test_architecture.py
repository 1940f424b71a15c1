"""The package's shape holds: the configuration imports no runtime, no two top-level packages import each
other (directly or around a loop), the generate stage knows no exercise kind, and no source file
outgrows one idea."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pretrainlab"
MAX_LINES = 500


def _imports(path: Path) -> set[str]:
    """Absolute pretrainlab modules a file imports, at any depth except `if TYPE_CHECKING:` blocks."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return {m for m in out if m.startswith("pretrainlab.")}


def _top(module: str) -> str:
    return module.split(".")[1]


def package_graph() -> dict[str, set[str]]:
    """Top-level package (or module) -> the top-level packages it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SRC.rglob("*.py"):
        here = path.relative_to(SRC).parts[0].removesuffix(".py")
        graph[here] |= {_top(m) for m in _imports(path)} - {here}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_top_level_packages():
    graph = package_graph()
    assert {"config", "generate", "llm", "engines", "exercises", "pipeline"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_the_cycle_check_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_generate_knows_no_exercise_kind_and_engines_know_no_exercise():
    graph = package_graph()
    assert "llm" not in graph["generate"]
    assert not graph["engines"] & {"llm", "exercises", "generate", "curate", "tokenize", "train"}
    assert graph["config"] <= {"errors"}


def test_configuration_imports_no_runtime():
    code = (
        "import sys, pretrainlab.config, pretrainlab.config.schema\n"
        "heavy = {'torch', 'pyarrow', 'openai', 'tokenizers'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "             or (m.startswith('pretrainlab.') and m.split('.')[1] not in ('config', 'errors')))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_every_source_file_is_short_and_says_what_it_is():
    for path in sorted(SRC.rglob("*.py")):
        lines = path.read_text().splitlines()
        assert len(lines) <= MAX_LINES, f"{path.relative_to(SRC)}: {len(lines)} lines"
        if path.name != "__main__.py":
            assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(SRC)}: no docstring"
