"""Settings of one namespace, and the namespaces the hub's features write to.

A topic's settings are its namespace's (its first token); the namespaces
of inboxes, uploads, presence and jobs have defaults of their own unless
the file configures them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..engines.base import Retention
from .features import JobsConfig


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """Settings of the topics in one namespace (the first token of a topic)."""

    history_size: int = 100_000
    history_age: float = 7 * 86400.0
    ephemeral: bool = False
    presence: bool = False
    max_message_size: int = 1 << 20
    max_deliver: int = 5
    #: Subjects granted publishing / subscribing on every topic of the namespace,
    #: on top of their own claims; ``"*"``: every authenticated client.
    publishers: tuple[str, ...] = ()
    subscribers: tuple[str, ...] = ()

    @property
    def retention(self) -> Retention:
        return Retention(
            max_messages=self.history_size or None,
            max_age_ms=int(self.history_age * 1000) or None,
        )


#: The namespace of request-reply inboxes (:mod:`hubbub.core.requests`).
INBOX = "_inbox"
#: The namespace of upload progress topics (:mod:`hubbub.core.uploads`).
UPLOADS = "uploads"
#: The namespace of presence events, ``presence.<topic>`` (:mod:`hubbub.core.presence`).
PRESENCE = "presence"
#: The namespaces of job states and of job queues (:mod:`hubbub.core.jobs`).
JOBS, JOB_QUEUES = "jobs", "jobs-queue"


def _inbox_defaults(defaults: NamespaceConfig, jobs: JobsConfig) -> NamespaceConfig:
    """Inboxes, unless configured, keep one reply for a minute: a caller reads it live."""
    return replace(defaults, history_size=1, history_age=60.0)


def _presence_defaults(defaults: NamespaceConfig, jobs: JobsConfig) -> NamespaceConfig:
    """Presence events, unless configured, keep the last 1000 per topic for a day."""
    return replace(defaults, history_size=1000, history_age=86400.0)


def _uploads_defaults(defaults: NamespaceConfig, jobs: JobsConfig) -> NamespaceConfig:
    """Upload progress topics, unless configured, keep their last 100 events for a day."""
    return replace(defaults, history_size=100, history_age=86400.0)


def _jobs_defaults(defaults: NamespaceConfig, jobs: JobsConfig) -> NamespaceConfig:
    """Job state topics, unless configured, keep their last 1000 states at least as
    long as finished jobs are kept (a day at least; forever when jobs are)."""
    age = 0.0 if not jobs.keep else max(jobs.keep, 86400.0)
    return replace(defaults, history_size=1000, history_age=age)


def _job_queues_defaults(defaults: NamespaceConfig, jobs: JobsConfig) -> NamespaceConfig:
    """Job queues, unless configured, keep every job (a week by default) and
    give each ``max_attempts`` tries."""
    return replace(defaults, history_size=0, max_deliver=jobs.max_attempts)


#: The namespaces the hub's features write to, and how each one's settings
#: differ from ``[defaults]`` unless ``[namespaces.<name>]`` configures it.
_FEATURES: dict[str, Callable[[NamespaceConfig, JobsConfig], NamespaceConfig]] = {
    INBOX: _inbox_defaults,
    UPLOADS: _uploads_defaults,
    PRESENCE: _presence_defaults,
    JOBS: _jobs_defaults,
    JOB_QUEUES: _job_queues_defaults,
}


def feature_namespaces(defaults: NamespaceConfig, jobs: JobsConfig
                       ) -> dict[str, NamespaceConfig]:
    """The settings of the features' namespaces, made from ``defaults`` and ``jobs``."""
    return {name: make(defaults, jobs) for name, make in _FEATURES.items()}


__all__ = ["INBOX", "JOBS", "JOB_QUEUES", "PRESENCE", "UPLOADS", "NamespaceConfig",
           "feature_namespaces"]
