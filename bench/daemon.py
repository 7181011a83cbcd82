#!/usr/bin/env python3
"""Daemon benchmark: runner's daemon (and dsari's, when DSARI_SRC is set) on one config.

1. For each rate N in --jobs (default 200 and 1000): N jobs scheduled every second for
   S seconds (default 60). Per daemon: due runs in the window and runs started, ticks
   skipped between runs, start latency (start_time - schedule_time) p50/p99/max, the
   same measured from when each run's output.txt was made (a check of start_time that
   the daemon cannot bend), daemon CPU in all and per run, peak RSS.
2. 10,000 hourly jobs (due at a minute outside the window): wall time and CPU until the
   daemon is ready (runner: READY=1 on NOTIFY_SOCKET; dsari: its "Scheduler running"
   line), RSS, then CPU while idle for S seconds.
3. runner only: trigger-file pickup latency over 20 triggers (file renamed into place ->
   run start).

Both daemons get the identical configuration directory (`dsari.json`, with its own
`data_dir`). With DSARI_SRC=path (dsari's source; it needs croniter, python-dateutil
and PyYAML), dsari runs beside runner and a ratio row follows; without it the dsari
rows are skipped with a message. The machine may be shared: the load average is printed
with every figure, and ratios within one run are what to compare.

Where the daemons' data lives matters more than one would think: each run makes a
directory and a file, and on ext4 without a journal a directory full of recently
deleted inodes (a busy /tmp) makes each of those cost up to a millisecond of kernel
time. --tmp chooses the parent of the temporary directories (default: target/bench-tmp),
and --keep leaves them there: deleting tens of thousands of run directories makes a
benchmark started in the next minutes pay for it. Each runner row also gives the main
thread's CPU per run (scheduling and recording) and its wake-ups per run (voluntary
context switches: on a VM a sleep and a wake-up of the loop cost tens of microseconds);
the rest is mostly the runs' threads (directories, files, processes) and the checkpoint
thread. Two daemons of one build, one after the other in one invocation, measured up to
10% apart in CPU per run (either way round): compare two builds both ways round
(--runner A --baseline B, then B and A), and more than once.

Usage: bench/daemon.py [--runner PATH] [--baseline PATH] [--jobs N[,N...]] [--seconds S]
                       [--idle-jobs N] [--idle-seconds S] [--tmp DIR] [--keep]
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

TICK = os.sysconf("SC_CLK_TCK")

# The parent of every temporary directory; see --tmp.
TMP = None

# Temporary directories still to delete. They are all deleted at the end: ext4 without a
# journal passes over inodes deleted in the last minutes when it allocates new ones, so
# deleting one part's tens of thousands of run directories would slow the next part.
LEFT = []


@contextlib.contextmanager
def scratch():
    directory = tempfile.mkdtemp(prefix="runner-bench-", dir=TMP)
    LEFT.append(directory)
    yield directory


def cpu_seconds(pid, thread=None):
    """CPU of process `pid` (all its threads), or of one of its threads."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def sleeps(pid):
    """The voluntary context switches of the main thread of `pid`: each is a sleep and a
    wake-up of the daemon's loop."""
    with open(f"/proc/{pid}/task/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def rss_mb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def load():
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


class Daemon:
    """One daemon on a configuration directory of its own; `kind` is runner or dsari."""

    def __init__(self, label, program, root, jobs):
        kind = "dsari" if label == "dsari" else "runner"
        self.kind = kind
        self.root = root
        self.data = os.path.join(root, "data")
        conf = os.path.join(root, "conf")
        os.makedirs(conf)
        self.config = os.path.join(conf, "dsari.json")
        with open(self.config, "w") as f:
            json.dump({"data_dir": self.data, "jobs": jobs}, f)
        self.log_path = os.path.join(root, "daemon.log")
        self.log = open(self.log_path, "w")
        env = dict(os.environ)
        if kind == "runner":
            argv = [program, "-q", "daemon", "--config", self.config]
            # Ready when the daemon says so, as it tells systemd: READY=1 on NOTIFY_SOCKET.
            notify_path = os.path.join(root, "notify")
            notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            notify.bind(notify_path)
            notify.settimeout(300)
            env["NOTIFY_SOCKET"] = notify_path
        else:
            argv = [sys.executable, os.path.join(program, "dsari-daemon"), "-c", conf]
            env["PYTHONPATH"] = program
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log, env=env)
        try:
            if kind == "runner":
                try:
                    while b"READY=1" not in notify.recv(256):
                        pass
                except socket.timeout:
                    raise SystemExit("runner's daemon did not start; see " + self.log_path)
                finally:
                    notify.close()
            else:
                deadline = time.time() + 300
                while "Scheduler running" not in open(self.log_path).read():
                    if self.proc.poll() is not None or time.time() > deadline:
                        raise SystemExit("dsari's daemon did not start; see " + self.log_path)
                    time.sleep(0.005)
        except BaseException:
            self.proc.kill()
            raise
        self.ready_after = time.perf_counter() - self.started
        self.ready_cpu = cpu_seconds(self.proc.pid)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=300)

    def runs(self):
        for name in ("runner.sqlite3", "dsari.sqlite3"):
            path = os.path.join(self.data, name)
            if os.path.exists(path):
                db = sqlite3.connect(path)
                rows = db.execute("SELECT job_name, schedule_time, start_time, run_id FROM runs").fetchall()
                db.close()
                return rows
        return []


