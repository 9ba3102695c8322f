"""The whole configuration: one settings structure per feature, and a topic's settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engines.base import Retention
from ..protocol.topics import namespace
from .auth import AuthConfig
from .features import JobsConfig, LimitsConfig, ServerConfig, UploadsConfig
from .namespaces import NamespaceConfig, feature_namespaces
from .reading import read_toml, sections


@dataclass(slots=True)
class Config:
    """The whole configuration; :meth:`namespace` resolves a topic's settings."""

    defaults: NamespaceConfig = field(default_factory=NamespaceConfig)
    namespaces: dict[str, NamespaceConfig] = field(default_factory=dict)
    server: ServerConfig = field(default_factory=ServerConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    auth: AuthConfig = field(default_factory=lambda: AuthConfig())
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    #: The features' namespaces as made from ``defaults`` and ``jobs`` (both
    #: named, so they are made again should either be replaced).
    _features: tuple[NamespaceConfig | None, JobsConfig | None, dict[str, NamespaceConfig]] = (
        field(default=(None, None, {}), init=False, repr=False, compare=False))

    def for_topic(self, topic: str) -> NamespaceConfig:
        ns = namespace(topic)
        found = self.namespaces.get(ns)
        if found is not None:
            return found
        defaults, jobs, features = self._features
        if defaults is not self.defaults or jobs is not self.jobs:
            features = feature_namespaces(self.defaults, self.jobs)
            self._features = (self.defaults, self.jobs, features)
        return features.get(ns, self.defaults)

    def retention(self, topic: str) -> Retention:
        return self.for_topic(topic).retention

    @property
    def max_message_size(self) -> int:
        """The largest payload any namespace accepts (bounds request bodies and frames)."""
        return max([self.defaults.max_message_size]
                   + [n.max_message_size for n in self.namespaces.values()])

    @classmethod
    def load(cls, path: str | Path) -> Config:
        return cls.from_dict(read_toml(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        return cls(*sections(raw))


__all__ = ["Config"]
