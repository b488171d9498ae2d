"""The shape of the code (docs/architecture.md): imports point down the layers, recipes and
evaluation never import each other, the harness names no family, a family knows no MLflow,
and no project module is imported inside a function (but by the launcher).

    python -m tests.test_architecture [ROOT]    # list the violations of any checkout
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.helpers import ROOT

PACKAGES = ("suite", "recipes", "evaluation", "reports")
# The folders are the layers: suite/core is the foundation, suite/data the data layer, recipes/
# and evaluation/ the models and measurements, reports/ what reads them, and every other module
# of the suite package (harness, tune/, benchmark, api, cli, ui) the application.
FOLDER_LAYERS = {"suite.core": 0, "suite.data": 1, "recipes": 2, "evaluation": 2, "reports": 3, "suite": 4}
SIDEWAYS = {("recipes", "evaluation"), ("evaluation", "recipes")}
# The launcher alone may import inside a function: choosing what a command loads is its job
# (`--help` without torch); its imports still point down like every other.
DEFERS_IMPORTS = {"suite.__main__"}
FAMILY_WORDS = ("wgan", "cyclegan", "dcgan", "cnn_gan", "WGAN", "CycleGAN", "DCGAN")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer(module: str) -> int | None:
    """The layer of the innermost folder (package) that holds the module; `suite` itself, the
    package marker, holds no code and sits with the foundation."""
    if module == "suite":
        return 0
    best = max((p for p in FOLDER_LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return FOLDER_LAYERS[best] if best else None


def imports(tree: ast.Module, module: str):
    """(imported module, line, inside a function?) for every import of a project module."""
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        yield node, [n for n in names if n.split(".")[0] in PACKAGES]


def as_module(name: str, root: Path) -> str | None:
    """`a.b.c` -> the module it names: a.b.c if that file or package exists, else a.b (c is an
    attribute of it)."""
    for candidate in (name, name.rsplit(".", 1)[0]):
        path = root.joinpath(*candidate.split("."))
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return candidate
    return None


def function_ranges(tree: ast.Module) -> list[tuple[int, int]]:
    return [(n.lineno, n.end_lineno) for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def violations(root: Path) -> list[str]:
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = module_name(path, root)
            src = path.read_text()
            tree = ast.parse(src)
            lines = src.splitlines()
            here = layer(module)
            if module == "suite" and any(isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef))
                                         for n in tree.body):
                out.append("suite: the package marker holds code (put it in the folder of its layer)")
            funcs = function_ranges(tree)
            in_function = lambda line: any(a < line <= b for a, b in funcs)  # noqa: E731
            for node, names in imports(tree, module):
                inside = in_function(node.lineno)
                if not names and inside:
                    comment = lines[node.lineno - 1] + (lines[node.lineno - 2] if node.lineno > 1 else "")
                    if "#" not in comment:
                        out.append(f"{module}:{node.lineno}: import inside a function without a comment saying why")
                for name in names:
                    target = as_module(name, root)
                    if target is None or layer(target) is None:
                        continue
                    there = layer(target)
                    top, top_there = module.split(".")[0], target.split(".")[0]
                    if inside and module not in DEFERS_IMPORTS:
                        out.append(f"{module}:{node.lineno}: imports {target} inside a function")
                    if there > here:
                        out.append(f"{module}:{node.lineno}: imports {target} from a layer above")
                    if (top, top_there) in SIDEWAYS:
                        out.append(f"{module}:{node.lineno}: imports {target} sideways (recipes <-> evaluation)")
                    if top == "recipes" and target == "suite.core.tracking":
                        out.append(f"{module}:{node.lineno}: a family imports the MLflow tracker")
            if top_level_mlflow(tree) and module not in ("suite.core.tracking", "suite.core.metric_writer"):
                out.append(f"{module}: imports mlflow (only suite.core.tracking talks to MLflow)")
    harness = ast.parse((root / "suite" / "harness.py").read_text())
    words = code_words(harness)
    for word in FAMILY_WORDS:
        if any(word in w for w in words):
            out.append(f"suite.harness names the family '{word}'")
    families = family_modules(root)
    for node, names in imports(harness, "suite.harness"):
        out += [f"suite.harness imports the family module {n}" for n in names
                if n.startswith("recipes.") and n.split(".")[1] in families]
    return list(dict.fromkeys(out))


def family_modules(root: Path) -> set[str]:
    """recipes/ modules that register a family (the shared pieces, config and registry do not)."""
    return {path.stem for path in (root / "recipes").glob("*.py")
            if any(isinstance(n, ast.Call) and getattr(n.func, "attr", getattr(n.func, "id", "")) == "register_family"
                   for n in ast.walk(ast.parse(path.read_text())))}


def code_words(tree: ast.Module) -> list[str]:
    """Identifiers and string constants of a module, its docstring (usage examples) left out."""
    doc = tree.body[0].value if tree.body and isinstance(tree.body[0], ast.Expr) else None
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            out.append(node.id)
        elif isinstance(node, ast.Attribute):
            out.append(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node is not doc:
            out.append(node.value)
        elif isinstance(node, (ast.alias,)):
            out.append(node.name)
    return out


def top_level_mlflow(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "mlflow" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlflow":
            return True
    return False


def test_imports_point_down_the_layers_and_the_harness_names_no_family():
    assert violations(ROOT) == []


def test_the_checker_catches_each_kind_of_violation(tmp_path):
    """Plant one of each violation in a copy-sized tree: the checker must name every one."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for sub in ("core", "data", "tune"):
        (tmp_path / "suite" / sub).mkdir()
        (tmp_path / "suite" / sub / "__init__.py").write_text("")
    (tmp_path / "suite" / "__init__.py").write_text("from suite.cli import main\n")
    (tmp_path / "suite" / "data" / "__init__.py").write_text("from recipes.base import DataInfo\n")
    (tmp_path / "suite" / "core" / "paths.py").write_text("from suite.data import DataInfo\n")
    (tmp_path / "suite" / "harness.py").write_text("from recipes import wgan\n\n\ndef f():\n    import json\n")
    (tmp_path / "evaluation" / "evaluate.py").write_text("def f():\n    from suite import harness\n")
    (tmp_path / "recipes" / "gan.py").write_text("from evaluation import fid\nfrom suite.core import tracking\n")
    (tmp_path / "reports" / "build.py").write_text("from suite.tune.space import infer_direction\nimport mlflow\n")
    for module in ("recipes/base", "evaluation/fid", "suite/core/tracking", "suite/tune/space", "suite/cli"):
        (tmp_path / f"{module}.py").touch()
    (tmp_path / "recipes" / "wgan.py").write_text("from recipes import registry\nregistry.register_family('wgan', 1, 2)\n")
    found = "\n".join(violations(tmp_path))
    for needle in ("suite.data:1: imports recipes.base from a layer above",
                   "evaluation.evaluate:2: imports suite.harness inside a function",
                   "evaluation.evaluate:2: imports suite.harness from a layer above",
                   "recipes.gan:1: imports evaluation.fid sideways",
                   "recipes.gan:2: a family imports the MLflow tracker",
                   "reports.build:1: imports suite.tune.space from a layer above",
                   "suite.core.paths:1: imports suite.data from a layer above",
                   "reports.build: imports mlflow",
                   "suite.harness:5: import inside a function without a comment",
                   "suite.harness names the family 'wgan'",
                   "suite.harness imports the family module recipes.wgan",
                   "suite: the package marker holds code"):
        assert needle in found, found


if __name__ == "__main__":
    for line in violations(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT):
        print(line)
