"""Typed, strict configs: one dataclass schema per entry point; YAML files and ``key=value`` overrides on top.

A schema is a (nested) dataclass whose field defaults are *the* defaults (no other place repeats them)::

    @dataclass
    class Sampling:
        steps: int = option(40, "denoising steps", ge=1)
        cfg_scale: float = option(3.5, "classifier-free guidance; <= 1 disables it")

    cfg = load(Sampling, "my.yaml", ["steps=20"], values={"cfg_scale": 2.0})

Layers, each checked as it is applied: the schema's defaults, then the values of the named preset (schemas with a
``preset`` key and a ``__config_presets__(name) -> {key: value}`` classmethod), then the YAML file(s) (a file may
start from another with ``extends: other.yaml``, relative to itself), then ``values`` (already typed, e.g.
command-line flags; strings there are never parsed as YAML, so ``--output_dir "runs/my run #2"`` stays that
string), then ``key=value`` overrides (the value is parsed as YAML unless the field is a string). Every problem
is one :class:`ConfigError` naming the key and where it came from: an unknown key (with the closest valid key), a
value of the wrong type, an impossible value (``ge``/``gt``/``le``/``lt``/``choices`` of :func:`option`, non-finite
floats), or a schema's own ``check()`` (cross-field rules). :func:`dump` writes a config back as YAML that
:func:`load` reads unchanged.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, TypeVar, Union

from .errors import ConfigError

T = TypeVar("T")
EXTENDS = "extends"  # YAML key: start from another file (path relative to the file that names it)


def option(default: Any = dataclasses.MISSING, help: str = "", *, factory=None, ge=None, gt=None, le=None,
           lt=None, finite: bool = True):
    """A schema field with its help text and value constraints (checked by :func:`load`)."""
    meta = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "finite": finite}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        value = default
        return dataclasses.field(default_factory=lambda: dataclasses.replace(value), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls, help: str = ""):
    """A nested schema with its defaults."""
    return dataclasses.field(default_factory=cls, metadata={"help": help})


# --------------------------------------------------------------------------------------------------------- types
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _describe(tp) -> str:
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "true or false"
    if tp is str:
        return "a string"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in typing.get_args(tp))
    if _is_union(tp):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin in (list, tuple, Sequence):
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}" \
            if typing.get_args(tp) else "a list"
    if origin in (dict, Mapping) or tp is dict:
        return "a mapping"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


_YAML_BOOL_WORDS = {True: ("yes", "on", "true"), False: ("no", "off", "false")}


class _Bad(Exception):
    """A value does not fit a type (the message is completed by the caller with the key and the source)."""


def _coerce(value: Any, tp, key: str, source: str, parse_strings: bool):
    """``value`` converted to the schema type ``tp``; :class:`_Bad` when it does not fit."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if _is_union(tp) or origin is Literal:
        options = typing.get_args(tp) if _is_union(tp) else (tp,)
        for opt in options:  # an exact literal first (True is not 1), then null, then the other members in order
            if typing.get_origin(opt) is Literal:
                for a in typing.get_args(opt):
                    if type(a) is type(value) and a == value:
                        return a
                    if isinstance(value, bool) and isinstance(a, str) and a in _YAML_BOOL_WORDS[value]:
                        return a  # YAML 1.1 reads a bare `no` / `off` as false
        if value is None and type(None) in options:
            return None
        for opt in options:
            if opt is type(None) or typing.get_origin(opt) is Literal:
                continue
            try:
                return _coerce(value, opt, key, source, parse_strings)
            except _Bad:
                continue
        raise _Bad(_describe(tp))
    if value is None:
        raise _Bad(_describe(tp))
    if dataclasses.is_dataclass(tp):
        if hasattr(tp, "__config_coerce__"):
            value = tp.__config_coerce__(value)
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _Bad("a mapping")
        return _build(tp, dict(value), key + ".", source, parse_strings)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
            return True
        if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
            return False
        raise _Bad("true or false")
    if tp is int or tp is float:
        kind = "an integer" if tp is int else "a number"
        if isinstance(value, bool):
            raise _Bad(kind)
        if isinstance(value, str):
            try:
                value = tp(value.strip())
            except ValueError:
                raise _Bad(kind) from None
        if tp is float and isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        raise _Bad(kind)
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `output_dir: 2024` in YAML is the folder "2024"
        raise _Bad("a string")
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
            raise _Bad(_describe(tp))
        args = typing.get_args(tp)
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{key}[{i}]", source, parse_strings) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple or tp is tuple else out
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _Bad("a mapping")
        args = typing.get_args(tp)
        item = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, item, f"{key}.{k}", source, parse_strings) for k, v in value.items()}
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _Bad(_describe(tp))