def peers(runner, baseline):
    """The daemons to measure: runner, another runner to compare with (--baseline), and
    dsari when DSARI_SRC names its source."""
    found = [("runner", runner)]
    if baseline:
        found.append(("baseline", baseline))
    source = os.environ.get("DSARI_SRC")
    if not source:
        print("  (dsari row skipped: set DSARI_SRC=path to dsari's source to run it beside runner)")
    elif not os.path.exists(os.path.join(source, "dsari-daemon")):
        print(f"  (dsari row skipped: {source}/dsari-daemon does not exist)")
    else:
        found.append(("dsari", os.path.abspath(source)))
    return found


def ratio_row(rows, keys):
    for other in ("baseline", "dsari"):
        if other in rows and "runner" in rows:
            parts = []
            for key, label in keys:
                a, b = rows[other][key], rows["runner"][key]
                parts.append(f"{label} {a / b:.1f}x" if b else f"{label} -")
            print(f"  {other} / runner: " + ", ".join(parts))


def every_second(daemons, jobs, seconds):
    print(f"{jobs} jobs every second for {seconds}s (started {time.strftime('%H:%M:%S', time.gmtime())} UTC, {load()}):")
    config = {f"job{i:04d}": {"command": ["true"], "schedule": "* * * * * *"} for i in range(jobs)}
    rows = {}
    for kind, program in daemons:
        with scratch() as root:
            d = Daemon(kind, program, root, config)
            pid = d.proc.pid
            cpu0, main0, sleeps0, t0 = cpu_seconds(pid), cpu_seconds(pid, pid), sleeps(pid), time.time()
            time.sleep(seconds)
            cpu1, main1, sleeps1, t1 = cpu_seconds(pid), cpu_seconds(pid, pid), sleeps(pid), time.time()
            hwm = rss_mb(pid, "VmHWM")
            end_load = load()
            d.stop()
            rows_db = d.runs()
            # Whole seconds inside the window, the last one with a second to start in.
            first, last = int(t0) + 1, int(t1) - 1
            window = [r for r in rows_db if first <= r[1] < last]
            made = made_latencies(d.data, window)
        latencies = [(start - sched) * 1000 for _, sched, start, _ in window]
        started = sum(1 for r in rows_db if t0 <= r[2] <= t1)
        by_job = {}
        for job, sched, _, _ in rows_db:
            by_job.setdefault(job, []).append(sched)
        gaps = 0
        for times in by_job.values():
            times = sorted(t for t in times if first <= t < last)
            gaps += sum(round(b - a) - 1 for a, b in zip(times, times[1:]) if b - a > 1.5)
        due = jobs * max(0, last - first)
        cpu = cpu1 - cpu0
        per_run = cpu / started * 1000 if started else float("nan")
        # The main thread schedules and records; the rest is mostly the runs' own threads
        # (directories, files, processes), whose cost the file system sets.
        main_per_run = (main1 - main0) / started * 1000 if started else float("nan")
        wakes_per_run = (sleeps1 - sleeps0) / started if started else float("nan")
        rows[kind] = {"p99": percentile(latencies, 99), "cpu": cpu, "per_run": per_run, "rss": hwm}
        print(f"  {kind:<8} due {due}, ran {len(window)}, ticks skipped {gaps}; "
              f"latency p50 {percentile(latencies, 50):.2f} ms, p99 {percentile(latencies, 99):.2f} ms, "
              f"max {max(latencies, default=float('nan')):.2f} ms; "
              f"output.txt made p50 {percentile(made, 50):.2f} ms, p99 {percentile(made, 99):.2f} ms; "
              f"CPU {cpu:.2f} s ({per_run:.3f} ms per run, main thread {main_per_run:.3f} "
              f"and {wakes_per_run:.2f} wake-ups); peak RSS {hwm:.1f} MB  [{end_load} at the end]")
    ratio_row(rows, [("p99", "p99"), ("cpu", "CPU"), ("per_run", "CPU per run"), ("rss", "RSS")])


