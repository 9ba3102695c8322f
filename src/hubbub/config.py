"""Hub configuration: per-namespace settings from a TOML file (pure).

Example ``hubbub.toml``::

    [defaults]                 # every namespace not named below
    history_size = 100000      # messages kept per topic (0: unlimited)
    history_age = "7d"         # s, m, h, d suffixes or plain seconds (0: unlimited)
    max_message_size = 1048576 # bytes of payload
    max_deliver = 5            # consumer groups: tries before a message is dead-lettered

    [namespaces.cursors]       # topics cursors.*
    ephemeral = true           # slow subscribers lose messages (a gap is said) instead of being cut off
    history_size = 100

    [server]
    buffer = 1024              # messages held per subscriber before it counts as slow
    heartbeat = 15             # seconds between SSE heartbeat comments
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .engines.base import Retention
from .topics import namespace

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """The configuration file is invalid; the message says where."""


def parse_duration(value: Any, *, where: str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"12h"`` or ``"7d"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{where}: duration must not be negative")
        return float(value)
    if isinstance(value, str) and (m := _DURATION_RE.fullmatch(value.strip())):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ConfigError(f"{where}: expected a duration like 30, '30s', '5m', '12h' or '7d'")


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """Settings of the topics in one namespace (the first token of a topic)."""

    history_size: int = 100_000
    history_age: float = 7 * 86400.0
    ephemeral: bool = False
    max_message_size: int = 1 << 20
    max_deliver: int = 5

    @property
    def retention(self) -> Retention:
        return Retention(
            max_messages=self.history_size or None,
            max_age_ms=int(self.history_age * 1000) or None,
        )


#: The namespace of request-reply inboxes (:mod:`hubbub.core.requests`).
INBOX = "_inbox"


@functools.cache
def _inbox_defaults(defaults: NamespaceConfig) -> NamespaceConfig:
    """Inboxes, unless configured, keep one reply for a minute: a caller reads it live."""
    return replace(defaults, history_size=1, history_age=60.0)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    buffer: int = 1024
    heartbeat: float = 15.0
    max_wait: float = 60.0
    max_limit: int = 1000


@dataclass(slots=True)
class Config:
    """The whole configuration; :meth:`namespace` resolves a topic's settings."""

    defaults: NamespaceConfig = field(default_factory=NamespaceConfig)
    namespaces: dict[str, NamespaceConfig] = field(default_factory=dict)
    server: ServerConfig = field(default_factory=ServerConfig)

    def for_topic(self, topic: str) -> NamespaceConfig:
        ns = namespace(topic)
        found = self.namespaces.get(ns)
        if found is not None:
            return found
        return _inbox_defaults(self.defaults) if ns == INBOX else self.defaults

    def retention(self, topic: str) -> Retention:
        return self.for_topic(topic).retention

    @property
    def max_message_size(self) -> int:
        """The largest payload any namespace accepts (bounds request bodies and frames)."""
        return max([self.defaults.max_message_size]
                   + [n.max_message_size for n in self.namespaces.values()])

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        unknown = set(raw) - {"defaults", "namespaces", "server"}
        if unknown:
            raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
        defaults = _namespace(NamespaceConfig(), raw.get("defaults", {}), "defaults")
        namespaces = {
            name: _namespace(defaults, section, f"namespaces.{name}")
            for name, section in raw.get("namespaces", {}).items()
        }
        server = _server(raw.get("server", {}))
        return cls(defaults, namespaces, server)


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
        elif key == "ephemeral":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false")
            changes[key] = value
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}.{key}: expected a non-negative integer")
            changes[key] = value
    return replace(base, **changes)


def _server(section: Any) -> ServerConfig:
    if not isinstance(section, dict):
        raise ConfigError("server: expected a table")
    known = {f.name for f in fields(ServerConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"server.{key}: unknown setting")
        if key in ("heartbeat", "max_wait"):
            changes[key] = parse_duration(value, where=f"server.{key}")
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"server.{key}: expected a positive integer")
        else:
            changes[key] = value
    return replace(ServerConfig(), **changes)
