"""Every repository path and project module that the docs and the code's comments cite
exists, so that moving a file cannot leave a stale pointer behind."""
import ast
import re
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Iterator, List, Optional, Set, Tuple

import pytest

from project_paths import PROJECT_ROOT

PACKAGE_DIRS = ("include", "spark_jobs")
PACKAGES = ("msdlib", "msd_pipeline", "msd_devtools", "msd_serving")
PROSE_SUFFIXES = (".md",)
CODE_SUFFIXES = (".py", ".sh", ".mjs", ".toml", ".yaml", ".yml", ".txt", ".ini", ".cfg")
CODE_NAMES = ("Makefile", "Dockerfile", "run", "system-deps.sh")
PLACEHOLDER = re.compile(r"[<>*{}$]|\.\.\.")
TRAILING = ".,;:)`'\"]"
SELF = "tests/unit/test_cited_paths.py"  # its examples are stale on purpose
FILE_SUFFIXES = ("zip", "py", "json", "toml", "txt", "md", "log")


@lru_cache(maxsize=None)
def tracked_files() -> Tuple[str, ...]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return tuple(line for line in listed.stdout.splitlines()
                 if (PROJECT_ROOT / line).exists())


def top_level_entries() -> Set[str]:
    return {path.split("/")[0] for path in tracked_files()}


def path_pattern() -> re.Pattern:
    roots = sorted(top_level_entries(), key=len, reverse=True)
    names = "|".join(re.escape(root) for root in roots)
    # Segments of two characters or more: "docs/s" (documents per second) is no path.
    return re.compile(r"(?<![\w./-])((?:%s)(?:/[\w.@-]{2,})*/?)(?![\w/<{*$])" % names)


MODULE_PATTERN = re.compile(r"(?<![\w./])((?:%s)(?:\.\w+)+)" % "|".join(PACKAGES))


def cited_in(text: str) -> Tuple[List[str], List[str]]:
    paths = [match.rstrip(TRAILING) for match in path_pattern().findall(text)]
    modules = [match.rstrip(".") for match in MODULE_PATTERN.findall(text)]
    return [path for path in paths if "/" in path or "." in path], modules


def comment_text(path: Path) -> str:
    """The comments and docstrings of a code file (prose in it), not its code."""
    text = path.read_text(errors="replace")
    if path.suffix != ".py":
        return "\n".join(line for line in text.splitlines()
                         if line.lstrip().startswith(("#", "//", "*")))
    pieces = [token for token in re.findall(r"#[^\n]*", text)]
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                pieces.append(docstring)
    return "\n".join(pieces)


def documents() -> Iterator[Tuple[str, str]]:
    for name in tracked_files():
        path = PROJECT_ROOT / name
        if "node_modules" in name or name == SELF:
            continue
        if path.suffix in PROSE_SUFFIXES:
            yield name, path.read_text(errors="replace")
        elif path.suffix in CODE_SUFFIXES or path.name in CODE_NAMES:
            yield name, comment_text(path)


def module_file(dotted: str) -> Tuple[Optional[Path], List[str]]:
    """The file of the longest importable prefix of ``dotted`` and the names after it."""
    parts = dotted.split(".")
    for size in range(len(parts), 0, -1):
        for base in PACKAGE_DIRS:
            folder = PROJECT_ROOT / base / Path(*parts[:size])
            for candidate in (folder.with_suffix(".py"), folder / "__init__.py"):
                if candidate.is_file():
                    return candidate, parts[size:]
    return None, parts


@lru_cache(maxsize=None)
def top_level_names(path: Path) -> Set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(target.id for target in targets if isinstance(target, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


@lru_cache(maxsize=None)
def dotted_string_literals() -> Set[str]:
    """Dotted names the code itself uses as strings (logger names, for one)."""
    literals = set()
    for name in tracked_files():
        if name.endswith(".py") and name != SELF:
            literals.update(re.findall(r"[\"']((?:%s)(?:\.\w+)+)[\"']" % "|".join(PACKAGES),
                                       (PROJECT_ROOT / name).read_text(errors="replace")))
    return literals


def missing_module(dotted: str) -> bool:
    """Neither a module, a top-level name of one, nor a name the code uses as a string
    (``msdlib.zip`` is a file name)."""
    if dotted.rsplit(".", 1)[-1] in FILE_SUFFIXES or dotted in dotted_string_literals():
        return False
    path, rest = module_file(dotted)
    return path is None or bool(rest) and rest[0] not in top_level_names(path)


def stale_citations() -> List[str]:
    stale = []
    for name, text in documents():
        paths, modules = cited_in(text)
        stale += ["{}: {}".format(name, path) for path in paths
                  if not PLACEHOLDER.search(path) and not (PROJECT_ROOT / path).exists()]
        stale += ["{}: {}".format(name, module) for module in modules
                  if missing_module(module)]
    return sorted(set(stale))


def test_the_checker_finds_what_it_should():
    gone = "tests/" + "test_gone.py"  # built, so this file cites no missing path itself
    paths, modules = cited_in("see `docs/emr.md`, " + gone + "; and msdlib.sources "
                              "or msd_pipeline.graph.build_pipeline_dag.")
    assert paths == ["docs/emr.md", gone]
    assert not (PROJECT_ROOT / gone).exists()
    assert modules == ["msdlib.sources", "msd_pipeline.graph.build_pipeline_dag"]
    assert missing_module("msdlib.sources")
    assert not missing_module("msd_pipeline.graph.build_pipeline_dag")
    assert missing_module("msd_pipeline.graph.no_such_builder")


@pytest.mark.skipif(not (PROJECT_ROOT / ".git").exists(), reason="needs the git checkout")
def test_every_cited_path_and_module_exists():
    assert stale_citations() == []
