"""The library's structure: no import cycle in scripts/cvgrid, and planning the workflow
(what every `snakemake` call does first, dry runs included) never imports torch."""

from __future__ import annotations

import ast
import re

from conftest import REPO, SCRIPTS

LIBRARY = SCRIPTS / "cvgrid"


def library_imports() -> dict[str, set[str]]:
    """{module: the cvgrid modules it imports anywhere in its file}, function bodies and
    `if TYPE_CHECKING:` blocks included (an import inside a function still closes a cycle)."""
    modules = {path.stem for path in LIBRARY.glob("*.py") if path.stem != "__init__"}
    graph = {}
    for name in sorted(modules):
        imported = set()
        for node in ast.walk(ast.parse((LIBRARY / f"{name}.py").read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[1] for a in node.names if a.name.startswith("cvgrid.")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module == "cvgrid":
                    imported |= {a.name for a in node.names if a.name in modules}
                elif node.module.startswith("cvgrid."):
                    imported.add(node.module.split(".")[1])
        graph[name] = imported - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    done, path = set(), []

    def visit(module):
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_library_has_no_import_cycle():
    graph = library_imports()
    assert {"final", "predict", "model_folder", "models", "weights", "plan"} <= graph.keys()
    assert "models" in graph["plan"] and "model_folder" in graph["predict"]  # the parser sees imports
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module `start` imports, directly or through others."""
    seen, todo = set(), [start]
    while todo:
        for imported in graph.get(todo.pop(), ()):
            if imported not in seen:
                seen.add(imported)
                todo.append(imported)
    return seen


def test_the_numbers_never_import_the_words():
    """Statistics in three places, one direction of use: wording -> analysis -> stats. The
    numbers (stats, summary) and the analysis of one run never import the written summary, and
    the refit never imports the statistics (its selection helpers live beside point_summary)."""
    graph = library_imports()
    assert {"stats", "analysis", "wording"} <= graph.keys()
    assert "stats" in graph["analysis"] and "analysis" in graph["wording"]  # the parser sees them
    for numbers in ("stats", "summary", "analysis"):
        assert "wording" not in reaches(graph, numbers), f"{numbers} imports the wording"
    assert "analysis" not in reaches(graph, "stats")
    assert "stats" not in reaches(graph, "final")
    assert reaches({"a": {"b"}, "b": {"c"}, "c": set()}, "a") == {"b", "c"}


def test_planning_the_reference_config_never_imports_torch(tmp_path, snakemake, monkeypatch):
    # Python lists every import on stderr (-X importtime); a dry run parses the Snakefile,
    # validates the config, plans the grid and the pretrained weights, and schedules 180 jobs.
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    result = snakemake(tmp_path, REPO / "config" / "config.yaml", "-n")
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert {"cvgrid.grid", "cvgrid.plan", "cvgrid.models", "cvgrid.weights"} <= imported
    assert re.search(r"\btrain\s+180\b", result.stdout + result.stderr)
    torch_like = sorted(m for m in imported if m.split(".")[0] in ("torch", "torchvision"))
    assert not torch_like, f"planning imported {torch_like[:5]}"
