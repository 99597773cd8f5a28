"""The code's shape, checked (pure, reads only the checkout): no function longer than
``MAX_FUNCTION_LINES`` outside the tests, so that behaviour lives in named units rather than in
closure factories."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 120
SKIP = {"tests", ".venv", ".git", "build", ".state"}


def source_files() -> list[Path]:
    """The project's Python files (top-level folders other than tests, virtualenvs, state)."""
    tops = [d for d in ROOT.iterdir() if d.is_dir() and d.name not in SKIP and not d.name.startswith(".")]
    return sorted(p for d in tops for p in d.rglob("*.py"))


def long_functions(path: Path, limit: int) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    return [f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > limit]


def test_the_source_files_are_found():
    names = {p.relative_to(ROOT).as_posix() for p in source_files()}
    assert {"query_api/server.py", "agents/persist.py", "influent/cli.py"} <= names


def test_no_function_is_longer_than_the_limit():
    found = [f for p in source_files() for f in long_functions(p, MAX_FUNCTION_LINES)]
    assert not found, "functions over the limit:\n" + "\n".join(found)


def test_the_check_sees_a_long_function(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n" + "    x = 1\n" * 4)
    assert long_functions(sample, 5) == []
    sample.write_text("def f():\n" + "    x = 1\n" * 4 + "    return x\n")
    assert [line.split(" ", 1)[1] for line in long_functions(sample, 5)] == ["f (6 lines)"]


def test_every_package_says_what_it_owns():
    packages = [p.parent for p in source_files() if p.name == "__init__.py"]
    assert len(packages) >= 10
    missing = [str(p.relative_to(ROOT)) for p in packages
               if not ast.get_docstring(ast.parse((p / "__init__.py").read_text()))]
    assert not missing, f"packages without a docstring: {missing}"


def test_the_image_and_the_package_hold_every_top_level_package():
    """A new top-level package must be installed (setup.cfg) and copied into the image."""
    import configparser
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    included = {p.strip().rstrip("*") for p in cfg["options.packages.find"]["include"].split()}
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines()
              if line.startswith("COPY ") and len(line.split()) == 3}
    on_disk = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "benchmarks"}
    assert on_disk == included == copied
