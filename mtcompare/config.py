"""Component configs: dataclasses loaded from YAML or TOML, overridden from the CLI.

Every component (SMT training, NMT training, ...) has one dataclass config.
:func:`build_config` fills it from an optional file and ``key=value``
overrides (nested dataclasses with dotted keys: ``weights.lm=0.5``), checks
every key and value in one place, and raises an error that lists the valid
keys, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Sequence, TypeVar

import yaml

from mtcompare.errors import MtcError

C = TypeVar("C")


def build_config(cls: type[C], path: str | Path | None = None,
                 overrides: Sequence[str] = (), **values: Any) -> C:
    """An instance of ``cls`` from a config file, then ``key=value`` overrides.

    ``values`` are explicit CLI options; ``None`` means "not given".
    """
    settings: dict[str, Any] = {}
    if path is not None:
        file_settings = _flatten(_read_file(Path(path)))
        config = cls()
        try:
            for key, value in file_settings.items():
                _assign(config, key.split("."), value, key)
        except MtcError as error:
            raise MtcError(f"{path}: {error}") from None
        settings.update(file_settings)
    for item in overrides:
        key, separator, value = item.partition("=")
        if not separator:
            raise MtcError(f"override {item!r} is not key=value, e.g. lm_order=4")
        settings[key.strip()] = _parse_value(item, value)
    settings.update({key: value for key, value in values.items() if value is not None})
    config = cls()
    for key, value in settings.items():
        _assign(config, key.split("."), value, key)
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def _parse_value(item: str, value: str) -> Any:
    """A --set value as YAML reads it: 3 is an int, 0.5 a float, [1, 2] a list."""
    if not value.strip():
        return ""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise MtcError(f"override {item!r}: the value is not valid YAML; quote text, "
                       "write lists as [1, 2]") from None


def config_to_dict(config: Any) -> dict:
    return dataclasses.asdict(config)


def config_from_dict(cls: type[C], record: dict, where: str = "") -> C:
    """Rebuild a config saved with :func:`config_to_dict` (unknown keys rejected).

    ``where`` (a file name) starts any error message.
    """
    config = cls()
    try:
        for key, value in _flatten(record).items():
            _assign(config, key.split("."), value, key)
    except MtcError as error:
        raise MtcError(f"{where}: {error}" if where else str(error)) from None
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def _read_file(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MtcError(f"{path}: cannot read config ({error.strerror})") from None
    except UnicodeDecodeError:
        raise MtcError(f"{path}: not UTF-8 text; save the config file as UTF-8") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError, ValueError) as error:
        message = " ".join(str(error).split())
        raise MtcError(f"{path}: not a valid config file: {message}") from None
    if not isinstance(data, dict):
        raise MtcError(f"{path}: a config file holds key: value settings at the top level")
    return data


def _flatten(data: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _assign(config: Any, path: list[str], value: Any, full_key: str) -> None:
    hints = typing.get_type_hints(type(config))
    name = path[0]
    if name not in hints or name.startswith("_"):
        valid = ", ".join(sorted(key for key in hints if not key.startswith("_")))
        raise MtcError(f"unknown setting {full_key!r} for {type(config).__name__}; "
                       f"valid: {valid}")
    current = getattr(config, name)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise MtcError(f"setting {full_key!r}: {name} has no sub-settings")
        _assign(current, path[1:], value, full_key)
        return
    setattr(config, name, _convert(value, hints[name], full_key))


def _convert(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field's type, converting where it is safe."""
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option is bool and isinstance(value, bool):
            return value
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if option is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        if typing.get_origin(option) is typing.Literal and value in typing.get_args(option):
            return value
        if typing.get_origin(option) is tuple and isinstance(value, (list, tuple)):
            return _convert_tuple(value, typing.get_args(option), key)
    names = " or ".join(_type_name(option) for option in options)
    raise MtcError(f"setting {key!r}: expected {names}, got {value!r}")


def _convert_tuple(value: Sequence, item_types: tuple, key: str) -> tuple:
    if len(item_types) == 2 and item_types[1] is Ellipsis:
        item_types = (item_types[0],) * len(value)
    if len(value) != len(item_types):
        raise MtcError(f"setting {key!r}: expected {len(item_types)} values, got {len(value)}")
    return tuple(_convert(item, item_type, key) for item, item_type in zip(value, item_types))


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _type_name(option: Any) -> str:
    if typing.get_origin(option) is typing.Literal:
        return "one of " + ", ".join(repr(value) for value in typing.get_args(option))
    return getattr(option, "__name__", str(option))
