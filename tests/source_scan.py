"""Reading the package's own source for safety checks: every module's syntax tree and its calls.

Shared by ``test_safety.py`` and ``test_safety_files.py``: a protection such as "no shell" or
"shared files are written atomically" is checked on the source, where a new call site shows up
the moment it is written, not only when a test happens to run it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest_ktinterf

PACKAGE = Path(pytest_ktinterf.__file__).parent


def package_modules() -> dict[str, ast.Module]:
    """Every module of the package by its path inside the package (``system/assets.py``), parsed."""
    return {str(p.relative_to(PACKAGE)): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def dotted(node: ast.AST) -> str:
    """``os.system`` for ``os.system(...)``'s func; ``.write_text`` for any ``x.write_text``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return (
            f"{inner}.{node.attr}" if inner in ("os", "subprocess", "asyncio", "shutil") else f".{node.attr}"
        )
    return ""


def calls(tree: ast.Module) -> list[tuple[str, ast.Call]]:
    """Every call with the name of the function (or method) that contains it."""
    found: list[tuple[str, ast.Call]] = []

    def visit(node: ast.AST, where: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, f"{where}.{child.name}" if where else child.name)
                continue
            if isinstance(child, ast.Call):
                found.append((where or "<module>", child))
            visit(child, where)

    visit(tree, "")
    return found
