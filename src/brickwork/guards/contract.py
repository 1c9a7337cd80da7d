"""Contract guards: the request input and the plugin output must fit their models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from brickwork.contracts.errors import InputValidationError, OutputValidationError

__all__ = ["InputContractGuard", "OutputContractGuard", "describe_validation_error"]


def describe_validation_error(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors as plain data: where, what, and the message."""
    return [
        {
            "loc": ".".join(str(p) for p in err["loc"]) or "(root)",
            "type": err["type"],
            "msg": err["msg"],
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]


class InputContractGuard:
    """Turns a request input (dict, or text for plugins with a ``text`` field) into
    the plugin's input model, refusing oversized or ill-typed input.
    """

    def __init__(self, *, max_bytes: int = 1_048_576) -> None:
        self.max_bytes = max_bytes

    def check(self, ref: str, model: type[BaseModel], data: dict[str, Any] | str) -> BaseModel:
        if isinstance(data, str):
            if "text" not in model.model_fields:
                raise InputValidationError(
                    f"{ref} takes structured input {sorted(model.model_fields)}, not plain text",
                    plugin=ref,
                )
            data = {"text": data}
        size = _approx_size(data)
        if size > self.max_bytes:
            raise InputValidationError(f"input is {size} bytes; the limit is {self.max_bytes}", plugin=ref)
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems = describe_validation_error(exc)
            summary = "; ".join(f"{p['loc']}: {p['msg']}" for p in problems[:5])
            raise InputValidationError(
                f"input does not fit {ref}: {summary}", plugin=ref, details={"errors": problems}
            ) from None


class OutputContractGuard:
    """The plugin's output must be (or validate into) its output model."""

    def check(self, ref: str, model: type[BaseModel], output: object) -> BaseModel:
        try:
            if type(output) is model and not output.__pydantic_extra__:
                # Validated again from its fields (code may have assigned any value to
                # them after construction), without serialising it first.
                return model.model_validate(output.__dict__)
            if isinstance(output, model):
                return model.model_validate(output.model_dump())
            if isinstance(output, dict):
                return model.model_validate(output)
        except ValidationError as exc:
            problems = describe_validation_error(exc)
            raise OutputValidationError(
                f"{ref} returned output that breaks its contract: "
                + "; ".join(f"{p['loc']}: {p['msg']}" for p in problems[:5]),
                plugin=ref,
                details={"errors": problems},
            ) from None
        raise OutputValidationError(
            f"{ref} returned {type(output).__name__}, expected {model.__name__}", plugin=ref
        )

    def check_streamed(self, ref: str, text_field: str | None, output: BaseModel, emitted: list[str]) -> None:
        """What the run streamed must be its output's text, exactly: the caller already
        read it as the answer."""
        if text_field is None:
            raise OutputValidationError(
                f"{ref} streamed text but names no text_field to check it against", plugin=ref
            )
        text = getattr(output, text_field, None)
        if text != "".join(emitted):
            raise OutputValidationError(
                f"{ref} streamed text that differs from its output's {text_field!r}", plugin=ref
            )


def _approx_size(data: dict[str, Any]) -> int:
    # Cheap upper bound on the serialised size without serialising twice. (Exact
    # types first: this runs on every request, and nearly everything is one of them.)
    total = 0
    stack: list[Any] = [data]
    pop, push, extend = stack.pop, stack.append, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            # A UTF-8 character is at most 4 bytes: count exactly only past ASCII.
            total += len(item) if item.isascii() else len(item.encode("utf-8", "surrogatepass"))
        elif kind is dict:
            total += 2
            for key, value in item.items():
                total += len(key) + 4 if type(key) is str else len(str(key)) + 4
                push(value)
        elif kind is list or kind is tuple:
            total += 2
            extend(item)
        elif isinstance(item, str):
            total += len(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, dict):
            total += 2
            for key, value in item.items():
                total += len(str(key)) + 4
                push(value)
        elif isinstance(item, list | tuple):
            total += 2
            extend(item)
        else:
            total += 16
    return total
