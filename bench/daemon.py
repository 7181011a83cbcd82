#!/usr/bin/env python3
"""Daemon benchmark: tick latency under load, idle cost, trigger pickup.

1. N jobs (default 200) scheduled every second for S seconds (default 60): start
   latency (start_time - schedule_time) p50/p99/max, ticks run versus ticks due,
   daemon CPU seconds and peak RSS.
2. 10,000 hourly jobs (all due at a minute outside the window) for S seconds: daemon
   CPU seconds and RSS while idle.
3. Trigger-file pickup latency over 20 triggers (file renamed into place -> run start).

Usage: bench/daemon.py [--runner PATH] [--jobs N] [--seconds S] [--idle-jobs N]
"""

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_mb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


class Daemon:
    def __init__(self, runner, root, config):
        self.root = root
        self.state = os.path.join(root, "state")
        path = os.path.join(root, "runner.json")
        with open(path, "w") as f:
            json.dump(config, f)
        self.log = open(os.path.join(root, "daemon.log"), "w")
        # Ready when the daemon says so, as it tells systemd: READY=1 on NOTIFY_SOCKET.
        notify_path = os.path.join(root, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(120)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        self.proc = subprocess.Popen([runner, "-q", "--state-dir", self.state, "daemon", "--config", path],
                                     stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        try:
            while b"READY=1" not in notify.recv(256):
                pass
        except socket.timeout:
            raise SystemExit("daemon did not start; see " + self.log.name)
        finally:
            notify.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)

    def runs(self, where=""):
        db = sqlite3.connect(os.path.join(self.state, "runner.sqlite3"))
        rows = db.execute(f"SELECT job_name, schedule_time, start_time FROM runs {where}").fetchall()
        db.close()
        return rows


def every_second(runner, jobs, seconds):
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as root:
        config = {"jobs": {f"job{i:03d}": {"command": ["true"], "schedule": "* * * * * *"} for i in range(jobs)}}
        d = Daemon(runner, root, config)
        pid = d.proc.pid
        cpu0, t0 = cpu_seconds(pid), time.time()
        time.sleep(seconds)
        cpu1, t1 = cpu_seconds(pid), time.time()
        hwm = rss_mb(pid, "VmHWM")
        d.stop()
        rows = d.runs()
        window = [r for r in rows if t0 <= r[1] <= t1 - 1.0]
        latencies = [(start - sched) * 1000 for _, sched, start in window]
        by_job = {}
        for job, sched, _ in rows:
            by_job.setdefault(job, []).append(sched)
        gaps = 0
        for times in by_job.values():
            times.sort()
            gaps += sum(1 for a, b in zip(times, times[1:]) if b - a > 1.5)
        due = jobs * int(t1 - 1.0 - t0)
        print(f"{jobs} jobs every second for {seconds}s:")
        print(f"  ticks run in the window {len(window)} (about {due} due), ticks skipped between runs {gaps}")
        print(f"  start latency p50 {percentile(latencies, 50):.2f} ms, p99 {percentile(latencies, 99):.2f} ms, "
              f"max {max(latencies):.2f} ms")
        print(f"  daemon CPU {cpu1 - cpu0:.2f} s over {t1 - t0:.0f} s, peak RSS {hwm:.1f} MB")


def idle(runner, jobs, seconds):
    minute = (time.gmtime().tm_min + 30) % 60
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as root:
        config = {
            "jobs": {
                f"hourly{i:05d}": {"command": ["true"], "schedule": f"{minute} * * * *", "schedule_timezone": "UTC"}
                for i in range(jobs)
            }
        }
        d = Daemon(runner, root, config)
        pid = d.proc.pid
        startup = cpu_seconds(pid)
        cpu0 = startup
        time.sleep(seconds)
        cpu1 = cpu_seconds(pid)
        rss = rss_mb(pid, "VmRSS")
        d.stop()
        print(f"{jobs} hourly jobs, none due in the window, {seconds}s idle:")
        print(f"  start-up CPU {startup:.2f} s; idle CPU {cpu1 - cpu0:.3f} s ({(cpu1 - cpu0) / seconds * 60:.3f} s per minute); "
              f"RSS {rss:.1f} MB; runs {len(d.runs())}")


def triggers(runner, count):
    with tempfile.TemporaryDirectory(prefix="runner-bench-") as root:
        d = Daemon(runner, root, {"jobs": {"manual": {"command": ["true"]}}})
        directory = os.path.join(d.state, "trigger", "manual")
        written = []
        for i in range(count):
            tmp = os.path.join(directory, f".t{i}")
            with open(tmp, "w") as f:
                f.write("{}")
            written.append(time.time())
            os.rename(tmp, os.path.join(directory, "trigger.json"))
            deadline = time.time() + 10
            while len(d.runs()) < i + 1 and time.time() < deadline:
                time.sleep(0.02)
        d.stop()
        starts = sorted(r[2] for r in d.runs())
        pickups = [(s - w) * 1000 for s, w in zip(starts, written)]
        print(f"trigger pickup over {count} triggers (file renamed into place -> run started):")
        print(f"  p50 {percentile(pickups, 50):.2f} ms, p99 {percentile(pickups, 99):.2f} ms, max {max(pickups):.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--idle-jobs", type=int, default=10_000)
    args = parser.parse_args()
    runner = os.path.abspath(args.runner)
    every_second(runner, args.jobs, args.seconds)
    idle(runner, args.idle_jobs, args.seconds)
    triggers(runner, 20)


if __name__ == "__main__":
    main()
