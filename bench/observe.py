#!/usr/bin/env python3
"""Observation benchmark: metrics and report on a store of 100,000 runs of 50 jobs.

Creates a store with the binary (one real run, so the schema is current), fills it with
bench/fill-store.sql spread over 50 jobs (3 task instances per run, one attempt each),
then measures, each as a whole process with its start-up:

  - `metrics --dump`                                    goal < 300 ms, peak RSS < 50 MB
  - a scrape of `metrics --listen` while a chain records  goal < 300 ms, RSS < 50 MB
    (the first scrape reads every attempt; later ones only the new attempts)
  - `report --out DIR` from scratch                     goal < 5 s,    RSS < 50 MB
  - `report --out DIR` after one new run                goal < 300 ms, RSS < 50 MB

Wall times are medians over --repeat tries; CPU is user+system time of the process,
which a busy machine (other builds) inflates less than wall time.

Usage: bench/observe.py [--runner PATH] [--runs N] [--jobs J] [--repeat K]
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(argv, **kwargs):
    """Runs argv; returns (wall seconds, cpu seconds, peak RSS in MB)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {status}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def median(samples):
    return tuple(statistics.median(s[i] for s in samples) for i in range(3))


def show(name, figures, goal_s):
    wall, cpu, rss = figures
    cpu = "       -" if cpu != cpu else f"{cpu * 1000:8.0f}"
    print(f"{name:<38} {wall * 1000:8.0f} ms wall  {cpu} ms cpu  "
          f"{rss:6.1f} MB peak RSS   (goal {goal_s * 1000:.0f} ms: x{wall / goal_s:.2f}, "
          f"RSS x{rss / 50:.2f})")


def task_dir(root, name, body):
    tasks = os.path.join(root, name)
    os.mkdir(tasks, 0o755)
    for i in (1, 2, 3):
        path = os.path.join(tasks, f"{i}0-step{i}")
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\n{body}\n")
        os.chmod(path, 0o755)
    return tasks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runner = os.path.abspath(args.runner)

    with tempfile.TemporaryDirectory(prefix="runner-bench-") as root:
        state = os.path.join(root, "state")
        tasks = task_dir(root, "tasks.d", "echo step")
        base = [runner, "-q", "--state-dir", state]
        subprocess.run(base + [tasks], check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(HERE, "fill-store.sql")) as f:
            script = f.read().replace("100000", str(args.runs)).replace(
                "(i % 4)", f"(i % {args.jobs})")
        db = sqlite3.connect(os.path.join(state, "runner.sqlite3"))
        db.executescript(script)
        db.close()
        print(f"store: {args.runs} runs of {args.jobs} jobs, 3 tasks each "
              f"({os.path.getsize(os.path.join(state, 'runner.sqlite3')) / 2**20:.0f} MiB)")

        dump = median([measure(base + ["metrics", "--dump"]) for _ in range(args.repeat)])
        show("metrics --dump", dump, 0.3)

        # A listener, and a chain recording runs over and over beside it.
        listener = subprocess.Popen(base + ["metrics", "--listen", "127.0.0.1:0"],
                                    stdout=subprocess.PIPE, text=True)
        line = listener.stdout.readline()
        url = line.strip().removeprefix("serving metrics at ")
        busy = task_dir(root, "busy.d", "echo busy; sleep 0.05")
        chain = subprocess.Popen(base + ["-n", "0", busy], stdout=subprocess.DEVNULL)
        try:
            time.sleep(1)
            start = time.perf_counter()
            with urllib.request.urlopen(url, timeout=60) as response:
                response.read()
            first = time.perf_counter() - start
            print(f"{'first scrape of --listen (reads all)':<38} {first * 1000:8.0f} ms wall")
            scrapes = []
            for _ in range(args.repeat):
                time.sleep(0.5)
                start = time.perf_counter()
                with urllib.request.urlopen(url, timeout=60) as response:
                    body = response.read()
                scrapes.append(time.perf_counter() - start)
            with open(f"/proc/{listener.pid}/status") as f:
                hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
            show("scrape of --listen beside a chain", (statistics.median(scrapes), float("nan"), hwm), 0.3)
            print(f"{'':38} ({len(body)} bytes per scrape; RSS is the listener's high-water mark)")
        finally:
            chain.terminate()
            chain.wait()
            listener.terminate()
            listener.wait()

        site = os.path.join(root, "site")
        scratch = []
        for _ in range(min(args.repeat, 3)):
            subprocess.run(["rm", "-rf", site], check=True)
            scratch.append(measure(base + ["report", "--out", site]))
        scratch = median(scratch)
        show("report --out from scratch", scratch, 5.0)
        pages = sum(len(files) for _, _, files in os.walk(site))
        print(f"{'':38} ({pages} files: index, {args.jobs} job pages, "
              f"the newest 100 runs of each job)")

        after = []
        for _ in range(args.repeat):
            subprocess.run(base + [tasks], check=True, stdout=subprocess.DEVNULL)
            after.append(measure(base + ["report", "--out", site]))
        show("report --out after one new run", median(after), 0.3)


if __name__ == "__main__":
    main()