def _check_value(value, f: dataclasses.Field, key: str, source: str) -> None:
    meta = f.metadata or {}
    if isinstance(value, float) and meta.get("finite", True) and not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value} ({source})")
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    for name, ok, word in (("ge", lambda v, b: v >= b, "at least"), ("gt", lambda v, b: v > b, "greater than"),
                           ("le", lambda v, b: v <= b, "at most"), ("lt", lambda v, b: v < b, "less than")):
        bound = meta.get(name)
        if bound is not None and not ok(value, bound):
            raise ConfigError(f"{key} must be {word} {bound}, got {value} ({source})")


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _all_keys(cls, prefix: str = "") -> list[str]:
    out = []
    hints = _hints(cls)
    for name in _fields(cls):
        out.append(prefix + name)
        tp = hints[name]
        for sub in ([tp] + list(typing.get_args(tp)) if _is_union(tp) else [tp]):
            if dataclasses.is_dataclass(sub):
                out.extend(_all_keys(sub, f"{prefix}{name}."))
    return out


def unknown_key_message(key: str, cls, prefix: str, root_cls, source: str) -> str:
    """``unknown config key 'x' (source); did you mean 'y'?`` with the closest valid key."""
    local = list(_fields(cls))
    best = difflib.get_close_matches(key, local, n=1, cutoff=0.6)
    hint = f"{prefix}{best[0]}" if best else None
    if hint is None and root_cls is not None:
        everywhere = _all_keys(root_cls)
        same_leaf = [k for k in everywhere if k.rsplit(".", 1)[-1] == key]
        if same_leaf:
            hint = same_leaf[0]
        else:
            close = difflib.get_close_matches(prefix + key, everywhere, n=1, cutoff=0.6)
            hint = close[0] if close else None
    msg = f"unknown config key '{prefix}{key}' ({source})"
    if hint:
        msg += f"; did you mean '{hint}'?"
    else:
        msg += f"; valid keys here: {', '.join(prefix + k for k in local)}"
    return msg


def _build(cls, data: dict, prefix: str, source: str, parse_strings: bool, root_cls=None):
    """An instance of ``cls`` from a complete mapping (every key known, every value coerced and checked)."""
    flds = _fields(cls)
    hints = _hints(cls)
    kwargs = {}
    for name, value in data.items():
        if name not in flds:
            raise ConfigError(unknown_key_message(name, cls, prefix, root_cls, source))
        key = f"{prefix}{name}"
        try:
            kwargs[name] = _coerce(value, hints[name], key, source, parse_strings)
        except _Bad as bad:
            raise ConfigError(f"{key} must be {bad}, got {value!r} ({source})") from None
        _check_value(kwargs[name], flds[name], key, source)
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field without a default
        raise ConfigError(f"{prefix or 'config'}: {err} ({source})") from None


# --------------------------------------------------------------------------------------------------------- layers
def _to_plain(obj) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def to_dict(cfg) -> dict:
    """A config as plain nested dicts/lists/scalars (YAML/JSON ready)."""
    return _to_plain(cfg)


def _merge(cls, base: dict, layer: Mapping, prefix: str, source: str, parse_strings: bool, root_cls) -> dict:
    """``base`` (plain, complete for ``cls``) updated by ``layer``, checking keys and types as it goes."""
    flds = _fields(cls)
    hints = _hints(cls)
    out = dict(base)
    for name, value in layer.items():
        name = str(name)
        if name not in flds:
            raise ConfigError(unknown_key_message(name, cls, prefix, root_cls, source))
        key = f"{prefix}{name}"
        tp = hints[name]
        sub = _dataclass_of(tp)
        if sub is not None and isinstance(value, Mapping) and isinstance(out.get(name), Mapping):
            out[name] = _merge(sub, out[name], value, f"{key}.", source, parse_strings, root_cls)
            continue
        if parse_strings and isinstance(value, str):
            if not _accepts_str(tp):
                value = _parse_yaml_scalar(value)
            elif value.strip() in ("null", "~") and _accepts_none(tp):
                value = None
        try:
            coerced = _coerce(value, tp, key, source, parse_strings)
        except _Bad as bad:
            raise ConfigError(f"{key} must be {bad}, got {value!r} ({source})") from None
        except ConfigError:
            raise
        _check_value(coerced, flds[name], key, source)
        out[name] = _to_plain(coerced)
    return out


def _dataclass_of(tp):
    if dataclasses.is_dataclass(tp):
        return tp
    if _is_union(tp):
        subs = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
        return subs[0] if len(subs) == 1 else None
    return None


def _accepts_str(tp) -> bool:
    if tp is str or tp is Any:
        return True
    if _is_union(tp):
        return any(_accepts_str(a) for a in typing.get_args(tp))
    return False


