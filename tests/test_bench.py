"""``hubbub bench``: the parts that need no load, and one quick scenario end to end."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubbub import bench
from hubbub.bench import measure
from hubbub.cli import main
from hubbub.server import writes
from tests.conftest import UNIT, free_port


def _load_peer(name: str) -> Any:
    """A module of benchmarks/peers/ (the suite's nchan and Pushpin), by its path."""
    path = measure.LOADGEN.parent / "peers" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


push_servers = _load_peer("push_servers")
pushpin_origin = _load_peer("pushpin_origin")

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:8080/v1/topics/bench
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.35ms    1.02ms  20.07ms   91.82%
    Req/Sec    10.11k   420.21    10.64k    88.00%
  Latency Distribution
     50%    6.18ms
     75%    6.49ms
     90%    7.03ms
     99%  950.00us
  50303 requests in 5.00s, 11.52MB read
Requests/sec:  10056.83
Transfer/sec:      2.30MB
"""


def test_wrk_output_gives_rate_p99_and_errors() -> None:
    """The rate, the p99 in milliseconds whatever wrk's unit, and no errors are read."""
    assert bench.parse_wrk(WRK_OUTPUT) == {
        "requests_per_s": 10056.83, "p99_ms": pytest.approx(0.95), "errors": 0}


def test_wrk_errors_are_counted() -> None:
    """Non-2xx answers and socket errors count as errors (a run with any is refused)."""
    output = WRK_OUTPUT.replace(
        "Requests/sec", "  Socket errors: connect 0, read 2, write 0, timeout 1\n"
        "  Non-2xx or 3xx responses: 4\nRequests/sec")
    assert bench.parse_wrk(output)["errors"] == 7


def test_unexpected_wrk_output_is_an_error() -> None:
    """Output without the figures is a BenchError, not a zero."""
    with pytest.raises(bench.BenchError):
        bench.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_figure_is_median_with_min_and_max() -> None:
    """A figure reads median (min-max) over the runs; no successful run reads failed."""
    case = bench.CaseResult("ws-fanout", "N=100", "hubbub (memory)",
                            runs=[{"deliveries_per_s": v} for v in (3000.0, 1000.0, 2000.0)])
    metric = bench.SCENARIOS["ws-fanout"].metrics[0]
    assert bench.figure(case, metric) == "2,000 (1,000-3,000)"
    assert bench.figure(bench.CaseResult("ws-fanout", "N=100", "x"), metric) == "failed"


def test_summary_lists_every_figure_and_failure() -> None:
    """The summary has a row per figure of the scenario and names failed runs with why."""
    ok = bench.CaseResult("idle-ws", "10000 conns", "hubbub (memory)", runs=[{"kb_per_conn": 12.5}])
    bad = bench.CaseResult("idle-ws", "10000 conns", "peer", errors=["the server exited"])
    text = bench.summary([ok, bad])
    assert "| idle-ws " in text and "12.5" in text
    assert "- idle-ws 10000 conns peer: the server exited" in text


def test_unknown_scenario_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown scenario exits 2 and names the known ones; nothing runs."""
    assert main(["bench", "no-such-scenario"]) == 2
    assert "ws-fanout" in capsys.readouterr().err


needs_node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="the load generator needs Node.js and npm")


@pytest.mark.slow
@needs_node
@pytest.mark.skipif(shutil.which("redis-server") is None,
                    reason="ws-fanout runs the Redis engine too, on its own redis-server")
def test_quick_ws_fanout_runs_end_to_end(tmp_path: Path) -> None:
    """`hubbub bench ws-fanout --quick` runs the hub and the load generator and reports."""
    out = tmp_path / "runs.json"
    proc = subprocess.run(
        [sys.executable, "-m", "hubbub", "bench", "ws-fanout", "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=120 * UNIT, env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "deliveries/s" in proc.stdout
    cases = json.loads(out.read_text())
    assert [c["server"] for c in cases] == [
        "hubbub (sqlite)", "hubbub (memory)", "hubbub (redis)", "hubbub (redis, 3 nodes)"]
    for case in cases:
        (run,) = case["runs"]
        assert run["deliveries_per_s"] > 0 and run["deliveries_per_core_s"] > 0
        assert 0 < run["p50_ms"] <= run["p99_ms"]
        assert run["half_rate_server_cpu"] > 0 and run["half_rate_loadgen_cpu"] > 0
        assert "at50_load" in run


@pytest.mark.slow
def test_quick_long_poll_runs_end_to_end(tmp_path: Path) -> None:
    """`hubbub bench long-poll --quick` builds the C long-poll client, and every
    poll gets its answer after the publish, none before, none failed."""
    out = tmp_path / "runs.json"
    proc = subprocess.run(
        [sys.executable, "-m", "hubbub", "bench", "long-poll", "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=120 * UNIT, env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    for case in json.loads(out.read_text()):
        (run,) = case["runs"]
        assert (run["answered"], run["early"], run["failed"], run["waiting"]) == (
            bench.QUICK.polls, 0, 0, 0)
        assert 0 < run["p50_ms"] <= run["p99_ms"] <= run["max_ms"]
        assert "loadgen_cpu" in run


@pytest.mark.skipif(shutil.which("cc") is None, reason="the long-poll client needs cc")
def test_long_poll_client_says_what_is_wrong_in_json() -> None:
    """The C client speaks the generator's JSON lines: a refused connection is
    an ``error`` line and exit status 1, not a crash or a hang."""
    client = measure.c_client("longpoll")
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1/topics/t"
    proc = subprocess.run([str(client), url + "/messages?wait=30", url, "3", "100", "0", "1000"],
                          capture_output=True, text=True, timeout=30 * UNIT)
    assert proc.returncode == 1
    assert json.loads(proc.stdout.splitlines()[-1]) == {"error": "connect: Connection refused"}
    usage = subprocess.run([str(client)], capture_output=True, text=True, timeout=30 * UNIT)
    assert usage.returncode == 1 and "usage: longpoll" in json.loads(usage.stdout)["error"]


needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="the C clients need cc")


def _fanout(url: str, *args: str, dialect: str = "hubbub", topic: str = "bench",
            subs: str = "-") -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    """Run the C fan-out client: N, SIZE, WINDOW, WARMUP, SECONDS, LATENCY_SECONDS,
    RATES (PACED_MIN 0)."""
    client = measure.c_client("fanout")
    proc = subprocess.run([str(client), dialect, url, subs, topic, *args, "0", "60"],
                          capture_output=True, text=True, timeout=90 * UNIT)
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


@needs_cc
def test_fanout_client_says_what_is_wrong_in_json() -> None:
    """Refused connections, bad arguments and an unknown dialect are ``error``
    lines with exit status 1."""
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"ws://127.0.0.1:{port}/v1/ws"
    proc, lines = _fanout(url, "3", "256", "16", "0.1", "0.1", "0.1", "0")
    assert proc.returncode == 1 and lines == [{"error": "connect: Connection refused"}]
    proc, lines = _fanout(url, "0", "256", "16", "0.1", "0.1", "0.1", "0")
    assert proc.returncode == 1 and lines == [{"error": "bad arguments"}]
    proc, lines = _fanout(url, "3", "256", "16", "0.1", "0.1", "0.1", "0", dialect="mqtt")
    assert proc.returncode == 1 and "unknown dialect mqtt" in str(lines[0]["error"])
    proc, lines = _fanout("http://127.0.0.1:1/", "3", "256", "16", "0.1", "0.1", "0.1", "0")
    assert proc.returncode == 1 and "not a ws:// URL" in str(lines[0]["error"])
    usage = subprocess.run([str(measure.c_client("fanout"))], capture_output=True, text=True,
                           timeout=30 * UNIT)
    assert usage.returncode == 1 and "usage: fanout" in json.loads(usage.stdout)["error"]


@needs_cc
@pytest.mark.parametrize("n", [20, writes.SPLIT_AT + 88])
def test_fanout_client_measures_a_real_hub(spawn_hub: Any, n: int) -> None:
    """Against ``hubbub serve``: the marks in order, each with the client's CPU
    time, and a clean run (every message to every subscriber, in order; with
    more subscribers than SPLIT_AT, the flushes write over two threads)."""
    hub = spawn_hub("memory://")
    url = f"ws://127.0.0.1:{hub.port}/v1/ws"
    proc, lines = _fanout(url, str(n), "256", "16", "0.2", "0.5", "0.5", "0")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    marks = [line for line in lines if "mark" in line]
    assert [m["mark"] for m in marks] == ["start", "end", "half", "half-end"]
    cpu = [float(m["cpu_s"]) for m in marks]  # type: ignore[arg-type]
    assert 0 < cpu[0] <= cpu[1] <= cpu[2] <= cpu[3]
    result = lines[-1]["result"]
    assert isinstance(result, dict)
    assert result["deliveries_per_s"] > 0 and result["samples"] > 0
    # Latencies are taken at half the measured rate, in messages per second.
    assert result["half_rate_msgs_per_s"] == pytest.approx(result["deliveries_per_s"] / n / 2,
                                                           rel=1e-3)
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert {k: result[k] for k in ("undelivered", "closed", "publish_errors", "mismatches")} == {
        "undelivered": 0, "closed": 0, "publish_errors": 0, "mismatches": 0}
    # Every delivery's sequence number was checked, and none was lost, repeated or late.
    assert result["checked"] >= result["samples"] > 0
    assert {k: result[k] for k in ("lost", "duplicates", "reordered")} == {
        "lost": 0, "duplicates": 0, "reordered": 0}


def _check_sequences(pairs: list[tuple[int, int]]) -> dict[str, int]:
    """What ``fanout check`` makes of deliveries (subscriber, seq), in order."""
    client = measure.c_client("fanout")
    lines = "".join(f"{i} {seq}\n" for i, seq in pairs)
    proc = subprocess.run([str(client), "check"], input=lines, capture_output=True, text=True,
                          timeout=30 * UNIT, check=True)
    result: dict[str, int] = json.loads(proc.stdout)
    return result


@needs_cc
def test_fanout_sequence_check_tells_loss_duplicates_and_reordering() -> None:
    """Each subscriber's deliveries are checked against the next seq it expects:
    a skipped seq is lost, unless it comes late (reordered); a seq it had is a
    duplicate and is not counted again. Subscribers are checked apart."""
    assert _check_sequences([(0, 1), (0, 2), (0, 3), (1, 1)]) == {
        "counted": 4, "lost": 0, "duplicates": 0, "reordered": 0}
    assert _check_sequences([(0, 1), (0, 3), (0, 6)]) == {
        "counted": 3, "lost": 3, "duplicates": 0, "reordered": 0}
    assert _check_sequences([(0, 1), (0, 2), (0, 2), (0, 1)]) == {
        "counted": 2, "lost": 0, "duplicates": 2, "reordered": 0}
    assert _check_sequences([(0, 1), (0, 3), (0, 2), (0, 4), (1, 2), (1, 1)]) == {
        "counted": 6, "lost": 0, "duplicates": 0, "reordered": 2}


@needs_cc
@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 500), unique=True), st.integers(0, 999))
def test_fanout_sequence_check_counts_every_gap(seqs: list[int], subscriber: int) -> None:
    """In order with gaps: every skipped seq is lost, every other one counted once."""
    seqs.sort()
    result = _check_sequences([(subscriber, seq) for seq in seqs])
    assert result == {"counted": len(seqs), "lost": (seqs[-1] if seqs else 0) - len(seqs),
                      "duplicates": 0, "reordered": 0}


@needs_cc
def test_fanout_latency_runs_from_the_scheduled_send(spawn_hub: Any) -> None:
    """A paced phase's clock is the schedule: when the publisher itself is held
    up (here the client is stopped for 0.4 s), the messages due meanwhile are
    written late, that lag is reported, and their latencies include it. A
    phase runs past its seconds to send at least PACED_MIN messages (1.5 s at
    200 msg/s is 300; 400 are sent). A rate beyond what the server keeps up
    with is not paced, only its load reported."""
    hub = spawn_hub("memory://")
    client = measure.c_client("fanout")
    argv = [str(client), "hubbub", f"ws://127.0.0.1:{hub.port}/v1/ws", "-", "bench", "20", "256",
            "16", "0.2", "0.5", "1.5", "0,200,900000", "400", "60"]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(json.loads(line))
            if lines[-1].get("mark") == "at200":
                time.sleep(0.1)
                proc.send_signal(signal.SIGSTOP)
                time.sleep(0.4)
                proc.send_signal(signal.SIGCONT)
        assert proc.wait(60 * UNIT) == 0, lines
    assert [m["mark"] for m in lines if "mark" in m] == [
        "start", "end", "half", "half-end", "at200", "at200-end"]
    result = lines[-1]["result"]
    assert result["at200_samples"] == 20 * 400
    assert result["at200_lag_max_ms"] >= 300
    assert result["at200_max_ms"] >= result["at200_lag_max_ms"]
    assert result["at200_load"] < 0.9 < result["at900000_load"]
    assert "at900000_p99_ms" not in result
    assert (result["lost"], result["duplicates"], result["reordered"], result["undelivered"]) == (
        0, 0, 0, 0)


def test_rates_are_also_given_per_server_core_second() -> None:
    """Deliveries and requests per second get a per-core-second twin when the
    server's CPU is known; nothing is made up when it is not."""
    assert measure.per_core_second({"deliveries_per_s": 1000.0, "server_cpu": 0.5}) == {
        "deliveries_per_s": 1000.0, "server_cpu": 0.5, "deliveries_per_core_s": 2000.0}
    assert measure.per_core_second({"requests_per_s": 10.0}) == {"requests_per_s": 10.0}


def test_ws_fanout_runs_every_engine_and_fixed_rates_at_the_largest_n() -> None:
    """WebSocket fan-out runs on SQLite (the default engine) first, then memory,
    Redis and three Redis nodes; the largest N is also paced at the fixed rates."""
    scenario = bench.SCENARIOS["ws-fanout"]
    assert [s.name for s in scenario.servers()] == [
        "hubbub (sqlite)", "hubbub (memory)", "hubbub (redis)", "hubbub (redis, 3 nodes)"]
    assert scenario.variants(bench.FULL) == [
        ("N=100", {"n": 100, "fixed_rates": ()}),
        ("N=1000", {"n": 1000, "fixed_rates": (50, 500, 2000)})]


@needs_cc
def test_paced_phases_send_their_minimum_through_the_generators_command() -> None:
    """The full suite's paced fan-out phases send at least ``paced_min``
    messages (500: 10 s at 50 msg/s), the quick one none more than its seconds
    give; the C client gets it as PACED_MIN, right before TIMEOUT_S."""
    assert (bench.FULL.paced_min, bench.QUICK.paced_min) == (500, 0)
    spec = {"mode": "fanout", "dialect": "hubbub", "url": "ws://127.0.0.1:1/v1/ws",
            "sub_urls": None, "topic": "bench", "n": 1000, "size": 256, "window": 256,
            "warmup": 2.0, "seconds": 5.0, "latency_seconds": 4.0,
            "latency_rates": (0, 50), "paced_min": 500}
    argv = measure._generator(spec)
    assert argv[-4:] == ["4.0", "0,50", "500", str(measure.RUN_LIMIT - 10)]


@needs_cc
def test_fanout_client_reports_a_refused_subscription(spawn_hub: Any) -> None:
    """A subscription the hub refuses (a topic name it rejects) fails the run
    with the hub's reply, rather than waiting for deliveries that never come."""
    hub = spawn_hub("memory://")
    url = f"ws://127.0.0.1:{hub.port}/v1/ws"
    proc, lines = _fanout(url, "2", "256", "16", "0.1", "0.1", "0.1", "0", topic="bad topic")
    assert proc.returncode == 1
    assert str(lines[-1]["error"]).startswith('subscription refused: {"op":"err","id":1')


def test_cluster_scenario_compares_engines_and_node_counts() -> None:
    """The cluster scenario runs SQLite, Redis on one node and Redis on three,
    each measuring publishes and fan-out in the same run."""
    scenario = bench.SCENARIOS["cluster"]
    assert [(s.name, s.nodes, s.store_pid is not None) for s in scenario.servers()] == [
        ("hubbub (sqlite)", 1, False), ("hubbub (redis)", 1, True),
        ("hubbub (redis, 3 nodes)", 3, True)]
    assert scenario.variants(bench.QUICK) == [("N=60", {"n": 60})]
    assert {m.key for m in scenario.metrics} >= {"publish_per_s", "deliveries_per_s"}


@pytest.mark.slow
@needs_node
@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("redis-server") is None,
                    reason="the cluster scenario needs wrk and redis-server")
