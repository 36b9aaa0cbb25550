"""Declared payload shapes: build a handler's dataclass from a JSON-like payload, or say which field is wrong."""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from missions.errors import InvalidPayload

__all__ = ["payload_parser"]

T = TypeVar("T")

# Converts the value found at a path such as "payload.sizes[2]"; raises InvalidPayload.
_Convert = Callable[[Any, str], Any]

_EXACT: dict[type, str] = {str: "a string", bool: "true or false", type(None): "null"}
_SUPPORTED = "str, int, float, bool, None, X | None, list[X], dict[str, X], Literal, Any and dataclasses"


def payload_parser(shape: type[T]) -> Callable[[Any], T]:
    """Compile the parser of a payload dataclass; ``@handler(..., payload=shape)`` does it when registering.

    The parser builds ``shape`` from a payload dict and raises InvalidPayload naming the field and the
    fault. Numbers are checked as JSON carries them: an int field takes 3.0 (a Struct makes every number
    a float) but not 2.5 or true.

    Raises:
        TypeError: ``shape`` is not a dataclass, or a field's annotation is none a JSON payload can carry.
    """
    if not (isinstance(shape, type) and dataclasses.is_dataclass(shape)):
        raise TypeError(f"a payload shape must be a dataclass, not {shape!r}")
    convert = _dataclass(shape, {})

    def parse(data: Any) -> T:
        result: T = convert(data, "payload")
        return result

    return parse


def _converter(annotation: Any, where: str, building: dict[type, _Convert]) -> _Convert:
    """The converter of one annotation; ``where`` names the field in a registration-time error."""
    if annotation is None:  # as in list[None]; get_type_hints only turns a field's own None into NoneType
        annotation = type(None)
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return lambda value, path: value
    if isinstance(annotation, type) and annotation in _EXACT:
        return _exact(annotation)
    if annotation is int:
        return _integer
    if annotation is float:
        return _number
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass(annotation, building)
    if origin is Literal and all(option is None or isinstance(option, str | int) for option in args):
        return _literal(args)
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        return _optional(_converter(args[0] if args[1] is type(None) else args[1], where, building))
    if annotation is list or origin is list:
        return _list(_converter(args[0] if args else Any, where, building))
    if (annotation is dict or origin is dict) and (not args or args[0] is str):
        return _dict(_converter(args[1] if args else Any, where, building))
    raise TypeError(f"{where}: a payload cannot carry {annotation!r}; supported: {_SUPPORTED}")


def _dataclass(shape: type, building: dict[type, _Convert]) -> _Convert:
    if shape in building:  # a recursive shape: the converter whose fields are being filled in
        return building[shape]
    fields: dict[str, tuple[_Convert, bool]] = {}  # name -> (converter, required)

    def convert(value: Any, path: str) -> Any:
        # Unknown fields are ignored, as protobuf and pydantic do: clients may send a new field
        # before every worker knows it (a rolling deploy), and refusing it would fail those
        # missions for good. A payload must still be an object.
        _of(dict, value, path)
        arguments = {}
        for name, (field_convert, required) in fields.items():
            if name in value:
                arguments[name] = field_convert(value[name], f"{path}.{name}")
            elif required:
                raise InvalidPayload(f"{path}.{name}", "required")
        try:
            return shape(**arguments)
        except InvalidPayload as exc:  # raised by the shape's own __post_init__, relative to the shape
            raise InvalidPayload(f"{path}.{exc.path}" if exc.path else path, exc.description) from None

    building[shape] = convert
    try:
        hints = get_type_hints(shape)
    except NameError as exc:  # a string annotation naming something the module does not define
        raise TypeError(f"{shape.__qualname__}: cannot resolve its annotations: {exc}") from exc
    for field in dataclasses.fields(shape):
        if field.init:
            required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            where = f"{shape.__qualname__}.{field.name}"
            fields[field.name] = (_converter(hints[field.name], where, building), required)
    return convert


def _exact(kind: type) -> _Convert:
    def convert(value: Any, path: str) -> Any:
        if not isinstance(value, kind):
            raise InvalidPayload(path, f"expected {_EXACT[kind]}, got {_show(value)}")
        return value

    return convert


def _integer(value: Any, path: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise InvalidPayload(path, f"expected an integer, got {_show(value)}")


def _number(value: Any, path: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise InvalidPayload(path, f"expected a number, got {_show(value)}")


def _literal(options: tuple[Any, ...]) -> _Convert:
    def convert(value: Any, path: str) -> Any:
        for option in options:  # True == 1, but a JSON true is not the number 1
            if value == option and isinstance(value, bool) == isinstance(option, bool):
                return option
        raise InvalidPayload(path, f"expected one of {', '.join(map(_show, options))}, got {_show(value)}")

    return convert


def _optional(inner: _Convert) -> _Convert:
    return lambda value, path: None if value is None else inner(value, path)


def _list(item: _Convert) -> _Convert:
    return lambda value, path: [
        item(element, f"{path}[{index}]") for index, element in enumerate(_of(list, value, path))
    ]


def _dict(entry: _Convert) -> _Convert:
    return lambda value, path: {key: entry(element, f"{path}.{key}") for key, element in _of(dict, value, path).items()}


def _of(kind: type[T], value: Any, path: str) -> T:
    if not isinstance(value, kind):
        raise InvalidPayload(path, f"expected {'a list' if kind is list else 'an object'}, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    """The value as the client may have written it, kept short."""
    if isinstance(value, dict | list):
        return "an object" if isinstance(value, dict) else "a list"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a Struct turned the client's 3 into 3.0
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
