"""Finding, assembling and verifying local model files.

The weights are data files inside installed distributions. They are located with
:mod:`importlib.metadata` (the packages are never imported), concatenated in order
into the cache folder when a model ships as chunks, and checked against the
official sha256 before anything loads them. A file that does not match is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import BinaryIO

from brickwork.contracts.errors import ModelNotInstalledError, ModelVerificationError
from brickwork.providers.local._catalog import CATALOG, Catalog, DataFile, ModelSpec

__all__ = ["HOME_ENV", "ModelStatus", "ModelStore", "default_cache_dir"]

#: ``$BRICKWORK_HOME/models`` is the cache folder when set.
HOME_ENV = "BRICKWORK_HOME"

_BLOCK = 1 << 20
Advance = Callable[[int], None]


def default_cache_dir() -> Path:
    """``$BRICKWORK_HOME/models``, else ``$XDG_CACHE_HOME/brickwork/models``, else
    ``~/.cache/brickwork/models``."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "models"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "brickwork" / "models"


@dataclass(frozen=True)
class ModelStatus:
    """What :meth:`ModelStore.status` found.

    Attributes:
        installed: every data package is installed at its pinned version.
        assembled: the model file exists (a model used in place counts once installed).
        verified: ``True``/``False`` after a hash check, ``None`` when not checked.
        found_sha256: the hash found, when checked.
        problem: why it is not usable, in one line.
    """

    spec: ModelSpec
    path: Path | None
    installed: bool
    assembled: bool
    verified: bool | None = None
    found_sha256: str | None = None
    problem: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.spec.id,
            "aliases": list(self.spec.aliases),
            "kind": self.spec.kind,
            "size": self.spec.size,
            "sha256": self.spec.sha256,
            "path": str(self.path) if self.path else None,
            "installed": self.installed,
            "assembled": self.assembled,
            "verified": self.verified,
            "found_sha256": self.found_sha256,
            "problem": self.problem,
            "description": self.spec.description,
        }


