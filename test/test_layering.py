"""The layering rules of docs/design.md, enforced on the source.

1. The runtime package ``dtp_stereo`` never imports the offline toolkit (``training``) or
   training-only packages (``torch_pruning``, TensorBoard, matplotlib): a robot installs the
   runtime alone.
2. No upward imports: library modules of ``dtp_stereo`` (everything outside ``dtp_stereo/cli``
   and ``dtp_stereo/tools``) never import the command-line layer or the tools, and the tools
   never import the command-line layer.
"""

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dtp_stereo"
TRAINING_ONLY = ("training", "torch_pruning", "tensorboard", "torch.utils.tensorboard",
                 "matplotlib")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[Tuple[int, str]]:
    """``(line, absolute module name)`` of every import in a file (relative ones resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield node.lineno, name
            for alias in node.names:  # "from dtp_stereo import cli" imports dtp_stereo.cli
                yield node.lineno, f"{name}.{alias.name}"


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _violations(files: List[Path], forbidden: Tuple[str, ...]) -> List[str]:
    found = []
    for path in files:
        for line, name in imports_of(path):
            if any(_matches(name, f) for f in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    return sorted(set(found))


def _files(*parts: str) -> List[Path]:
    return sorted((PACKAGE.joinpath(*parts)).rglob("*.py"))


def test_import_scanner_sees_absolute_relative_and_from_imports() -> None:
    pkg = PACKAGE / "models"
    names = {name for _, name in imports_of(pkg / "dtpnet.py")}
    assert "dtp_stereo.models.layers" in names and "torch" in names
    assert "torch.nn.functional" in names


def test_runtime_never_imports_training_only_packages() -> None:
    assert _violations(_files(), TRAINING_ONLY) == []


def test_library_modules_never_import_the_cli_or_the_tools() -> None:
    library = [p for p in _files() if p.relative_to(PACKAGE).parts[0] not in ("cli", "tools")]
    assert len(library) > 20
    assert _violations(library, ("dtp_stereo.cli", "dtp_stereo.tools")) == []


def test_tools_never_import_the_cli() -> None:
    tools = _files("tools")
    assert tools
    assert _violations(tools, ("dtp_stereo.cli",)) == []


@pytest.mark.parametrize("module", ["dtp_stereo.pipeline", "dtp_stereo.ros.outputs",
                                    "dtp_stereo.backends.onnx_backend", "dtp_stereo.bag",
                                    "dtp_stereo.cli.main"])
def test_importing_the_runtime_loads_no_training_package(module: str) -> None:
    """The import graph at run time, lazy imports included, in a fresh interpreter."""
    code = (f"import sys, {module}\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{tuple(t.split('.')[0] for t in TRAINING_ONLY if '.' not in t)!r} "
            f"or m.startswith('torch.utils.tensorboard'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
