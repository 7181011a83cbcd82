#!/usr/bin/env python3
"""Daemon counts per run: what runner's daemon asks of the kernel for each run it starts.

CPU time per run moves by a third between two invocations on a shared two-core machine;
the number of system calls, context switches and WAL writes per run hardly moves, so a
change to the daemon's store or loop is judged here first. Runs the daemon on N jobs of
`true` every second, waits until it is in its stride, counts with `perf stat` over a few
seconds (every thread of the daemon, not its runs' processes) and divides by the runs
recorded meanwhile. With `--baseline PATH`, another runner binary runs in turn, A B A B,
so that both see the same machine state.

Needs `perf` (linux-perf) and its syscall tracepoints (root); says so and exits 0 without
them.

Usage: bench/daemon_counts.py [--runner PATH] [--baseline PATH] [--jobs N] [--seconds S]
"""

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

EVENTS = [
    "syscalls:sys_enter_pwrite64",
    "syscalls:sys_enter_pread64",
    "syscalls:sys_enter_futex",
    "syscalls:sys_enter_openat",
    "syscalls:sys_enter_fsync",
    "context-switches",
    "task-clock",
]


def runs(db):
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("select count(*) from runs").fetchone()[0]
    except sqlite3.Error:
        return 0


def measure(program, jobs, seconds, tmp):
    root = tempfile.mkdtemp(prefix="runner-counts-", dir=tmp)
    conf = os.path.join(root, "dsari.json")
    data = os.path.join(root, "data")
    config = {f"job{i:04d}": {"command": ["true"], "schedule": "* * * * * *"} for i in range(jobs)}
    with open(conf, "w") as f:
        json.dump({"data_dir": data, "jobs": config}, f)
    proc = subprocess.Popen([program, "-q", "daemon", "--config", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Past its start and its store's first growth.
        time.sleep(6)
        db = os.path.join(data, "dsari.sqlite3")
        before = runs(db)
        stat = subprocess.run(["perf", "stat", "-x", ",", "-e", ",".join(EVENTS), "-p", str(proc.pid),
                               "--", "sleep", str(seconds)], capture_output=True, text=True)
        ran = runs(db) - before
    finally:
        proc.terminate()
        proc.wait()
    counts = {}
    for line in stat.stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in EVENTS:
            try:
                counts[fields[2]] = float(fields[0])
            except ValueError:
                pass
    return ran, counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--baseline", help="another runner binary, measured in turn")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tmp", default=None, help="where the temporary directories go")
    args = parser.parse_args()
    if shutil.which("perf") is None:
        print("SKIPPED: perf is not installed (apt-get install linux-perf)")
        return
    probe = subprocess.run(["perf", "stat", "-e", EVENTS[0], "--", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"SKIPPED: perf cannot count syscall tracepoints here: {probe.stderr.strip()[:200]}")
        return
    binaries = [("runner", os.path.abspath(args.runner))]
    if args.baseline:
        binaries.append(("baseline", os.path.abspath(args.baseline)))
    tmp = tempfile.mkdtemp(prefix="runner-counts-") if args.tmp is None else args.tmp
    os.makedirs(tmp, exist_ok=True)
    print(f"{args.jobs} jobs every second, counted over {args.seconds}s, {args.rounds} round(s); per run:")
    names = [e.split(":")[-1].replace("sys_enter_", "") for e in EVENTS]
    print("  " + f"{'':10}" + "".join(f"{n:>17}" for n in names))
    for _ in range(args.rounds):
        for label, program in binaries:
            ran, counts = measure(program, args.jobs, args.seconds, tmp)
            if ran <= 0:
                print(f"  {label:10} recorded no runs; see the daemon with `runner daemon` by hand")
                continue
            cells = "".join(f"{counts.get(e, float('nan')) / ran:>17.3f}" for e in EVENTS)
            print(f"  {label:10}{cells}   ({ran} runs; task-clock in ms)")
    print(f"temporary directories left in {tmp} (deleting many run directories slows the next benchmark)")


if __name__ == "__main__":
    sys.exit(main())
