"""Where ``hubbub serve`` gets its settings, and ``hubbub config``'s account of them.

Three layers, each over the one before (docs/configuration.md lists every key):

1. the file, ``--config FILE`` (or ``$HUBBUB_CONFIG``): a ``hubbub.toml``;
2. the environment: a file key ``SECTION.KEY`` is also ``HUBBUB_SECTION__KEY``
   (two underscores between the parts, upper case; a namespace's key
   ``namespaces.chat.presence`` is ``HUBBUB_NAMESPACES__CHAT__PRESENCE``), and
   each option of ``serve`` is ``HUBBUB_`` and its name (``--log-level``:
   ``HUBBUB_LOG_LEVEL``);
3. the command line's options.

A variable's value is read as the file would read it: a TOML value when it is
one (``2048``, ``true``, ``["a", "b"]``), else the text itself (``30s``). Keys
whose value is text (paths, secrets, issuer, audience) always take the text as
it is, and list keys also take ``a,b,c``. What is wrong in a variable is
reported under the variable's name.

Pure except for reading the file; the environment comes in as a mapping.
:mod:`hubbub.config` is imported only when a configuration is read, so that
``hubbub pub`` and ``sub``, which need none, start quickly.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

if TYPE_CHECKING:
    from ..config import AuthConfig, Config, Grant

PREFIX = "HUBBUB_"
#: Between the parts of a file key in a variable's name.
SEPARATOR = "__"
#: Keys whose value is text however it looks (a secret may be all digits).
TEXT_KEYS = frozenset({"dir", "secret", "secret_file", "public_key", "public_key_file",
                       "issuer", "audience"})
LIST_KEYS = frozenset({"jobs", "publishers", "subscribers", "pub", "sub"})
MASK = "********"


def environment_table(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The file keys the environment sets, as the table a TOML file would give.

    Returns:
        ``(table, names)``: the nested table, and for each dotted key set the
        variable that set it (for error messages).

    Raises:
        ConfigError: a variable names no key (``HUBBUB_SERVER__`` ...).
    """
    from ..config import ConfigError

    table: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name, text in sorted(environ.items()):
        if not name.startswith(PREFIX) or SEPARATOR not in name:
            continue  # HUBBUB_PORT and the like are options, not file keys
        parts = name[len(PREFIX):].lower().split(SEPARATOR)
        if len(parts) < 2 or not all(parts):
            raise ConfigError(f"{name}: expected {PREFIX}SECTION{SEPARATOR}KEY")
        node = table
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(parts)} is set twice")
        node[parts[-1]] = _value(parts[-1], text)
        names[".".join(parts)] = name
    return table, names


def _value(key: str, text: str) -> Any:
    if key in TEXT_KEYS:
        return text
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    if key in LIST_KEYS and isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load(path: Path | None, environ: Mapping[str, str]) -> Config:
    """The configuration of the file at ``path`` (if any) under the environment's keys.

    Raises:
        ConfigError: the file or a variable is invalid; the message names
            the file's key or the variable.
    """
    from ..config import Config, ConfigError

    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        Config.from_dict(raw)  # the file's own mistakes are named as the file's
    table, names = environment_table(environ)
    try:
        return Config.from_dict(_merge(raw, table))
    except ConfigError as exc:
        raise ConfigError(_blame(str(exc), names)) from None


def _blame(message: str, names: Mapping[str, str]) -> str:
    """Put the variable's name before a message about a key it set."""
    for key, name in sorted(names.items(), key=lambda item: -len(item[0])):
        section = key.split(".")[0]
        if message.startswith((key + ":", key + "[", key + ".")) or (
                message.startswith("unknown section") and section in message):
            return f"{name}: {message}"
    return message


