"""Reading a configuration: a TOML file's tables checked into settings structures.

Every mistake raises :class:`ConfigError` naming the setting (``server.buffer``,
``namespaces.chat.history_age``).
"""

from __future__ import annotations

import tomllib
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from ..protocol.origins import normalize_origin, split_host
from .auth import AuthConfig
from .auth_reading import read_auth
from .checks import ConfigError, parse_duration, read_strings
from .features import JobsConfig, LimitsConfig, ServerConfig, UploadsConfig
from .namespaces import NamespaceConfig


def _namespace(base: NamespaceConfig, section: Any, where: str) -> NamespaceConfig:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name for f in fields(NamespaceConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown setting")
        if key == "history_age":
            changes[key] = parse_duration(value, where=f"{where}.{key}")
        elif key in ("ephemeral", "presence"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false")
            changes[key] = value
        elif key in ("publishers", "subscribers"):
            changes[key] = read_strings(value, f"{where}.{key}", "subjects")
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}.{key}: expected a non-negative integer")
            changes[key] = value
    return replace(base, **changes)


#: The server layer's timeouts among the [server] keys (durations).
_SERVER_TIMEOUTS = ("head_timeout", "body_timeout", "keepalive_timeout", "write_deadline",
                    "linger_timeout")


def _server(section: Any) -> ServerConfig:
    if not isinstance(section, dict):
        raise ConfigError("server: expected a table")
    known = {f.name for f in fields(ServerConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"server.{key}: unknown setting")
        if key in _BROWSER_KEYS:
            changes[key] = _browser_setting(key, value)
        elif key in ("tls_cert", "tls_key"):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"server.{key}: expected a file name")
            changes[key] = value
        elif key in ("heartbeat", "max_wait", "presence_ttl", "cors_max_age", *_SERVER_TIMEOUTS):
            changes[key] = parse_duration(value, where=f"server.{key}")
            if key in ("presence_ttl", *_SERVER_TIMEOUTS) and not changes[key] > 0:
                raise ConfigError(f"server.{key}: must be more than 0")
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"server.{key}: expected a positive integer")
        else:
            changes[key] = value
    if changes.get("cors_credentials") and "*" in changes.get("cors_origins", ()):
        # Fetch standard: a credentialed answer "cannot use *" as its allowed origin.
        raise ConfigError("server.cors_origins: \"*\" cannot go with cors_credentials = true")
    return replace(ServerConfig(), **changes)


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
    if not isinstance(section, dict):
        raise ConfigError("uploads: expected a table")
    known = {f.name for f in fields(UploadsConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        where = f"uploads.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown setting")
        if key in ("expiration", "keep"):
            changes[key] = parse_duration(value, where=where)
        elif key == "dir":
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: expected a directory path")
            changes[key] = value
        elif key == "jobs":
            if not isinstance(value, list) or not all(isinstance(q, str) for q in value):
                raise ConfigError(f"{where}: expected a list of queue names")
            changes[key] = tuple(value)
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{where}: expected a positive integer")
        else:
            changes[key] = value
    return replace(UploadsConfig(), **changes)


def _jobs(section: Any) -> JobsConfig:
    if not isinstance(section, dict):
        raise ConfigError("jobs: expected a table")
    known = {f.name for f in fields(JobsConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        where = f"jobs.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown setting")
        if key in ("keep", "lease"):
            changes[key] = parse_duration(value, where=where)
            if key == "lease" and not 0.1 <= changes[key] <= 43200:
                raise ConfigError(f"{where}: expected from 0.1 seconds to 12 hours")
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise ConfigError(f"{where}: expected an integer from 1 to 1000")
        else:
            changes[key] = value
    return replace(JobsConfig(), **changes)


def _limits(section: Any) -> LimitsConfig:
    if not isinstance(section, dict):
        raise ConfigError("limits: expected a table")
    known = {f.name for f in fields(LimitsConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        where = f"limits.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown setting")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: expected a non-negative integer (0: no limit)")
        if key == "json_depth" and not 1 <= value <= 512:
            # msgspec recurses once per level: far below Python's recursion limit.
            raise ConfigError(f"{where}: expected an integer from 1 to 512")
        changes[key] = value
    return replace(LimitsConfig(), **changes)


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
