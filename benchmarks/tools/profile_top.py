"""Summarize a py-spy speedscope profile: where the sampled process spent its time.

    python benchmarks/tools/profile_top.py PROFILE.speedscope.json [--top 25] [--match hubbub/]

Prints the functions with the most samples on top of the stack (self time)
and the most samples anywhere in the stack (total time), as shares of all
samples. ``--match`` keeps only frames whose file contains the text in the
total-time list (say ``hubbub/`` for the hub's own code).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def summarize(path: Path, top: int, match: str | None) -> str:
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    # Lines of one function count as one function.
    functions = [f"{f['name']} ({f.get('file', '?')})" for f in frames]
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    sampled = 0.0
    for profile in doc["profiles"]:
        for stack, weight in zip(profile["samples"], profile["weights"], strict=True):
            sampled += weight
            if stack:
                own[functions[stack[-1]]] += weight
            for function in {functions[f] for f in stack}:
                total[function] += weight
    lines = [f"{path.name}: {sampled:.1f} s sampled", "", "self time:"]
    lines += [f"  {100 * n / sampled:5.1f}%  {_short(f)}" for f, n in own.most_common(top)]
    lines += ["", "total time" + (f" (functions in files matching {match!r})" if match else "") + ":"]
    kept = [(f, n) for f, n in total.most_common() if match is None or match in f]
    lines += [f"  {100 * n / sampled:5.1f}%  {_short(f)}" for f, n in kept[:top]]
    return "\n".join(lines)


def _short(function: str) -> str:
    """``name (.../site-packages/pkg/mod.py)`` as ``name (pkg/mod.py)``."""
    name, _, file = function.partition(" (")
    return f"{name} ({'/'.join(Path(file.rstrip(')')).parts[-2:])})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", help="total time: only frames whose file contains this")
    args = parser.parse_args()
    print(summarize(args.profile, args.top, args.match))


if __name__ == "__main__":
    main()
