"""The default model, end to end, once: ``brickwork models prepare`` assembles the six
chunks (~490 MB) into a per-session cache (``$BRICKWORK_HOME`` pointed at a temporary
folder), then one short completion runs on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from brickwork.cli.models import models_app
from brickwork.contracts.provider import CompletionRequest, Message
from brickwork.providers.local import DEFAULT_MODEL, EnginePool, LocalProvider, default_cache_dir
from brickwork.providers.local._catalog import QWEN


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("brickwork-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BRICKWORK_HOME", str(folder))
        yield folder
    # ~490 MB: not left behind in pytest's kept temporary folders.
    for model in (folder / "models").glob("*.gguf"):
        model.unlink()


async def test_prepare_then_complete_on_the_default_model(home: Path) -> None:
    assert DEFAULT_MODEL == "local:qwen2.5-0.5b"
    result = CliRunner().invoke(models_app, ["prepare", "qwen2.5-0.5b", "--no-progress"])
    assert result.exit_code == 0, result.output
    path = default_cache_dir() / QWEN.filename  # type: ignore[operator]
    assert path.parent == home / "models"
    assert path.stat().st_size == QWEN.size
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left

    pool = EnginePool()
    provider = LocalProvider(pool=pool, progress=False)
    try:
        completion = await provider.complete(
            CompletionRequest(
                model="qwen2.5-coder-0.5b",
                messages=[Message(role="user", content="What is the capital of France? Answer in one word.")],
                max_tokens=8,
            )
        )
    finally:
        await provider.aclose()
    assert "Paris" in completion.text
    assert completion.usage.input_tokens > 10
    assert pool.engines() == []
