#!/usr/bin/env python3
"""Records benchmark: `runs list --limit 50` and `runs show` on a store of many runs.

Creates a store with the binary (one real run, so the schema is current), fills it
with bench/fill-store.sql, then prints the median wall time of each command (the
whole process, start-up included) over several runs.

Usage: bench/records.py [--runner PATH] [--runs N] [--repeat K]
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def median_ms(argv, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runner = os.path.abspath(args.runner)

    with tempfile.TemporaryDirectory(prefix="runner-bench-") as root:
        state = os.path.join(root, "state")
        tasks = os.path.join(root, "tasks.d")
        os.mkdir(tasks, 0o755)
        with open(os.path.join(tasks, "10-hello"), "w") as f:
            f.write("#!/bin/sh\necho hello\n")
        os.chmod(os.path.join(tasks, "10-hello"), 0o755)
        subprocess.run([runner, "-q", "--state-dir", state, tasks], check=True, stdout=subprocess.DEVNULL)

        with open(os.path.join(HERE, "fill-store.sql")) as f:
            script = f.read().replace("100000", str(args.runs))
        db = sqlite3.connect(os.path.join(state, "runner.sqlite3"))
        start = time.perf_counter()
        db.executescript(script)
        db.close()
        fill = time.perf_counter() - start

        newest = subprocess.run([runner, "--state-dir", state, "runs", "list", "--limit", "1", "--format", "json"],
                                check=True, capture_output=True, text=True).stdout
        run_id = newest.split('"run_id": "')[1][:36]
        oldest_id = "%08x" % (1 * 2654435761 % 4294967296)
        base = [runner, "--state-dir", state, "runs"]
        figures = {
            "runs list --limit 50": median_ms(base + ["list", "--limit", "50"], args.repeat),
            "runs list --limit 50 --job job-1": median_ms(base + ["list", "--limit", "50", "--job", "job-1"], args.repeat),
            "runs show (newest, full id)": median_ms(base + ["show", run_id], args.repeat),
            "runs show (oldest, 8-char prefix)": median_ms(base + ["show", oldest_id], args.repeat),
            "runs show --format json": median_ms(base + ["show", oldest_id, "--format", "json"], args.repeat),
        }
        print(f"store of {args.runs} runs (3 tasks each), filled in {fill:.1f}s; median of {args.repeat} runs:")
        for name, ms in figures.items():
            print(f"  {name:<36} {ms:7.1f} ms")


if __name__ == "__main__":
    main()
