"""The configuration file: enabled plugins, versions, labels, model bindings,
policy overrides, routing rules, providers and prices.

YAML (``.yaml``/``.yml``) or TOML (``.toml``). Secrets never live in the file:
providers name the environment variable that holds their key (``api_key_env``).
A bad file fails with :class:`ConfigFileError` naming each bad key path::

    plugins.sentiment.policy.timeout.total: Input should be greater than 0
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from brickwork.contracts.errors import BrickworkError, ConfigFileError
from brickwork.contracts.policy import Policy
from brickwork.contracts.provider import ModelId
from brickwork.contracts.refs import LABEL_RE, NAME_RE, PluginRef, Version

__all__ = ["Config", "PluginConfig", "ProviderConfig", "RouteRule", "load_config"]

#: A key with one of these words as a component (``api_key``, ``access-token``) is a secret.
_SECRET_WORDS = frozenset({"key", "apikey", "secret", "password", "passwd", "token", "credentials"})


def _looks_secret(key: str) -> bool:
    return bool(_SECRET_WORDS & set(re.split(r"[^a-z0-9]+", key.lower())))


PluginName = Annotated[str, StringConstraints(pattern=NAME_RE.pattern)]
#: Provider names and types share the pattern: a name is the part of a model id before ':'.
ProviderName = Annotated[str, StringConstraints(pattern=NAME_RE.pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PluginConfig(_Strict):
    enabled: bool = True
    versions: list[str] | None = Field(default=None, description="versions to load; all if unset")
    labels: dict[str, str] = Field(default_factory=dict, description="label → version")
    model: str | None = Field(default=None, description="model binding, 'provider:model'")
    embedding_model: str | None = Field(default=None, description="embedding model binding")
    policy: dict[str, Any] = Field(default_factory=dict, description="overrides of the default")

    @field_validator("versions")
    @classmethod
    def _versions(cls, value: list[str] | None) -> list[str] | None:
        for v in value or []:
            Version.parse(v)
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for label, version in value.items():
            if not LABEL_RE.match(label) or Version.is_valid(label):
                raise ValueError(f"bad label {label!r}: use a name like 'prod'")
            Version.parse(version)
        return value

    @field_validator("model", "embedding_model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        if value is not None:
            _reraise_value(lambda: ModelId.parse(value))
        return value

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            Policy().merged(value)
        except ValidationError as exc:
            # "@path: message" is joined onto the outer key path by _problems().
            raise ValueError("\n".join("@" + p for p in _problems(exc))) from None
        return value


class RouteRule(_Strict):
    name: str
    match: dict[str, str] = Field(min_length=1, description="metadata key → glob")
    plugin: str

    @field_validator("plugin")
    @classmethod
    def _ref(cls, value: str) -> str:
        _reraise_value(lambda: PluginRef.parse(value))
        return value


class RoutingConfig(_Strict):
    rules: list[RouteRule] = Field(default_factory=list)
    default: str | None = None
    intent: bool = Field(default=True, description="route by intent when no rule matches")
    intent_model: str = Field(default="local:e5-small", description="embedding model for intent")
    intent_floor: float = Field(default=-0.05, description="no calibrated threshold is set below this score")

    @field_validator("default")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None:
            _reraise_value(lambda: PluginRef.parse(value))
        return value


class ProviderConfig(_Strict):
    type: ProviderName | None = Field(
        default=None,
        description="provider type (built in: local, openai, anthropic, ollama; packages add "
        "more through the register_provider_types hook); defaults to the entry's name",
    )
    base_url: str | None = None
    api_key_env: str | None = Field(default=None, description="environment variable with the key")
    timeout: float = Field(default=60.0, gt=0)
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _no_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in [*data, *(data.get("options") or {})]:
                if key != "api_key_env" and _looks_secret(str(key)):
                    raise ValueError(
                        f"{key!r} looks like a secret: secrets come from environment variables "
                        "only (set api_key_env to the variable's name)"
                    )
        return data

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    def kind(self, name: str) -> str:
        return self.type or name


class PriceConfig(_Strict):
    input: float = Field(default=0.0, ge=0, description="USD per million input tokens")
    output: float = Field(default=0.0, ge=0, description="USD per million output tokens")


class RuntimeConfig(_Strict):
    max_call_depth: int = Field(default=8, ge=1, le=64)
    max_input_bytes: int = Field(default=1_048_576, ge=1)


class TracingConfig(_Strict):
    exporter: Literal["none", "console", "otlp"] = Field(
        default="none", description="OpenTelemetry span exporter; 'none' costs nothing"
    )
    endpoint: str | None = Field(default=None, description="OTLP/HTTP endpoint (otlp only)")
    service_name: str = "brickwork"


class ObservabilityConfig(_Strict):
    tracing: TracingConfig = Field(default_factory=TracingConfig)


class Config(_Strict):
    plugins: dict[PluginName, PluginConfig] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    providers: dict[ProviderName, ProviderConfig] = Field(default_factory=dict)
    prices: dict[str, PriceConfig] = Field(default_factory=dict)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    observability: ObservabilityConfig = Field(default_factory=ObservabilityConfig)

    @field_validator("prices")
    @classmethod
    def _price_ids(cls, value: dict[str, PriceConfig]) -> dict[str, PriceConfig]:
        for model in value:
            _reraise_value(lambda m=model: ModelId.parse(m))
        return value

    @classmethod
    def from_mapping(cls, data: Any, *, source: str = "config") -> Config:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigFileError(f"{source}: the top level must be a mapping of sections")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigFileError(
                f"{source} is invalid:\n" + "\n".join(_problems(exc)),
                details={"errors": _problems(exc)},
            ) from None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML or TOML config file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        if file.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif file.suffix in (".yaml", ".yml", ".json"):
            data = yaml.safe_load(text)
        else:
            raise ConfigFileError(f"{file}: use a .yaml, .yml, .json or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ConfigFileError(f"{file} is not valid {file.suffix[1:].upper()}: {exc}") from None
    return Config.from_mapping(data, source=str(file))


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        for line in msg.split("\n"):
            if line.startswith("@"):  # a nested path from a validator
                out.append(f"{loc}.{line[1:]}" if loc else line[1:])
            else:
                out.append(f"{loc}: {line}" if loc else line)
    return out


def _reraise_value(fn: Any) -> None:
    """Turn a Brickwork error from a parser into the ValueError pydantic expects."""
    try:
        fn()
    except BrickworkError as exc:
        raise ValueError(exc.message) from None
