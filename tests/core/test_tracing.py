"""OpenTelemetry traces of publish -> store -> fan-out and of request-reply,
read back with the SDK's in-memory exporter.

A tracer provider is set once per process and for good, so each case runs a
hub in a child process of its own (and the other tests' hubs stay untraced).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.conftest import UNIT

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")

TRACED = '''
import asyncio, sys
import msgspec
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from hubbub.core import Hub
from hubbub.engines import open_engine

exporter = InMemorySpanExporter()
if sys.argv[2] == "traced":
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)

async def main() -> None:
    async with Hub(open_engine(sys.argv[1])) as hub:
        sub = await hub.subscribe(["t.*"], "end")
        with trace.get_tracer("test").start_as_current_span("door"):
            await hub.publish("t.a", b"1")
        assert await hub.groups.pull("w", ["svc.echo"]) == []  # a responder's group
        pending = await hub.requests.send("svc.echo", b"2", timeout=5)
        (lease,) = await hub.groups.pull("w", wait=5)
        await hub.requests.reply(lease.message.value()["request"], b"3")
        assert (await pending.wait()).value() == 3
        sub.close()
        print(msgspec.json.encode({"tracer": hub.tracer is not None, "spans": [
            {"name": s.name, "kind": s.kind.name, "id": s.context.span_id,
             "trace": s.context.trace_id, "parent": s.parent.span_id if s.parent else None,
             "attributes": dict(s.attributes or {}), "status": s.status.status_code.name}
            for s in exporter.get_finished_spans()]}).decode())

asyncio.run(main())
'''


def run(tmp_path: Path, mode: str, store: str = "memory://") -> dict[str, Any]:
    script = tmp_path / "traced.py"
    script.write_text(TRACED)
    out = subprocess.run([sys.executable, str(script), store, mode], capture_output=True,
                         text=True, timeout=60 * UNIT)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = msgspec.json.decode(out.stdout)
    return result


@pytest.mark.smoke
@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_publish_store_fanout_in_one_trace(tmp_path: Path, store: str) -> None:
    """A publish is a PRODUCER span under the caller's, with the store's commit and
    the fan-out as its children, carrying the topic, the offset and the engine."""
    url = "memory://" if store == "memory" else f"sqlite:///{tmp_path / 'hub.db'}"
    spans = run(tmp_path, "traced", url)["spans"]
    door = next(s for s in spans if s["name"] == "door")
    publish = next(s for s in spans if s["name"] == "hubbub publish"
                   and s["attributes"]["messaging.destination.name"] == "t.a")
    assert publish["parent"] == door["id"] and publish["kind"] == "PRODUCER"
    assert publish["attributes"]["messaging.system"] == "hubbub"
    assert publish["attributes"]["hubbub.offset"] == 1
    children = {s["name"]: s for s in spans if s["parent"] == publish["id"]}
    assert set(children) == {"hubbub store.append", "hubbub fanout"}
    assert children["hubbub store.append"]["attributes"]["hubbub.engine"].endswith("Engine")
    assert children["hubbub fanout"]["attributes"]["hubbub.subscribers"] == 1
    assert {s["trace"] for s in (door, publish, *children.values())} == {door["trace"]}


def test_request_reply_is_traced(tmp_path: Path) -> None:
    """The caller's request (CLIENT) holds the publish of its envelope; its wait and
    the responder's reply are spans too."""
    spans = run(tmp_path, "traced")["spans"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    (request,) = by_name["hubbub request"]
    assert request["kind"] == "CLIENT"
    assert request["attributes"]["messaging.destination.name"] == "svc.echo"
    assert any(p["parent"] == request["id"] and
               p["attributes"]["messaging.destination.name"] == "svc.echo"
               for p in by_name["hubbub publish"])
    (wait,) = by_name["hubbub request.wait"]
    (reply,) = by_name["hubbub reply"]
    assert wait["status"] != "ERROR" and reply["attributes"]["hubbub.request_id"]


def test_nothing_is_traced_unless_a_provider_is_set(tmp_path: Path) -> None:
    """With OpenTelemetry installed but no tracer provider, the hub has no tracer."""
    result = run(tmp_path, "untraced")
    assert result == {"tracer": False, "spans": []}


def test_nothing_is_imported_without_opentelemetry() -> None:
    """Without the otel extra the hub runs, untraced."""
    code = ("import sys; sys.modules['opentelemetry'] = None\n"
            "import asyncio\nfrom hubbub.core import Hub\nfrom hubbub.engines import open_engine\n"
            "async def main():\n"
            "    async with Hub(open_engine('memory://')) as hub:\n"
            "        await hub.publish('t.a', b'1')\n"
            "        print(hub.tracer)\n"
            "asyncio.run(main())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60 * UNIT)
    assert (out.returncode, out.stdout) == (0, "None\n"), out.stderr
