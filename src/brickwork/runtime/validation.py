"""Registration checks: everything about a plugin class that can be known before a
request arrives is checked here, and fails with :class:`PluginValidationError`;
providers and provider types from the hooks are checked the same way, and fail with
:class:`ProviderValidationError`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

import jinja2
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ValidationError

from brickwork.contracts.errors import BrickworkError, PluginValidationError, ProviderValidationError
from brickwork.contracts.plugin import PERMISSIONS, Example, Plugin, Prompt
from brickwork.contracts.policy import Policy
from brickwork.contracts.provider import ModelId, Provider
from brickwork.contracts.refs import NAME_RE, PluginRef, Version

__all__ = [
    "compile_prompts",
    "example_input",
    "validate_plugin_class",
    "validate_provider",
    "validate_provider_type",
]

#: The one sandboxed Jinja2 environment prompts are parsed and compiled in.
_ENV = SandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)


def compile_prompts(cls: type[Plugin[Any, Any]]) -> dict[str, jinja2.Template]:
    """The plugin's prompt templates, compiled (once, at registration: rendering a
    compiled template costs a few microseconds, compiling one about a millisecond)."""
    return {name: _ENV.from_string(prompt.template) for name, prompt in cls.prompts.items()}


def _fail(cls: object, problem: str) -> PluginValidationError:
    name = getattr(cls, "__qualname__", repr(cls))
    ref = f"{getattr(cls, 'name', '?')}@{getattr(cls, 'version', '?')}"
    return PluginValidationError(f"plugin {name} ({ref}): {problem}", plugin=ref)


def example_input(example: Example) -> dict[str, Any]:
    return {"text": example.input} if isinstance(example.input, str) else dict(example.input)


def validate_plugin_class(cls: Any, policy: Policy) -> None:
    """Check a plugin class and its effective policy; raise on the first problem."""
    if not (inspect.isclass(cls) and issubclass(cls, Plugin)):
        raise _fail(cls, "is not a subclass of brickwork.Plugin")
    if inspect.isabstract(cls):
        raise _fail(cls, "does not implement `async def run(self, input, ctx)`")
    if not inspect.iscoroutinefunction(cls.run):
        raise _fail(cls, "`run` must be `async def`")
    if len(inspect.signature(cls.run).parameters) != 3:
        raise _fail(cls, "`run` must take exactly (self, input, ctx)")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(cls, f"name {name!r} must match {NAME_RE.pattern}")
    version = getattr(cls, "version", None)
    if not isinstance(version, str) or not Version.is_valid(version):
        raise _fail(cls, f"version {version!r} is not semantic (MAJOR.MINOR.PATCH)")
    if not isinstance(cls.description, str) or not cls.description.strip():
        raise _fail(cls, "needs a description (intent routing and `brickwork plugins` show it)")
    if hasattr(cls, "breaker_per_model"):
        raise _fail(
            cls,
            "`breaker_per_model` is no longer read: declare "
            "`policy = Policy(breaker=BreakerPolicy(per_model=False))` instead",
        )
    _check_types(cls)
    _check_prompts(cls)
    _check_text_field(cls)
    _check_permissions(cls)
    _check_policy(cls, policy)
    _check_examples(cls)


def _check_types(cls: type[Plugin[Any, Any]]) -> None:
    for attr in ("input_type", "output_type"):
        model = getattr(cls, attr, None)
        if model is None:
            raise _fail(cls, "must subclass Plugin[InputModel, OutputModel] with concrete types")
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            raise _fail(cls, f"{attr} {model!r} is not a pydantic model")
        if model.model_config.get("extra") != "forbid":
            raise _fail(
                cls,
                f"{attr} {model.__name__} must forbid extra fields "
                "(subclass PluginInput/PluginOutput or set extra='forbid')",
            )
        try:
            model.model_json_schema()
        except Exception as exc:
            raise _fail(cls, f"{attr} {model.__name__} has no JSON schema: {exc}") from exc


def _check_prompts(cls: type[Plugin[Any, Any]]) -> None:
    if not isinstance(cls.prompts, Mapping):
        raise _fail(cls, "prompts must be a mapping of name → Prompt")
    for pname, prompt in cls.prompts.items():
        if not isinstance(pname, str) or not pname.isidentifier():
            raise _fail(cls, f"prompt name {pname!r} must be an identifier")
        if not isinstance(prompt, Prompt):
            raise _fail(cls, f"prompt {pname!r} must be a brickwork.Prompt(version=..., template=...)")
        try:
            _ENV.parse(prompt.template)
        except jinja2.TemplateSyntaxError as exc:
            raise _fail(cls, f"prompt {pname!r} line {exc.lineno}: {exc.message}") from exc


def _check_text_field(cls: type[Plugin[Any, Any]]) -> None:
    field = cls.text_field
    if field is None:
        return
    info = cls.output_type.model_fields.get(field) if isinstance(field, str) else None
    if info is None:
        raise _fail(cls, f"text_field {field!r} is not a field of {cls.output_type.__name__}")
    annotation = info.annotation
    texts = get_args(annotation) if get_origin(annotation) is Literal else ()
    if (
        annotation is not str
        and str not in get_args(annotation)
        and not (texts and all(isinstance(t, str) for t in texts))
    ):
        raise _fail(cls, f"text_field {field!r} of {cls.output_type.__name__} must be a str field")


def _check_permissions(cls: type[Plugin[Any, Any]]) -> None:
    if not isinstance(cls.permissions, frozenset | set):
        raise _fail(cls, "permissions must be a frozenset of strings")
    for perm in cls.permissions:
        if perm in PERMISSIONS or (isinstance(perm, str) and perm.startswith("call:") and perm[5:]):
            continue
        raise _fail(cls, f"unknown permission {perm!r}; known: {sorted(PERMISSIONS)} or 'call:<pattern>'")
    if cls.model is not None:
        try:
            ModelId.parse(cls.model)
        except BrickworkError as exc:
            raise _fail(cls, exc.message) from exc
        if "model" not in cls.permissions:
            raise _fail(cls, f"binds model {cls.model!r} but does not declare the 'model' permission")
    if cls.embedding_model is not None:
        try:
            ModelId.parse(cls.embedding_model)
        except BrickworkError as exc:
            raise _fail(cls, exc.message) from exc
        if "embed" not in cls.permissions:
            raise _fail(cls, f"binds embedding model {cls.embedding_model!r} but does not declare 'embed'")


def _check_policy(cls: type[Plugin[Any, Any]], policy: Policy) -> None:
    if not isinstance(policy, Policy):
        raise _fail(cls, "policy must be a brickwork.Policy")
    for model in policy.fallback.models:
        try:
            ModelId.parse(model)
        except BrickworkError as exc:
            raise _fail(cls, f"fallback model: {exc.message}") from exc
    if policy.fallback.models and cls.model is None:
        raise _fail(cls, "declares fallback models but binds no model")
    for ref in policy.fallback.plugins:
        try:
            parsed = PluginRef.parse(ref)
        except BrickworkError as exc:
            raise _fail(cls, f"fallback plugin: {exc.message}") from exc
        if parsed.name == cls.name and parsed.selector in (None, cls.version):
            raise _fail(cls, f"fallback plugin {ref!r} points at the plugin itself")


def _check_examples(cls: type[Plugin[Any, Any]]) -> None:
    output_fields = set(cls.output_type.model_fields)
    for i, example in enumerate(cls.examples):
        if not isinstance(example, Example):
            raise _fail(cls, f"examples[{i}] must be a brickwork.Example")
        try:
            cls.input_type.model_validate(example_input(example))
        except ValidationError as exc:
            raise _fail(cls, f"examples[{i}].input does not fit {cls.input_type.__name__}: {exc}") from exc
        unknown = set(example.expected) - output_fields
        if unknown:
            raise _fail(cls, f"examples[{i}].expected names unknown output fields {sorted(unknown)}")


def validate_provider(provider: object, *, source: str = "the register_providers hook") -> Provider:
    """Check a provider instance (the interface, a name model ids can carry); return it."""
    what = f"{type(provider).__qualname__} (from {source})"
    if not isinstance(provider, Provider):
        missing = [m for m in _PROVIDER_MEMBERS if not hasattr(provider, m)]
        raise ProviderValidationError(f"{what} is not a brickwork Provider: it lacks {', '.join(missing)}")
    name = provider.name
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ProviderValidationError(
            f"{what}: provider name {name!r} must match {NAME_RE.pattern} "
            "(it is the part of a model id before ':')"
        )
    if not isinstance(provider.is_real, bool):
        raise ProviderValidationError(f"{what}: is_real must be True or False, got {provider.is_real!r}")
    return provider


def validate_provider_type(type_name: object, factory: object) -> None:
    """Check one entry of the provider-type table: a name a config can give, a callable."""
    if not isinstance(type_name, str) or not NAME_RE.match(type_name):
        raise ProviderValidationError(f"provider type name {type_name!r} must match {NAME_RE.pattern}")
    if not callable(factory):
        raise ProviderValidationError(
            f"provider type {type_name!r}: the factory {factory!r} is not callable "
            "(it takes ProviderSettings and returns a Provider)"
        )


_PROVIDER_MEMBERS = (
    "name",
    "is_real",
    "complete",
    "stream",
    "embed",
    "score",
    "count_tokens",
    "context_window",
)
