#!/usr/bin/env python3
"""Events benchmark: wake-up latency of a waiting task, and the cost of waiting.

1. Latency over N firings (default 100): a chain of N tasks, task i waiting for event
   e<i> (parallel = 1, so one waits at a time). For each, once the store shows the task
   `waiting`, `runner fire e<i>` runs; the figure is from the moment that command has
   returned to the moment the task's process starts (its first command, `date`, writes
   the time: the fork/exec of `date` is included, so the figure is an upper bound).
   Prints median, p99 and max. Goal: p99 under 20 ms (the contract's bound is 100 ms).
   The task may start before `fire` has exited (the wake-up follows the commit, not the
   process's exit), so single figures can be negative; the time from starting `fire`
   to the task starting is printed too.
2. CPU used by a chain that waits S seconds (default 60) for an event: on-CPU time of
   the runner process (all its threads) over the wait. Goal: under 10 ms.
3. The same for the daemon with one job waiting (`after`) for an event.

Usage: bench/events.py [--runner PATH] [--firings N] [--seconds S]
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import tempfile
import time


def cpu_seconds(pid):
    """On-CPU time of every thread of `pid`, in seconds, from schedstat (nanoseconds),
    which is far finer than the clock ticks of /proc/PID/stat."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


def percentile(values, p):
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def status_of(db, task):
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute(
                "SELECT status FROM task_instances WHERE name = ? ORDER BY id DESC LIMIT 1",
                (task,),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def wait_until(check, limit=60.0, step=0.002):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(step)
    return False


def chain_dir(root, tasks, ini):
    taskdir = os.path.join(root, "tasks.d")
    os.makedirs(taskdir)
    for name, body in tasks:
        path = os.path.join(taskdir, f"{name}.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\n" + body + "\n")
        os.chmod(path, 0o755)
    config = os.path.join(root, "runner.ini")
    with open(config, "w") as f:
        f.write(ini)
    return taskdir, config


def latency(runner, firings):
    with tempfile.TemporaryDirectory(prefix="bench-events-") as root:
        out = os.path.join(root, "out")
        os.makedirs(out)
        tasks = [(f"{i:03d}-t{i}", f"date +%s.%N > {out}/{i}") for i in range(firings)]
        ini = "[runner]\nsession = bench\n" + "".join(
            f"[t{i}]\nafter = e{i}\n" for i in range(firings)
        )
        taskdir, config = chain_dir(root, tasks, ini)
        state = os.path.join(root, "state")
        db = os.path.join(state, "runner.sqlite3")
        env = dict(os.environ, RUNNER_SESSION="bench")
        chain = subprocess.Popen(
            [runner, "-q", "--state-dir", state, "-c", config, taskdir],
            stdout=subprocess.DEVNULL,
            env=env,
        )
        results, fire_times, from_start = [], [], []
        for i in range(firings):
            if not wait_until(lambda: status_of(db, f"t{i}") == "waiting"):
                raise SystemExit(f"task t{i} never waited")
            t0 = time.time()
            subprocess.run(
                [runner, "-q", "--state-dir", state, "fire", f"e{i}", "--session", "bench"],
                check=True,
                env=env,
            )
            returned = time.time()
            fire_times.append(returned - t0)
            path = os.path.join(out, str(i))
            if not wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0):
                raise SystemExit(f"task t{i} never started")
            with open(path) as f:
                started = float(f.read().strip())
            results.append(started - returned)
            from_start.append(started - t0)
        chain.wait(timeout=60)
        ms = [r * 1000 for r in results]
        print(f"wake-up latency over {firings} firings (fire returned -> task started):")
        print(
            f"  median {statistics.median(ms):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
            f"max {max(ms):.2f} ms (goal: p99 < 20 ms)"
        )
        whole = [f * 1000 for f in from_start]
        print(
            f"  from starting runner fire to the task starting: median "
            f"{statistics.median(whole):.2f} ms, p99 {percentile(whole, 99):.2f} ms"
        )
        fire_ms = [f * 1000 for f in fire_times]
        print(
            f"  runner fire itself: median {statistics.median(fire_ms):.2f} ms, "
            f"p99 {percentile(fire_ms, 99):.2f} ms"
        )


def idle_cost(runner, seconds):
    with tempfile.TemporaryDirectory(prefix="bench-events-") as root:
        out = os.path.join(root, "out")
        taskdir, config = chain_dir(
            root,
            [("10-wait", f"date +%s.%N > {out}")],
            "[runner]\nsession = bench\n[wait]\nafter = go\n",
        )
        state = os.path.join(root, "state")
        db = os.path.join(state, "runner.sqlite3")
        chain = subprocess.Popen(
            [runner, "-q", "--state-dir", state, "-c", config, taskdir],
            stdout=subprocess.DEVNULL,
        )
        if not wait_until(lambda: status_of(db, "wait") == "waiting"):
            raise SystemExit("the task never waited")
        before = cpu_seconds(chain.pid)
        time.sleep(seconds)
        after = cpu_seconds(chain.pid)
        subprocess.run(
            [runner, "-q", "--state-dir", state, "fire", "go", "--session", "bench"],
            check=True,
        )
        chain.wait(timeout=60)
        print(
            f"CPU of a chain waiting {seconds:.0f} s for an event: "
            f"{(after - before) * 1000:.3f} ms (all threads, from schedstat; goal < 10 ms)"
        )


def daemon_idle_cost(runner, seconds):
    with tempfile.TemporaryDirectory(prefix="bench-events-") as root:
        config = os.path.join(root, "runner.json")
        with open(config, "w") as f:
            f.write('{"jobs": {"waits": {"command": ["true"], "after": ["go"]}}}')
        state = os.path.join(root, "state")
        log = open(os.path.join(root, "daemon.log"), "w")
        daemon = subprocess.Popen(
            [runner, "--state-dir", state, "daemon", "--config", config],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=dict(os.environ, RUNNER_SESSION="bench"),
        )
        def started():
            with open(os.path.join(root, "daemon.log")) as f:
                return "daemon started" in f.read()

        if not wait_until(started):
            raise SystemExit("the daemon did not start")
        time.sleep(1)
        before = cpu_seconds(daemon.pid)
        time.sleep(seconds)
        after = cpu_seconds(daemon.pid)
        daemon.terminate()
        daemon.wait(timeout=60)
        print(
            f"CPU of the daemon with a job waiting {seconds:.0f} s for an event: "
            f"{(after - before) * 1000:.3f} ms"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument(
        "--runner", default=os.path.join(here, "..", "target", "release", "runner")
    )
    parser.add_argument("--firings", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    runner = os.path.abspath(args.runner)
    latency(runner, args.firings)
    idle_cost(runner, args.seconds)
    daemon_idle_cost(runner, args.seconds)


if __name__ == "__main__":
    main()