def test_quick_cluster_runs_end_to_end(tmp_path: Path) -> None:
    """`hubbub bench cluster --quick` starts its own redis-server and measures
    publishes and fan-out on SQLite, on Redis, and on three Redis nodes."""
    out = tmp_path / "runs.json"
    proc = subprocess.run(
        [sys.executable, "-m", "hubbub", "bench", "cluster", "--quick", "--json", str(out)],
        capture_output=True, text=True, timeout=180 * UNIT, env={**os.environ},
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    cases = json.loads(out.read_text())
    assert [c["server"] for c in cases] == [
        "hubbub (sqlite)", "hubbub (redis)", "hubbub (redis, 3 nodes)"]
    for case in cases:
        (run,) = case["runs"]
        assert run["publish_per_s"] > 0 and run["deliveries_per_s"] > 0
        assert ("store_cpu" in run) == ("redis" in case["server"])


needs_nchan = pytest.mark.skipif(
    not (Path(push_servers.NGINX).exists() and Path(push_servers.NCHAN_MODULE).exists()),
    reason="nchan is not installed (benchmarks/run installs nginx-light and libnginx-mod-nchan)")


def _until_listening(port: int) -> None:
    deadline = time.monotonic() + 10 * UNIT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def test_nchan_config_is_one_worker_per_core_on_loopback(tmp_path: Path) -> None:
    """The nchan peer's nginx.conf: a worker per core, on the given loopback
    port, its files in the scratch directory, WebSocket, EventSource and long
    polling subscribers, HTTP and WebSocket publishers."""
    text = push_servers.nchan_config(8081, tmp_path, workers=2)
    assert "worker_processes 2;" in text and "listen 127.0.0.1:8081 " in text
    assert f"pid {tmp_path / 'nginx.pid'};" in text
    assert "nchan_subscriber websocket eventsource longpoll;" in text
    assert "nchan_publisher http websocket;" in text
    assert "gzip" not in text  # nginx's default: off


@needs_cc
@needs_nchan
def test_fanout_client_measures_nchan(tmp_path: Path) -> None:
    """The fan-out client against the suite's nchan: the raw dialect (the
    channel in the URL, every frame a message) delivers every message to every
    subscriber, each one once and in order."""
    port = free_port()
    with subprocess.Popen(push_servers.NCHAN.argv(port, tmp_path), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as nginx:
        try:
            _until_listening(port)
            base = f"ws://127.0.0.1:{port}"
            proc, lines = _fanout(f"{base}/pub/bench", "20", "256", "16", "0.2", "0.5", "0.5",
                                  "0,50", dialect="raw", subs=f"{base}/sub/bench")
        finally:
            nginx.terminate()
            nginx.wait(30 * UNIT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = lines[-1]["result"]
    assert isinstance(result, dict)
    assert result["deliveries_per_s"] > 0 and result["at50_samples"] == 20 * 25
    assert {k: result[k] for k in ("undelivered", "closed", "publish_errors", "mismatches", "lost",
                                   "duplicates", "reordered")} == dict.fromkeys(
        ("undelivered", "closed", "publish_errors", "mismatches", "lost", "duplicates",
         "reordered"), 0)


SHIPPED_PUSHPIN_CONF = """\
[global]
rundir=/var/run/pushpin
port_offset=0
[runner]
services=condure,pushpin-proxy,pushpin-handler
logdir=/var/log/pushpin
log_level=2
client_buffer_size=8192
client_maxconn=50000
[proxy]
routesfile=routes
[handler]
message_rate=2500
message_hwm=25000
"""

SHIPPED_ZURL_CONF = """\
[General]
in_spec=ipc:///var/run/zurl/zurl-in
in_stream_spec=ipc:///var/run/zurl/zurl-in-stream
out_spec=ipc:///var/run/zurl/zurl-out
in_req_spec=ipc:///var/run/zurl/zurl-req
max_open_requests=2000
in_hwm=1000
out_hwm=1000
"""


def test_pushpin_config_is_the_shipped_one_with_this_runs_ports_and_files(tmp_path: Path) -> None:
    """Pushpin's configuration changes the shipped file's ports, directories,
    log level and connection limit, and the three settings that drop messages
    (the handler's rate limit and its queue, each connection's room for
    messages on their way out); the proxy reaches the origin through the run's
    zurl processes, and every request, WebSockets included (over HTTP), goes to
    the origin."""
    conf, routes = pushpin_origin.pushpin_config(SHIPPED_PUSHPIN_CONF, tmp_path, 9000, 100,
                                                 zurl_workers=2)
    lines = set(conf.splitlines())
    run = tmp_path / "run"
    assert {f"rundir={run}", "port_offset=100", "log_level=1", "client_maxconn=120000",
            "services=condure,pushpin-proxy,pushpin-handler", "client_buffer_size=262144",
            "message_rate=0", "message_hwm=1000000",
            f"zurl_out_specs=ipc://{run}/zurl0-in,ipc://{run}/zurl1-in",
            f"zurl_in_specs=ipc://{run}/zurl0-out,ipc://{run}/zurl1-out"} <= lines
    assert routes == "* 127.0.0.1:9000,over_http\n"
    with pytest.raises(ValueError, match="0 rundir settings"):
        pushpin_origin.pushpin_config("[runner]\n", tmp_path, 9000, 100)


def test_zurl_config_is_the_packaged_one_with_this_runs_sockets(tmp_path: Path) -> None:
    """Each zurl process has the packaged zurl.conf with sockets of its own in
    the run's directory and room for a request per client connection."""
    lines = set(pushpin_origin.zurl_config(SHIPPED_ZURL_CONF, tmp_path, 1).splitlines())
    run = tmp_path / "run"
    assert {f"in_spec=ipc://{run}/zurl1-in", f"in_stream_spec=ipc://{run}/zurl1-in-stream",
            f"out_spec=ipc://{run}/zurl1-out", "in_req_spec=", "max_open_requests=2000",
            "in_hwm=120000", "out_hwm=120000"} <= lines
    with pytest.raises(ValueError, match="0 in_spec settings"):
        pushpin_origin.zurl_config("[General]\n", tmp_path, 0)


def test_pushpin_origin_reads_websocket_over_http_events() -> None:
    """The origin reads WebSocket-over-HTTP bodies: OPEN, then TEXT events with
    their length in hex, in order; and publishes a message in every format."""
    body = b"OPEN\r\nTEXT 5\r\nhello\r\nTEXT 10\r\n" + b"x" * 16 + b"\r\nCLOSE\r\n"
    assert pushpin_origin.ws_events(body) == [
        ("OPEN", b""), ("TEXT", b"hello"), ("TEXT", b"x" * 16), ("CLOSE", b"")]
    item = pushpin_origin.grip_item("bench", '{"seq":1}')
    assert item == {"channel": "bench", "formats": {
        "http-stream": {"content": 'data: {"seq":1}\n\n'},
        "http-response": {"body": '{"seq":1}'}, "ws-message": {"content": '{"seq":1}'}}}


@needs_cc
def test_ceiling_server_fans_out_to_the_fanout_client() -> None:
    """The trivial C server (the generator's capacity check) passes the
    client's checks: every message to every subscriber, once, in order."""
    port = free_port()
    with subprocess.Popen([str(measure.c_client("ceiling")), str(port)]) as server:
        try:
            _until_listening(port)
            base = f"ws://127.0.0.1:{port}"
            proc, lines = _fanout(f"{base}/pub/bench", "20", "256", "16", "0.2", "0.5", "0.5",
                                  "0,50", dialect="raw", subs=f"{base}/sub/bench")
        finally:
            server.kill()
            server.wait(30 * UNIT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = lines[-1]["result"]
    assert isinstance(result, dict) and result["deliveries_per_s"] > 0
    assert (result["lost"], result["duplicates"], result["reordered"], result["undelivered"],
            result["mismatches"]) == (0, 0, 0, 0, 0)


@needs_node
def test_sse_client_reads_every_seq_across_chunk_boundaries() -> None:
    """The SSE client reads the number after every "seq": key, wherever the
    stream's chunks cut the key or the number."""
    script = """
import { readSeqs } from "./clients.mjs";
const marker = Buffer.from('"seq":');
const text = 'data: {"seq":12,"t":1}\\n\\ndata: {"seq":13,"t":2}\\n\\ndata: {"seq":1400,"p":"x"}\\n\\n';
const runs = [];
for (let size = 1; size <= text.length; size++) {
  const got = [];
  let carry = null;
  for (let at = 0; at < text.length; at += size) {
    const chunk = Buffer.from(text.slice(at, at + size));
    carry = readSeqs(carry ? Buffer.concat([carry, chunk]) : chunk, marker, (s) => got.push(s));
  }
  runs.push(got.join(","));
}
console.log(JSON.stringify([...new Set(runs)]));
"""
    proc = subprocess.run(["node", "--input-type=module", "-e", script], cwd=measure.LOADGEN,
                          capture_output=True, text=True, timeout=30 * UNIT, check=True)
    assert json.loads(proc.stdout) == ["12,13,1400"]


def test_tls_rows_pair_each_tls_server_with_its_plaintext_twin() -> None:
    """The TLS scenario runs the hub on memory over plaintext and over TLS, each
    variant on both; the summary gives the ratio TLS/plain of every figure both
    rows have, and none of a figure one row lacks."""
    scenario = bench.SCENARIOS["tls"]
    servers = scenario.servers()
    assert [(s.name, s.tls) for s in servers] == [
        ("hubbub (memory)", False), ("hubbub (memory, TLS)", True)]
    assert [v for v, _ in scenario.variants(bench.QUICK)] == ["ws fan-out N=20", "http publish"]
    results = [
        bench.CaseResult("tls", "http publish", "hubbub (memory)",
                         runs=[{"requests_per_s": 1000.0, "p99_ms": 4.0}]),
        bench.CaseResult("tls", "http publish", "hubbub (memory, TLS)",
                         runs=[{"requests_per_s": 800.0}]),
    ]
    table = bench.tls_table(results)
    assert "| http publish | requests/s | 1,000     | 800 | 0.80      |" in table
    assert "p99" not in table
    assert "TLS against plaintext" in bench.summary(results)
    assert bench.tls_table(results[:1]) == ""


@needs_node
@needs_cc
@pytest.mark.timeout(180 * UNIT)
async def test_tls_scenario_runs_briefly_and_reports_both_rows() -> None:
    """A short run of the TLS scenario serves wss:// and https:// with a throwaway
    certificate the client verifies, and measures each door over TLS and over
    plaintext with the same client: nothing lost, nothing refused."""
    size = replace(bench.QUICK, tls_n=4, warmup=0.2, seconds=0.5)
    async with asyncio.timeout(170 * UNIT):
        results = await bench.run_suite(["tls"], size, stream=io.StringIO())
    assert [(c.variant, c.server, c.errors) for c in results] == [
        ("ws fan-out N=4", "hubbub (memory)", []), ("ws fan-out N=4", "hubbub (memory, TLS)", []),
        ("http publish", "hubbub (memory)", []), ("http publish", "hubbub (memory, TLS)", [])]
    for case in results:
        (run,) = case.runs
        key = "deliveries_per_s" if case.variant.startswith("ws") else "requests_per_s"
        assert run[key] > 0 and run["server_cpu"] > 0
        assert run.get("lost", 0) == 0 and run.get("errors", 0) == 0
    ratios = {(variant, metric.key) for variant, _, metric, _, _ in bench.tls.ratios(results)}
    assert {("ws fan-out N=4", "deliveries_per_s"), ("http publish", "requests_per_s")} <= ratios
