#!/usr/bin/env python3
"""Soak test of the daemon (not in CI): many jobs for a long while, with random failures,
timeouts and trigger files; prints runs recorded against runs expected, start latency,
and the daemon's RSS and open file descriptors at the start and at the end (they should
not grow).

The jobs (default 200): a tenth are chain jobs (a task directory of two tasks), the rest
command jobs. Scheduled jobs run every 10 or 30 seconds; some jobs only run on triggers,
which the script writes at random. Each run fails (exit 1) about 8% of the time and
overruns its max_execution about 2% of the time (the daemon then stops it).

Usage: bench/soak.py [--runner PATH] [--jobs N] [--minutes M] [--seed S]
"""

import argparse
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time

# A command job's body: random outcome from the run's own randomness.
BODY = r"""
r=$(od -An -N1 -tu1 /dev/urandom | tr -d ' ')
if [ "$r" -lt 20 ]; then exit 1; fi
if [ "$r" -lt 25 ]; then sleep 30; fi
sleep 0.$((r % 4))
"""


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def due_ticks(period, t0, t1):
    """Ticks of `* * * * * */period` (seconds last) strictly inside (t0, t1]."""
    first = int(t0 // period + 1) * period
    return max(0, int((t1 - first) // period) + 1) if first <= t1 else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    runner = os.path.abspath(args.runner)
    print(f"soak: {args.jobs} jobs for {args.minutes} min, seed {seed}, runner {runner}")

    with tempfile.TemporaryDirectory(prefix="runner-soak-") as root:
        state = os.path.join(root, "state")
        taskdir = os.path.join(root, "tasks.d")
        os.mkdir(taskdir)
        for name, body in [("10-a.sh", "true"), ("20-b.sh", BODY)]:
            path = os.path.join(taskdir, name)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + body + "\n")
            os.chmod(path, 0o755)
        ini = os.path.join(root, "chain.ini")
        with open(ini, "w") as f:
            f.write("[runner]\nmax_tries = 1\nmax_time = 5\nkill_grace = 1\n")

        jobs, periods, triggered = {}, {}, []
        for i in range(args.jobs):
            name = f"job{i:03d}"
            if i % 10 == 0:
                job = {"taskdir": taskdir, "config": ini}
            else:
                job = {"command": ["/bin/sh", "-c", BODY]}
            job["max_execution"] = 5
            job["max_execution_grace"] = 1
            kind = i % 10
            if kind < 6:
                periods[name] = 10
            elif kind < 9:
                periods[name] = 30
            else:
                triggered.append(name)
                jobs[name] = job
                continue
            job["schedule"] = f"* * * * * */{periods[name]}"
            jobs[name] = job
        config = os.path.join(root, "runner.json")
        with open(config, "w") as f:
            json.dump({"jobs": jobs}, f)

        notify_path = os.path.join(root, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(120)
        log = open(os.path.join(root, "daemon.log"), "w")
        proc = subprocess.Popen(
            [runner, "-q", "--state-dir", state, "daemon", "--config", config],
            stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, NOTIFY_SOCKET=notify_path))
        try:
            while b"READY=1" not in notify.recv(256):
                pass
        finally:
            notify.close()
        t0 = time.time()
        # A little warm-up before the first reading, so start-up allocations do not count
        # as growth.
        time.sleep(15)
        rss0, fd0 = rss_kb(proc.pid), fds(proc.pid)
        end = t0 + args.minutes * 60
        written = 0
        while time.time() < end:
            time.sleep(rng.uniform(0.2, 1.8))
            job = rng.choice(triggered)
            directory = os.path.join(state, "trigger", job)
            target = os.path.join(directory, "trigger.json")
            if os.path.exists(target):
                continue  # the last one is not consumed yet: one trigger file per job
            tmp = os.path.join(directory, f".soak{written}")
            with open(tmp, "w") as f:
                json.dump({"type": "soak", "environment": {"N": written}}, f)
            os.rename(tmp, target)
            written += 1
        t1 = time.time()
        rss1, fd1 = rss_kb(proc.pid), fds(proc.pid)
        # Let what was due in the window finish (max_execution + grace), then stop.
        time.sleep(8)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=300)

        db = sqlite3.connect(os.path.join(state, "runner.sqlite3"))
        rows = db.execute(
            "SELECT job_name, trigger_type, schedule_time, start_time, exit_code FROM runs").fetchall()
        running = db.execute("SELECT count(*) FROM runs_running").fetchone()[0]
        statuses = dict(db.execute(
            "SELECT coalesce(m.status, '?'), count(*) FROM runs r LEFT JOIN run_meta m USING (run_id) "
            "GROUP BY 1").fetchall())
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        db.close()

        scheduled = [r for r in rows if r[0] in periods and t0 < r[2] <= t1]
        expected = sum(due_ticks(p, t0, t1) for p in periods.values())
        from_triggers = [r for r in rows if r[1] == "soak"]
        latencies = [(start - sched) * 1000 for _, _, sched, start, _ in scheduled]
        print(f"window {t1 - t0:.0f} s; daemon exit code {code}; integrity_check {integrity}")
        print(f"scheduled runs recorded {len(scheduled)} of {expected} due "
              f"({len(scheduled) / max(expected, 1) * 100:.2f}%)")
        print(f"triggered runs recorded {len(from_triggers)} of {written} trigger files written")
        stopped = sum(1 for r in rows if r[4] is not None and r[4] >= 128)
        print(f"statuses {statuses}; ended by a signal (timeouts) {stopped}; still in runs_running {running}")
        if latencies:
            print(f"start latency p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
                  f"max {max(latencies):.1f} ms, mean {statistics.mean(latencies):.1f} ms")
        print(f"daemon RSS {rss0 / 1024:.1f} MB at start, {rss1 / 1024:.1f} MB at end; "
              f"open fds {fd0} at start, {fd1} at end (running runs hold pipes)")


if __name__ == "__main__":
    main()
