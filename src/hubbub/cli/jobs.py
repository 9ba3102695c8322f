"""``hubbub upload``, ``hubbub worker`` and ``hubbub job``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..client import AsyncClient
from ..protocol.errors import UsageError
from .common import (
    EXIT_ERROR,
    add_client_options,
    complain,
    hub_client,
    positive_int,
    print_json,
    seconds,
)


def add_parsers(commands: Any) -> None:
    """Add ``upload``, ``worker`` and ``job`` to the ``hubbub`` command's subparsers."""
    up = commands.add_parser(
        "upload", help="upload a file (resumable, tus)",
        description="Upload a file to the hub over tus, with a progress bar. An "
                    "interrupted upload of the same unchanged file resumes on the next run.",
    )
    up.add_argument("file", metavar="FILE", type=Path)
    up.add_argument("--job", metavar="QUEUE", help="start a job on this queue once uploaded")
    up.add_argument("--chunk-size", type=positive_int, default=8 << 20, metavar="BYTES",
                    help="bytes per request (%(default)s)")
    up.add_argument("--state", type=Path, metavar="FILE",
                    help="where unfinished uploads are remembered "
                         "(default: ~/.local/state/hubbub/uploads.json)")
    up.add_argument("--timeout", type=seconds, default=60.0, metavar="SECONDS",
                    help="give up after this long without progress (%(default)s)")
    up.add_argument("--follow", action="store_true",
                    help="with --job: follow the job until it finished")
    work = commands.add_parser(
        "worker", help="run a Python function for each job of a queue",
        description="Take the jobs of QUEUE one at a time and call FUNCTION(data, progress) "
                    "for each: its return value is the job's result; an exception fails the "
                    "job (retried while attempts are left); progress(percent, message) "
                    "reports progress. Prints each job as it ended, one JSON line each.",
    )
    work.add_argument("queue", metavar="QUEUE")
    work.add_argument("--run", required=True, metavar="MODULE:FUNCTION",
                      help="the function to call (the current directory is importable)")
    work.add_argument("--lease", type=seconds, metavar="SECONDS",
                      help="lease of each job; heartbeats keep it (default: the hub's)")
    work.add_argument("--count", type=positive_int, metavar="N",
                      help="exit after N jobs (default: run forever)")
    job = commands.add_parser("job", help="show or follow a job",
                              description="Print a job as one JSON line.")
    job.add_argument("id", metavar="ID")
    job.add_argument("--follow", action="store_true",
                     help="print each state, from the first, until the final one")
    for command in (up, work, job):
        add_client_options(command)


async def run_upload(args: argparse.Namespace) -> int:
    from .progress import UploadBar

    if args.follow and args.job is None:
        raise UsageError("--follow needs --job")
    bar = UploadBar(args.file.name, sys.stderr)
    async with hub_client(args, retry_for=args.timeout) as client:
        try:
            result = await client.upload(args.file, job=args.job, chunk_size=args.chunk_size,
                                         on_progress=bar.update, state_file=args.state)
        finally:
            bar.close()
        if args.job is None:
            print_json(result)
            return 0
        result["job"] = await client.jobs.for_upload(result["id"])
        print_json(result)
        if result["job"] is None:
            complain("the upload started no job; see the hub's log")
            return EXIT_ERROR
        if args.follow:
            return await _follow(client, result["job"], quiet=True)
    return 0


async def _follow(client: AsyncClient, job_id: str, *, quiet: bool = False) -> int:
    """Follow a job: a bar on stderr (``quiet``) or each state on stdout."""
    from .progress import JobBar

    bar = JobBar(sys.stderr)
    final: dict[str, Any] = {}
    try:
        async for state in client.jobs.follow(job_id):
            final = state
            if quiet:
                bar.update(state)
            else:
                print_json(state)
    finally:
        bar.close()
    if quiet:
        print_json(final)
    if final.get("state") == "failed":
        complain(f"job {job_id} failed: {final.get('error')}")
        return EXIT_ERROR
    return 0


async def run_worker(args: argparse.Namespace) -> int:
    from ..client.worker import load_handler

    handler = load_handler(args.run)
    async with hub_client(args) as client:
        await client.jobs.work(args.queue, handler, count=args.count, lease=args.lease,
                               on_done=print_json)
    return 0


async def run_job(args: argparse.Namespace) -> int:
    async with hub_client(args) as client:
        if args.follow:
            return await _follow(client, args.id)
        print_json(await client.jobs.get(args.id))
    return 0


