"""What every table's reader shares: the error it raises, durations, lists of strings."""

from __future__ import annotations

import re
from typing import Any

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


def read_strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of {what}")
    return tuple(value)


__all__ = ["ConfigError", "parse_duration", "read_strings"]
