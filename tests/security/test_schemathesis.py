"""The API against its own description: a bounded schemathesis run.

``hubbub serve`` runs in a child process (a real server on a real socket);
schemathesis reads its ``/openapi.json`` and, for every operation, sends a few
generated requests (``MAX_EXAMPLES`` each, a fixed seed, so the run is the
same every time and stays well under a minute). Every answer must be no 5xx
except the ones the description names for the operation (503 from a store or
a request nobody answers, 504 when no reply comes in time), have a status,
content type and body the description allows.

The server is started with ``[server] max_wait = 1``: long polls, pulls, job
takes and requests answer within a second, and the description still
declares the wider bounds a default hub accepts (a longer wait is then a
documented 400).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import UNIT, HubProcess, free_port

MAX_EXAMPLES = 4
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
#: Seconds a request (an event stream, say) may take before it is cut short.
REQUEST_TIMEOUT = 2 * UNIT


@schemathesis.serializer("application/offset+octet-stream")
def _offset_stream(ctx: Any, value: Any) -> bytes:
    """tus bodies (``PATCH``, creation-with-upload): any bytes."""
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base: Path = tmp_path_factory.mktemp("schemathesis")
    config = base / "hubbub.toml"
    config.write_text('[server]\nmax_wait = 1\n')
    hub = HubProcess("memory://", free_port(), "--config", str(config)).start()
    try:
        yield hub.url
    finally:
        hub.terminate()
        if hub.proc is not None and hub.proc.stdout is not None:
            hub.proc.stdout.close()


def run_operation(operation: Any, base_url: str) -> list[str]:
    """Send ``MAX_EXAMPLES`` generated requests to one operation; what went wrong."""
    failures: list[str] = []
    documented = set(operation.definition.raw.get("responses", {}))

    @given(operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call(base_url=base_url, timeout=REQUEST_TIMEOUT)
        where = f"{case.method} {case.formatted_path} -> {response.status_code}"
        if response.status_code >= 500 and str(response.status_code) not in documented:
            failures.append(f"{where}: undocumented server error {response.text[:200]}")
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:  # how schemathesis fails
            failures.append(f"{where}: {str(exc)[:600]}")

    check()
    return failures


@pytest.mark.timeout(120 * UNIT)
def test_api_matches_its_description(served: str) -> None:
    """Every operation: no undocumented 5xx; status, content type and body as described."""
    schema = schemathesis.openapi.from_url(served + "/openapi.json")
    schema.config.max_stream_events = 2  # ready, and maybe one more: enough to check
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    for operation in operations:
        failures += run_operation(operation, served)
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)
