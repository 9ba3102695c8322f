"""Reading a configuration: a TOML file's tables checked into settings structures.

Every mistake raises :class:`ConfigError` naming the setting (``server.buffer``,
``namespaces.chat.history_age``).
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..protocol.origins import normalize_origin, split_host
from .auth import AuthConfig
from .auth_reading import read_auth
from .checks import ConfigError, parse_duration, read_strings
from .features import JobsConfig, LimitsConfig, ServerConfig, UploadsConfig
from .namespaces import NamespaceConfig

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_S = TypeVar("_S", bound="DataclassInstance")


def _table(section: Any, where: str, base: _S,
           read: Callable[[str, Any, str], Any]) -> _S:
    """``base`` with the settings of table ``section`` (at ``where``): every key
    must name a field of ``base``, and ``read(key, value, where)`` checks each."""
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name for f in fields(base)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown setting")
        changes[key] = read(key, value, f"{where}.{key}")
    return replace(base, **changes)


def _namespace(base: NamespaceConfig, section: Any, where: str) -> NamespaceConfig:
    return _table(section, where, base, _namespace_setting)


def _namespace_setting(key: str, value: Any, where: str) -> Any:
    if key == "history_age":
        return parse_duration(value, where=where)
    if key in ("ephemeral", "presence"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if key in ("publishers", "subscribers"):
        return read_strings(value, where, "subjects")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: expected a non-negative integer")
    return value


#: The server layer's timeouts among the [server] keys (durations).
_SERVER_TIMEOUTS = ("head_timeout", "body_timeout", "keepalive_timeout", "write_deadline",
                    "cut_off_grace", "linger_timeout")


def _server(section: Any) -> ServerConfig:
    server = _table(section, "server", ServerConfig(), _server_setting)
    if server.cors_credentials and "*" in server.cors_origins:
        # Fetch standard: a credentialed answer "cannot use *" as its allowed origin.
        raise ConfigError("server.cors_origins: \"*\" cannot go with cors_credentials = true")
    return server


def _server_setting(key: str, value: Any, where: str) -> Any:
    if key in _BROWSER_KEYS:
        return _browser_setting(key, value)
    if key in ("tls_cert", "tls_key"):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a file name")
        return value
    if key in ("heartbeat", "max_wait", "presence_ttl", "cors_max_age", *_SERVER_TIMEOUTS):
        seconds = parse_duration(value, where=where)
        if key in ("presence_ttl", *_SERVER_TIMEOUTS) and not seconds > 0:
            raise ConfigError(f"{where}: must be more than 0")
        return seconds
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: expected a positive integer")
    return value


_BROWSER_KEYS = ("allowed_hosts", "cors_origins", "cors_credentials")


def _browser_setting(key: str, value: Any) -> Any:
    """``allowed_hosts``, ``cors_origins`` (normalized) or ``cors_credentials``."""
    where = f"server.{key}"
    if key == "cors_credentials":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if key == "allowed_hosts":
        names = []
        for i, name in enumerate(read_strings(value, where, "host names")):
            name = name.strip().lower()
            dot = "." if name.startswith(".") else ""
            split = split_host(name[len(dot):])
            if name != "*" and (split is None or split[1] is not None):
                raise ConfigError(f"{where}[{i}]: expected a host name without a port, "
                                  "\"*\" or \".domain\"")
            names.append(name if split is None else dot + split[0])
        return tuple(names)
    origins = []
    for i, text in enumerate(read_strings(value, where, "origins")):
        origin = normalize_origin(text)
        if origin is None:
            raise ConfigError(f"{where}[{i}]: expected an origin like "
                              "\"https://app.example.com\" (scheme, host, port; no path)")
        origins.append(origin)
    return tuple(origins)


def _uploads(section: Any) -> UploadsConfig:
    return _table(section, "uploads", UploadsConfig(), _uploads_setting)


def _uploads_setting(key: str, value: Any, where: str) -> Any:
    if key in ("expiration", "keep"):
        return parse_duration(value, where=where)
    if key == "dir":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a directory path")
        return value
    if key == "jobs":
        if not isinstance(value, list) or not all(isinstance(q, str) for q in value):
            raise ConfigError(f"{where}: expected a list of queue names")
        return tuple(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{where}: expected a positive integer")
    return value


def _jobs(section: Any) -> JobsConfig:
    return _table(section, "jobs", JobsConfig(), _jobs_setting)


def _jobs_setting(key: str, value: Any, where: str) -> Any:
    if key in ("keep", "lease"):
        seconds = parse_duration(value, where=where)
        if key == "lease" and not 0.1 <= seconds <= 43200:
            raise ConfigError(f"{where}: expected from 0.1 seconds to 12 hours")
        return seconds
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise ConfigError(f"{where}: expected an integer from 1 to 1000")
    return value


def _limits(section: Any) -> LimitsConfig:
    return _table(section, "limits", LimitsConfig(), _limits_setting)


def _limits_setting(key: str, value: Any, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: expected a non-negative integer (0: no limit)")
    if key == "json_depth" and not 1 <= value <= 512:
        # msgspec recurses once per level: far below Python's recursion limit.
        raise ConfigError(f"{where}: expected an integer from 1 to 512")
    return value


def read_toml(path: str | Path) -> dict[str, Any]:
    """The tables of the TOML file at ``path``."""
    try:
        return tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def sections(raw: dict[str, Any]) -> tuple[
        NamespaceConfig, dict[str, NamespaceConfig], ServerConfig, UploadsConfig, JobsConfig,
        AuthConfig, LimitsConfig]:
    """The settings of every table of ``raw``, in the order of
    :class:`~hubbub.config.root.Config`'s fields."""
    unknown = set(raw) - {"defaults", "namespaces", "server", "uploads", "jobs", "auth",
                          "limits"}
    if unknown:
        raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
    defaults = _namespace(NamespaceConfig(), raw.get("defaults", {}), "defaults")
    namespaces = {
        name: _namespace(defaults, section, f"namespaces.{name}")
        for name, section in raw.get("namespaces", {}).items()
    }
    server = _server(raw.get("server", {}))
    return (defaults, namespaces, server, _uploads(raw.get("uploads", {})),
            _jobs(raw.get("jobs", {})), read_auth(raw.get("auth", {})),
            _limits(raw.get("limits", {})))


__all__ = ["read_toml", "sections"]
