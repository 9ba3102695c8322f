"""CPU and memory of processes, and of the whole machine, read from ``/proc``."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Metrics = dict[str, float]

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Sample:
    """CPU seconds and resident memory of some processes at one instant.

    ``busy`` is the CPU time of the whole machine (every core, every process,
    the kernel's own work included), so that what other processes took
    during a measurement is seen and reported. ``pss_kb`` is each process's
    proportional share of memory (its pages shared with others divided
    among them, so the processes of one server add up without counting
    shared pages twice); ``socket_kb`` is the kernel's memory for TCP
    sockets, the whole machine's (:func:`_socket_kb`).
    """

    at: float
    cpu: Mapping[int, float]
    rss_kb: Mapping[int, int]
    busy: float
    pss_kb: Mapping[int, int] = field(default_factory=dict)
    socket_kb: int = 0


def _machine_busy() -> float:
    # /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ...
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def _kb(text: str, key: str) -> int:
    """The ``key:  N kB`` line of a ``/proc`` file, in kB (0 when absent)."""
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith(key)), 0)


#: The kernel's objects of a TCP socket (/proc/slabinfo, readable by root only).
SOCKET_SLABS = ("TCP", "sock_inode_cache")


def _socket_kb() -> int:
    """The kernel's memory for TCP sockets: their buffers (``/proc/net/sockstat``),
    plus, where readable, the socket objects themselves (SOCKET_SLABS)."""
    kb = 0
    # /proc/net/sockstat: "TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 1" (mem in pages)
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            words = line.split()
            kb += int(words[words.index("mem") + 1]) * _PAGE_KB
    # /proc/slabinfo: "name active_objs num_objs objsize objperslab pagesperslab : ..."
    with contextlib.suppress(OSError):
        for line in Path("/proc/slabinfo").read_text().splitlines():
            words = line.split()
            if words and words[0] in SOCKET_SLABS:
                kb += int(words[2]) * int(words[3]) // 1024
    return kb


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def sample(pids: Sequence[int]) -> Sample:
    """Read ``/proc`` for ``pids`` (a process that is gone reads as zero)."""
    at, cpu, rss, pss, busy = time.monotonic(), {}, {}, {}, _machine_busy()
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            cpu[pid], rss[pid], pss[pid] = 0.0, 0, 0
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
        rss[pid] = _kb(status, "VmRSS:")
        pss[pid] = _kb(rollup, "Pss:")
    return Sample(at, cpu, rss, busy, pss, _socket_kb())


def descendants(pids: Sequence[int]) -> list[int]:
    """Every process below ``pids`` (children, their children, ...)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            parent[int(stat.parent.name)] = int(text[text.rindex(")") + 2:].split()[1])
    found: list[int] = []
    frontier = set(pids)
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier}
        found += sorted(frontier)
    return found


def cpu_share(first: Sample, last: Sample, pid: int) -> float:
    """Cores ``pid`` used on average between two samples (1.0 = one core)."""
    return (last.cpu[pid] - first.cpu[pid]) / max(1e-9, last.at - first.at)


def cpu_shares(first: Sample, last: Sample, server: Sequence[int], loadgen: float,
               store: int | None = None) -> Metrics:
    """The server's (every process of it), the load generator's (``loadgen``
    cores) and everything else's CPU; the ``store`` process's alone besides."""
    ours = sum(cpu_share(first, last, pid) for pid in server)
    machine = (last.busy - first.busy) / max(1e-9, last.at - first.at)
    shares = {"server_cpu": ours, "loadgen_cpu": loadgen,
              "other_cpu": max(0.0, machine - ours - loadgen)}
    if store is not None:
        shares["store_cpu"] = cpu_share(first, last, store)
    return shares