def _accepts_none(tp) -> bool:
    return tp is Any or (_is_union(tp) and type(None) in typing.get_args(tp))


def _parse_yaml_scalar(text: str):
    import yaml

    try:
        return yaml.safe_load(text) if text.strip() else text
    except yaml.YAMLError:
        return text


def read_yaml(path, _seen: tuple = ()) -> dict:
    """A YAML mapping, with ``extends: base.yaml`` chains resolved (the file's own keys win)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}. Fix: check the path given with -c/--config")
    if path.resolve() in _seen:
        raise ConfigError(f"config {path}: 'extends' chain loops back to itself")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"config {path} is not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config {path}: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of keys to values, got {type(data).__name__}")
    base = data.pop(EXTENDS, None)
    if base is None:
        return data
    parent = read_yaml(path.parent / str(base), _seen + (path.resolve(),))
    return _deep_update(parent, data)


def _deep_update(base: dict, layer: Mapping) -> dict:
    out = dict(base)
    for k, v in layer.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_update(out[k], v)
        else:
            out[k] = v
    return out


def parse_overrides(overrides: Sequence[str]) -> list[tuple[str, str]]:
    """``["a.b=1", ...]`` -> ``[("a.b", "1"), ...]``; a :class:`ConfigError` naming every malformed item."""
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"config overrides must look like key=value, got: {' '.join(bad)}")
    return [tuple(o.split("=", 1)) for o in overrides]  # type: ignore[misc]


def _nest(key: str, value) -> dict:
    parts = key.split(".")
    out: Any = value
    for p in reversed(parts):
        out = {p: out}
    return out


def load(schema: type[T], paths=(), overrides: Sequence[str] = (), values: Mapping[str, Any] | None = None) -> T:
    """The config of ``schema``: defaults <- YAML ``paths`` (one path, or several in order; a mapping is a layer
    given in memory) <- ``values`` (dotted keys, already typed) <- ``key=value`` ``overrides``. Raises :class:`ConfigError` naming the key on any problem."""
    if isinstance(paths, (str, Path, Mapping)):
        paths = [paths]
    # (mapping, source) per layer; a mapping is an in-memory layer (e.g. a config object's values)
    layers = [(p, "given settings") if isinstance(p, Mapping) else (read_yaml(p), f"in {p}")
              for p in paths or () if p is not None]

    def layered(preset: tuple[str, Mapping] | None) -> dict:
        plain = to_dict(schema())
        if preset is not None:
            for key, value in preset[1].items():
                plain = _merge(schema, plain, _nest(key, value), "", f"preset {preset[0]}", False, schema)
        for data, source in layers:
            plain = _merge(schema, plain, data, "", source, False, schema)
        for key, value in (values or {}).items():
            plain = _merge(schema, plain, _nest(key, value), "", "command-line flag", False, schema)
        for key, text in parse_overrides(list(overrides)):
            plain = _merge(schema, plain, _nest(key.strip(), text), "", f"override {key}={text}", True, schema)
        return plain

    plain = layered(None)
    presets = getattr(schema, "__config_presets__", None)  # a schema with a `preset` key: its values go first
    if presets is not None:
        name = plain.get("preset")
        plain = layered((name, presets(name)))
    cfg = _build(schema, plain, "", "config", False, schema)
    run_checks(cfg)
    return cfg


def run_checks(cfg, prefix: str = "") -> None:
    """Call ``check()`` of every (nested) schema section that defines one."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            run_checks(value, f"{prefix}{f.name}.")
        elif isinstance(value, list):
            for v in value:
                if dataclasses.is_dataclass(v) and not isinstance(v, type):
                    run_checks(v, f"{prefix}{f.name}.")
    check = getattr(cfg, "check", None)
    if callable(check):
        check()


def dump(cfg) -> str:
    """The config as YAML (what :func:`load` reads back into an equal config)."""
    import yaml

    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)


def config_hash(cfg) -> str:
    """A short stable hash of a config's values (recorded in checkpoint cards)."""
    text = json.dumps(to_dict(cfg), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def describe(schema, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """``[(key, type, default, help)]`` of every leaf field (for ``--help`` texts and docs)."""
    rows = []
    hints = _hints(schema)
    defaults = schema()
    for name, f in _fields(schema).items():
        tp = hints[name]
        sub = _dataclass_of(tp)
        value = getattr(defaults, name)
        if sub is not None and dataclasses.is_dataclass(value):
            rows.extend(describe(sub, f"{prefix}{name}."))
        else:
            meta = f.metadata or {}
            bounds = [f"{sym} {meta[k]}" for k, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                      if meta.get(k) is not None]
            kind = _describe(tp) + (f" ({', '.join(bounds)})" if bounds else "")
            rows.append((prefix + name, kind, _to_plain(value), meta.get("help", "")))
    return rows