class ModelStore:
    """Local model files: located, assembled once, verified before use.

    Args:
        cache_dir: where chunked models are assembled (default :func:`default_cache_dir`).
        catalog: the models it knows.
        search_path: where to look for distributions (default ``sys.path``); tests
            point it at a folder of fake distributions.
        progress: show a progress bar while assembling or hashing; ``None``: only
            when standard error is a terminal.
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        catalog: Catalog = CATALOG,
        search_path: Sequence[str] | None = None,
        progress: bool | None = None,
    ) -> None:
        self.root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.catalog = catalog
        self.search_path = list(search_path) if search_path is not None else None
        self.progress = progress
        # (path, size, mtime, inode) → sha256 already checked in this process: a file
        # assembled (and hashed) a moment ago is not read again to load it.
        self._verified: dict[tuple[str, int, int, int], str] = {}

    def spec(self, name: str) -> ModelSpec:
        return self.catalog.get(name)

    # --- locating --------------------------------------------------------------

    def _distribution(self, name: str) -> metadata.Distribution | None:
        found = metadata.Distribution.discover(name=name, path=self.search_path or sys.path)
        return next(iter(found), None)

    def sources(self, spec: ModelSpec) -> list[Path]:
        """The source files of a model, in order.

        Raises:
            ModelNotInstalledError: a data package is missing, at another version, or
                lacks the file.
            ModelVerificationError: a package was installed from a wheel whose hash is
                not the pinned one.
        """
        paths: list[Path] = []
        missing: list[str] = []
        for file in spec.files:
            dist = self._distribution(file.distribution)
            if dist is None:
                missing.append(f"{file.requirement} (not installed)")
                continue
            if dist.version != file.version:
                missing.append(f"{file.requirement} (found {dist.version})")
                continue
            self._check_wheel(dist, file)
            path = _locate(dist, file)
            if path is None:
                missing.append(f"{file.requirement} (installed without {file.path}; reinstall it)")
                continue
            paths.append(path)
        if missing:
            raise ModelNotInstalledError(
                f"local model {spec.id!r} needs {', '.join(missing)}; {spec.install_hint()}",
                details={"model": spec.id, "missing": missing, "requirements": spec.requirements},
            )
        return paths

    @staticmethod
    def _check_wheel(dist: metadata.Distribution, file: DataFile) -> None:
        # pip records the archive's hash when it installed from a file or URL (PEP 610);
        # from an index there is none, and --require-hashes checked the wheel instead.
        raw = dist.read_text("direct_url.json")
        if not raw:
            return
        try:
            info = json.loads(raw).get("archive_info", {})
        except (ValueError, AttributeError):
            return
        found = info.get("hashes", {}).get("sha256")
        if found is None and str(info.get("hash", "")).startswith("sha256="):
            found = info["hash"].removeprefix("sha256=")
        if found is not None and found != file.wheel_sha256:
            raise ModelVerificationError(
                f"{file.requirement} was installed from a wheel with sha256 {found}, "
                f"expected {file.wheel_sha256}; reinstall it from {file.distribution}'s pinned wheel",
                details={"expected": file.wheel_sha256, "found": found, "distribution": file.distribution},
            )

    def model_path(self, spec: ModelSpec) -> Path:
        """Where the model file is (chunked: in the cache folder, assembled or not)."""
        if spec.chunked:
            return self.root / (spec.filename or f"{spec.id}.gguf")
        return self.sources(spec)[0]

    # --- status ----------------------------------------------------------------

    def status(self, spec: ModelSpec, *, verify: bool = False) -> ModelStatus:
        """Installed? assembled? and, with ``verify``, do the bytes hash right?

        Verifying reads the model file, or, for a chunked model not assembled yet,
        its chunks (each against its own hash, and joined against the model's).
        """
        try:
            sources = self.sources(spec)
        except (ModelNotInstalledError, ModelVerificationError) as exc:
            path = self.model_path(spec) if spec.chunked else None
            return ModelStatus(
                spec,
                path,
                installed=False,
                assembled=path is not None and path.is_file(),
                verified=False if verify and isinstance(exc, ModelVerificationError) else None,
                problem=exc.message,
            )
        path = self.model_path(spec) if spec.chunked else sources[0]
        assembled = path.is_file()
        if not verify:
            problem = None if assembled else "not assembled yet"
            return ModelStatus(spec, path, installed=True, assembled=assembled, problem=problem)
        if assembled:
            found = self._hash(path, f"verify {spec.id}")
            problem = None if found == spec.sha256 else f"sha256 {found} is not the official {spec.sha256}"
        else:
            found, problem = self._hash_chunks(spec, sources)
            if problem is None and found != spec.sha256:
                problem = f"the chunks join into sha256 {found}, not the official {spec.sha256}"
        ok = problem is None
        if ok and not assembled:
            problem = "not assembled yet (its chunks are verified)"
        return ModelStatus(spec, path, True, assembled, verified=ok, found_sha256=found, problem=problem)

    def _hash_chunks(self, spec: ModelSpec, sources: list[Path]) -> tuple[str, str | None]:
        whole = hashlib.sha256()
        problem: str | None = None
        with self._bar(f"verify {spec.id}", spec.size) as advance:
            for file, source in zip(spec.files, sources, strict=True):
                with source.open("rb") as src:
                    found, size = _copy(src, None, whole, advance)
                if problem is None and (found != file.sha256 or size != file.size):
                    problem = f"chunk {file.path} has sha256 {found}, expected {file.sha256}"
        return whole.hexdigest(), problem

    # --- verifying and assembling ---------------------------------------------

    def ensure(self, spec: ModelSpec) -> Path:
        """The verified model file, assembling it first if it is not there yet.

        A file that is there but does not hash right is refused, not repaired:
        ``brickwork models prepare`` rebuilds it. An assembled file that verifies is
        used even if its chunk packages were removed since.

        Raises:
            ModelNotInstalledError: a data package is missing.
            ModelVerificationError: a chunk or the file is not the official one.
        """
        if not spec.chunked:
            return self._verify(spec, self.sources(spec)[0])
        path = self.model_path(spec)
        if path.is_file():
            return self._verify(spec, path)
        return self._assemble(spec, self.sources(spec), path)

    def prepare(self, spec: ModelSpec, *, force: bool = False) -> Path:
        """Make the model ready: assemble it (again, if ``force`` or if the file there
        is not the official one), then verify. Idempotent."""
        sources = self.sources(spec)
        if not spec.chunked:
            return self._verify(spec, sources[0])
        path = self.model_path(spec)
        if path.is_file() and not force:
            with contextlib.suppress(ModelVerificationError):
                return self._verify(spec, path)
        return self._assemble(spec, sources, path)

    def _verify(self, spec: ModelSpec, path: Path) -> Path:
        key = _identity(path)
        if self._verified.get(key) == spec.sha256:
            return path
        found = self._hash(path, f"verify {spec.id}")
        if found != spec.sha256:
            hint = (
                f"run `brickwork models prepare {spec.id}` to assemble it again"
                if spec.chunked
                else f"reinstall its package: {spec.install_hint()}"
            )
            raise ModelVerificationError(
                f"refusing to load {spec.id}: {path} has sha256 {found}, expected the official "
                f"{spec.sha256} ({path.stat().st_size} bytes, expected {spec.size}); {hint}",
                details={"model": spec.id, "path": str(path), "expected": spec.sha256, "found": found},
            )
        self._verified[key] = found
        return path

    def _assemble(self, spec: ModelSpec, sources: list[Path], path: Path) -> Path:
        """Concatenate the chunks into a temporary file beside ``path``, hashing each
        chunk and the whole as they stream through; rename into place only when every
        hash is right. Nothing partial is ever left at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        tmp = Path(tmp_name)
        whole = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, self._bar(f"assemble {spec.id}", spec.size) as advance:
                for file, source in zip(spec.files, sources, strict=True):
                    with source.open("rb") as src:
                        found, size = _copy(src, out, whole, advance)
                    if found != file.sha256 or size != file.size:
                        raise ModelVerificationError(
                            f"refusing to assemble {spec.id}: chunk {file.path} of {file.requirement} "
                            f"({source}) has sha256 {found}, expected {file.sha256} "
                            f"({size} bytes, expected {file.size}); reinstall it: {spec.install_hint()}",
                            details={
                                "model": spec.id,
                                "path": str(source),
                                "expected": file.sha256,
                                "found": found,
                            },
                        )
                out.flush()
                os.fsync(out.fileno())
            found = whole.hexdigest()
            if found != spec.sha256:
                raise ModelVerificationError(
                    f"refusing to assemble {spec.id}: the chunks join into sha256 {found}, "
                    f"expected the official {spec.sha256}",
                    details={"model": spec.id, "path": str(path), "expected": spec.sha256, "found": found},
                )
            tmp.chmod(0o644)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)
        self._verified[_identity(path)] = spec.sha256
        return path

    def _hash(self, path: Path, label: str) -> str:
        digest = hashlib.sha256()
        with path.open("rb") as src, self._bar(label, path.stat().st_size) as advance:
            buffer = bytearray(_BLOCK)
            view = memoryview(buffer)
            while n := src.readinto(buffer):
                digest.update(view[:n])
                advance(n)
        return digest.hexdigest()

    @contextlib.contextmanager
    def _bar(self, label: str, total: int) -> Iterator[Advance]:
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        if not show:
            yield lambda n: None
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task(label, total=total)
            yield lambda n: bar.advance(task, n)


def _locate(dist: metadata.Distribution, file: DataFile) -> Path | None:
    for entry in dist.files or ():
        if entry.as_posix() == file.path:
            path = Path(str(dist.locate_file(entry)))
            return path if path.is_file() else None
    return None


def _copy(
    src: io.BufferedReader, out: BinaryIO | None, whole: hashlib._Hash, advance: Advance
) -> tuple[str, int]:
    """Stream ``src`` into ``out`` (if any), hashing it alone and into ``whole``."""
    part = hashlib.sha256()
    size = 0
    buffer = bytearray(_BLOCK)
    view = memoryview(buffer)
    while n := src.readinto(buffer):
        block = view[:n]
        part.update(block)
        whole.update(block)
        if out is not None:
            out.write(block)
        size += n
        advance(n)
    return part.hexdigest(), size


def _identity(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def _fsync_dir(path: Path) -> None:
    # The rename is durable once the folder's entry is on disk (POSIX; a no-op elsewhere).
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
