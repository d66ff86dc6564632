"""The recipes use the package's public API only: every ``hf_lambda_gelu`` name they import is exported.

A user copies a recipe as the example of how to use the package; a name it imports from an internal module
(``hf_lambda_gelu.swap_measure``...) or that no ``__all__`` lists is not something a user can rely on.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
#: The modules a recipe may import from: the top level, the publishing subpackage, and the image recipe's
#: documented default (``hf_lambda_gelu.demo_digits.run``). Each is checked against its own ``__all__``.
PUBLIC_MODULES = ("hf_lambda_gelu", "hf_lambda_gelu.release", "hf_lambda_gelu.demo_digits")


def private_imports(source: str) -> list[str]:
    """What ``source`` takes from ``hf_lambda_gelu`` that is not public: ``module.name`` strings."""
    exported = {name: set(importlib.import_module(name).__all__) for name in PUBLIC_MODULES}
    bound: dict[str, str] = {}  # local name → public module it is bound to (``import hf_lambda_gelu``)
    found = []
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] == "hf_lambda_gelu"):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                if alias.name not in exported.get(module, ()):
                    found.append(f"{module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] != "hf_lambda_gelu":
                    continue
                if alias.name not in exported:
                    found.append(alias.name)
                elif alias.asname or "." not in alias.name:
                    bound[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            module = bound[node.value.id]
            if node.attr not in exported[module]:
                found.append(f"{module}.{node.attr}")
    return found


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.py")), ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipes_import_only_exported_names(path):
    assert private_imports(path.read_text(encoding="utf-8")) == [], (
        f"{path.name} imports names that hf_lambda_gelu does not export: export them (and document them) or stop "
        "needing them"
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from hf_lambda_gelu.swap_measure import measure_swap", ["hf_lambda_gelu.swap_measure.measure_swap"]),
        ("from hf_lambda_gelu import demo_digits", ["hf_lambda_gelu.demo_digits"]),
        ("from hf_lambda_gelu.release.folder import save_release", ["hf_lambda_gelu.release.folder.save_release"]),
        ("from hf_lambda_gelu.release import reload_worker", ["hf_lambda_gelu.release.reload_worker"]),
        ("import hf_lambda_gelu.trainer", ["hf_lambda_gelu.trainer"]),
        ("import hf_lambda_gelu as h\nh.swap_measure.summary_metrics", ["hf_lambda_gelu.swap_measure"]),
        ("from .trainer import LambdaGELUTrainer", [".trainer.LambdaGELUTrainer"]),
        (
            "from hf_lambda_gelu import measure_swap, summary_metrics\nfrom hf_lambda_gelu.release import REPORT_FILENAME",
            [],
        ),
        ("import hf_lambda_gelu\nhf_lambda_gelu.from_pretrained", []),
        ("from transformers.trainer import Trainer", []),
    ],
)
def test_the_check_flags_private_names(source, expected):
    assert private_imports(source) == expected
