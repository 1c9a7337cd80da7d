"""The README's Python examples run, so they cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_the_plugin_example() -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 2
    assert any("class WordCount(Plugin" in b for b in blocks)


def test_readme_python_examples_run_and_pass_the_contract_suite() -> None:
    namespace: dict[str, object] = {"__name__": "readme_example"}
    for block in _python_blocks():
        exec(compile(block, str(README), "exec"), namespace)  # the examples assert their results
    suite_cls = namespace["TestWordCount"]
    assert isinstance(suite_cls, type)
    suite = suite_cls()
    names = [n for n in dir(suite) if n.startswith("test_")]
    assert "test_examples_hold" in names
    for name in names:
        getattr(suite, name)()