# -- the options of `serve` -----------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """An argument parser that remembers its options, so that each can be given
    a ``HUBBUB_*`` variable (:func:`options_from_environment`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.options: list[argparse.Action] = []
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        if action.option_strings and action.dest not in ("help", "version"):
            self.options.append(action)
        return action


def option_variable(action: argparse.Action) -> str:
    """The variable that gives an option its default: ``--log-level``: HUBBUB_LOG_LEVEL."""
    return PREFIX + action.dest.upper()


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def options_from_environment(parser: Parser, environ: Mapping[str, str]) -> list[str]:
    """Make each option of ``parser`` default to its ``HUBBUB_*`` variable.

    Values are converted and checked as on the command line; a flag (an
    option with no value) takes ``1``/``true``/``yes``/``on`` or
    ``0``/``false``/``no``/``off``.

    Returns:
        One message per variable that could not be used; the caller reports
        them when the command runs (a bad ``HUBBUB_PORT`` must not stop
        ``hubbub pub``).
    """
    errors: list[str] = []
    for action in parser.options:
        name = option_variable(action)
        action.help = f"{action.help or ''} [${name}]".strip()
        if name not in environ:
            continue
        try:
            value = _option_value(action, environ[name])
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            errors.append(f"{name}: {exc}")
            continue
        parser.set_defaults(**{action.dest: value})
    return errors


def _option_value(action: argparse.Action, text: str) -> Any:
    if action.nargs == 0:  # a flag: store_true
        if text.strip().lower() in _TRUE:
            return action.const
        if text.strip().lower() in _FALSE:
            return action.default
        raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}, got {text!r}")
    convert: Callable[[str], Any] = action.type if callable(action.type) else str
    value = convert(text)
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"expected one of {', '.join(map(str, action.choices))}, "
                         f"got {text!r}")
    return value


# -- what `hubbub config` prints -------------------------------------------------------


def mask_url(url: str) -> str:
    """A store URL with its password, if any, masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    user = parts.username or ""
    netloc = f"{user}:{MASK}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def effective_table(config: Config) -> dict[str, Any]:
    """The whole configuration as the table of a ``hubbub.toml``, secrets masked.

    Durations are in seconds. API keys are never kept, only their SHA-256
    digests: each shows as ``sha256:`` and the digest's first 12 digits.
    """
    table: dict[str, Any] = {
        "defaults": _fields(config.defaults),
        "namespaces": {name: _fields(ns) for name, ns in sorted(config.namespaces.items())},
        "server": _fields(config.server),
        "uploads": _fields(config.uploads),
        "jobs": _fields(config.jobs),
        "auth": _auth_table(config.auth),
    }
    return table


def _fields(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)
            if getattr(obj, f.name) is not None}


def _auth_table(auth: AuthConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if auth.secret is not None:
        out["secret"] = MASK
    for key in ("public_key", "issuer", "audience"):
        if (value := getattr(auth, key)) is not None:
            out[key] = value
    out["leeway"] = auth.leeway
    if auth.api_keys:
        out["api_keys"] = {f"sha256:{digest[:12]}": _grant(grant)
                           for digest, grant in sorted(auth.api_keys.items())}
    if auth.anonymous is not None:
        out["anonymous"] = _grant(auth.anonymous)
    return out


def _grant(grant: Grant) -> dict[str, Any]:
    out = _fields(grant)
    if not grant.admin:
        del out["admin"]
    return out


def dump_toml(table: Mapping[str, Any], prefix: str = "") -> str:
    """TOML text of a table of tables, strings, numbers, booleans and lists."""
    plain = [(k, v) for k, v in table.items() if not isinstance(v, Mapping)]
    nested = [(k, v) for k, v in table.items() if isinstance(v, Mapping)]
    lines = [f"{_key(k)} = {_toml_value(v)}" for k, v in plain]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, sub in nested:
        name = f"{prefix}.{_key(key)}" if prefix else _key(key)
        body = dump_toml(sub, name)
        if any(not isinstance(v, Mapping) for v in sub.values()) or not sub:
            out += f"\n[{name}]\n"
        out += body
    return out


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value):
            return str(int(value))
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a TOML basic string (the same quotes and escapes), once
        # DEL, which JSON leaves as it is and TOML refuses raw, is escaped too.
        return msgspec.json.encode(value).decode().replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


__all__ = ["Parser", "dump_toml", "effective_table", "environment_table", "load",
           "mask_url", "option_variable", "options_from_environment"]