def made_latencies(data, window):
    """When each run's output.txt was made, from its due time (ms): a check of the recorded
    start_time that the daemon cannot bend. runner makes the file on the run's thread
    just before it spawns the process, dsari in its forked child; with a job that writes
    nothing, the file's mtime is that moment (to the kernel's timestamp granularity, a
    clock tick at worst)."""
    made = []
    for job, sched, _, run_id in window:
        try:
            mtime = os.stat(os.path.join(data, "runs", job, run_id, "output.txt")).st_mtime_ns
        except OSError:
            continue
        made.append((mtime / 1e9 - sched) * 1000)
    return made


def idle(daemons, jobs, seconds):
    minute = (time.gmtime().tm_min + 30) % 60
    print(f"{jobs} hourly jobs, none due, {seconds}s idle (started {time.strftime('%H:%M:%S', time.gmtime())} UTC, {load()}):")
    config = {
        f"hourly{i:05d}": {"command": ["true"], "schedule": f"{minute} * * * *", "schedule_timezone": "UTC"}
        for i in range(jobs)
    }
    rows = {}
    for kind, program in daemons:
        with scratch() as root:
            d = Daemon(kind, program, root, config)
            pid = d.proc.pid
            ready_rss = rss_mb(pid, "VmRSS")
            cpu0 = cpu_seconds(pid)
            time.sleep(seconds)
            cpu1 = cpu_seconds(pid)
            rss = rss_mb(pid, "VmRSS")
            d.stop()
            runs = len(d.runs())
        rows[kind] = {"ready": d.ready_after, "cpu": d.ready_cpu, "rss": rss}
        print(f"  {kind:<8} ready after {d.ready_after:.3f} s ({d.ready_cpu:.2f} s CPU); RSS {ready_rss:.1f} MB at ready, "
              f"{rss:.1f} MB after; idle CPU {cpu1 - cpu0:.3f} s ({(cpu1 - cpu0) / seconds * 60:.3f} s per minute); "
              f"runs {runs}")
    ratio_row(rows, [("ready", "time to ready"), ("cpu", "CPU to ready"), ("rss", "RSS")])


def triggers(runner, count):
    print(f"trigger pickup over {count} triggers, runner (file renamed into place -> run started; {load()}):")
    with scratch() as root:
        d = Daemon("runner", runner, root, {"manual": {"command": ["true"]}})
        directory = os.path.join(d.data, "trigger", "manual")
        os.makedirs(directory, exist_ok=True)
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
    print(f"  p50 {percentile(pickups, 50):.2f} ms, p99 {percentile(pickups, 99):.2f} ms, max {max(pickups):.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--jobs", default="200,1000", help="rates to run, comma-separated")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--idle-jobs", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=int, default=60)
    parser.add_argument("--skip", default="", help="parts to leave out: every,idle,triggers")
    parser.add_argument("--baseline", help="another runner binary to measure beside it (before/after)")
    parser.add_argument("--tmp", default="target/bench-tmp", help="where the temporary directories go")
    parser.add_argument("--keep", action="store_true",
                        help="leave the temporary directories (deleting them slows the next benchmark)")
    args = parser.parse_args()
    global TMP
    os.makedirs(args.tmp, exist_ok=True)
    TMP = os.path.abspath(args.tmp)
    print(f"temporary directories in {TMP}")
    skip = set(args.skip.split(","))
    runner = os.path.abspath(args.runner)
    daemons = peers(runner, args.baseline and os.path.abspath(args.baseline))
    if "every" not in skip:
        for jobs in (int(n) for n in args.jobs.split(",")):
            every_second(daemons, jobs, args.seconds)
    if "idle" not in skip:
        idle(daemons, args.idle_jobs, args.idle_seconds)
    if "triggers" not in skip:
        triggers(runner, 20)
    if args.keep:
        print(f"temporary directories kept in {TMP}")
    else:
        for directory in LEFT:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
