#!/usr/bin/env python3
"""Fleet benchmark: recording into PostgreSQL on loopback against SQLite.

Starts a PostgreSQL server of its own (Debian's initdb/pg_ctl, as `nobody` when run as
root) on 127.0.0.1 and a unix socket, then prints:

1. a chain of N trivial tasks recorded into SQLite and into PostgreSQL over TCP on
   loopback: median wall times of K alternating runs, and their ratio (goal <= 1.5);
2. H chains with H different host names (RUNNER_HOST) recording into one database at
   once, each with T tasks: errors, runs and attempts found against those expected
   (goal: no error, no lost row);
3. cross-host event wake-up over F firings: a chain on host A whose task i waits for
   event e<i> (one at a time), and `runner fire e<i>` run on host B (another state dir)
   once the database shows the task waiting; the figure is from the moment that command
   returned to the moment the task's first command (`date`) ran, so fork/exec of `date`
   is included. Median, p99 and max (goal: p99 < 100 ms). Only the database's
   LISTEN/NOTIFY can wake host A: it shares no file with host B.

The server is stopped and its directory removed at the end.

Usage: bench/fleet.py [--runner PATH] [--tasks N] [--runs K] [--hosts H] [--firings F]
"""

import argparse
import glob
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin = bins[-1]
        self.dir = tempfile.mkdtemp(prefix="runner-bench-pg-")
        os.chmod(self.dir, 0o777)
        self.user = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
        self.port = free_port()
        initdb = self.user + [f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-A", "trust",
                              "-U", "runner", "--no-sync"]
        null_ok = os.stat("/dev/null").st_mode & 0o002
        if os.geteuid() == 0 and not null_ok:
            # Some containers have a /dev/null that others cannot write: give initdb one.
            subprocess.run(["mknod", "-m", "666", f"{self.dir}/null", "c", "1", "3"], check=True)
            initdb = ["unshare", "-m", "sh", "-c",
                      f'mount --bind {self.dir}/null /dev/null && exec "$@"', "sh"] + initdb
        subprocess.run(initdb, check=True, stdout=subprocess.DEVNULL)
        # Durable commits, as a real server: fsync stays on.
        opts = (f"-k {self.dir} -c listen_addresses=127.0.0.1 -p {self.port} "
                "-c max_connections=300")
        subprocess.run(self.user + [f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-w",
                                    "-o", opts, "-l", f"{self.dir}/log", "start"],
                       check=True, stdout=subprocess.DEVNULL)

    def psql(self, db, sql):
        out = subprocess.run([f"{self.bin}/psql", "-h", self.dir, "-p", str(self.port), "-U",
                              "runner", "-d", db, "-XAtq", "-c", sql],
                             check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def try_psql(self, db, sql):
        """psql's output, or None while the query fails (tables not made yet)."""
        try:
            return self.psql(db, sql)
        except subprocess.CalledProcessError:
            return None

    def database(self, name):
        self.psql("postgres", f"CREATE DATABASE {name}")
        return f"postgresql://runner@127.0.0.1:{self.port}/{name}"

    def stop(self):
        subprocess.run(self.user + [f"{self.bin}/pg_ctl", "-D", f"{self.dir}/data", "-m",
                                    "fast", "-w", "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def taskdir(root, n):
    d = os.path.join(root, "tasks.d")
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        path = os.path.join(d, f"{i:04d}-t{i}.sh")
        with open(path, "w") as f:
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o755)
    return d


def run_chain(runner, tasks, state, database=None, host=None):
    argv = [runner, "-q", "--state-dir", state]
    if database:
        argv += ["--database", database]
    argv += ["run", tasks]
    env = dict(os.environ)
    env.pop("RUNNER_DATABASE", None)
    if host:
        env["RUNNER_HOST"] = host
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def percentile(values, p):
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def wait_until(check, limit=60.0, step=0.002):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(step)
    return False


def wake_up(runner, server, root, firings):
    """Part 3: fire on host B, a waiting task on host A starts; latencies in ms."""
    db = server.database("bench_events")
    base = os.path.join(root, "events")
    out = os.path.join(base, "out")
    d = os.path.join(base, "tasks.d")
    os.makedirs(out)
    os.makedirs(d)
    ini = "[runner]\nsession = bench\n"
    for i in range(firings):
        path = os.path.join(d, f"{i:03d}-t{i}.sh")
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\ndate +%s.%N > {out}/{i}\n")
        os.chmod(path, 0o755)
        ini += f"[t{i}]\nafter = e{i}\n"
    config = os.path.join(base, "runner.ini")
    with open(config, "w") as f:
        f.write(ini)
    env = dict(os.environ, RUNNER_SESSION="bench")
    env.pop("RUNNER_DATABASE", None)
    chain = subprocess.Popen(
        [runner, "-q", "--state-dir", os.path.join(base, "host-a"), "--database", db,
         "-c", config, d],
        env=dict(env, RUNNER_HOST="host-a"), stdout=subprocess.DEVNULL)
    fire_env = dict(env, RUNNER_HOST="host-b")
    latencies = []
    for i in range(firings):
        waiting = wait_until(lambda: server.try_psql(
            "bench_events",
            f"SELECT status FROM task_instances WHERE name = 't{i}' ORDER BY id DESC LIMIT 1",
        ) == "waiting", step=0.01)
        if not waiting:
            chain.kill()
            raise SystemExit(f"task t{i} never waited")
        subprocess.run([runner, "-q", "--state-dir", os.path.join(base, "host-b"),
                        "--database", db, "fire", f"e{i}", "--session", "bench"],
                       check=True, env=fire_env)
        returned = time.time()
        path = os.path.join(out, str(i))
        if not wait_until(lambda: os.path.exists(path) and os.path.getsize(path) > 0):
            chain.kill()
            raise SystemExit(f"task t{i} never started")
        with open(path) as f:
            latencies.append((float(f.read().strip()) - returned) * 1000)
    chain.wait(timeout=60)
    return latencies


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--host-tasks", type=int, default=10)
    parser.add_argument("--firings", type=int, default=100)
    args = parser.parse_args()
    runner = os.path.abspath(args.runner)
    server = Server()
    root = tempfile.mkdtemp(prefix="runner-bench-fleet-")
    try:
        tasks = taskdir(root, args.tasks)
        db = server.database("bench_ratio")
        sqlite_times, pg_times = [], []
        for k in range(args.runs):
            for times, database in ((sqlite_times, None), (pg_times, db)):
                state = os.path.join(root, f"state-{k}-{'pg' if database else 'sqlite'}")
                start = time.perf_counter()
                proc = run_chain(runner, tasks, state, database)
                _, err = proc.communicate()
                times.append(time.perf_counter() - start)
                if proc.returncode != 0 or b"warn" in err:
                    raise SystemExit(f"chain failed ({proc.returncode}): {err.decode()}")
        s, p = statistics.median(sqlite_times), statistics.median(pg_times)
        print(f"{args.tasks} tasks, median of {args.runs}: SQLite {s:.3f} s, "
              f"PostgreSQL (TCP loopback) {p:.3f} s, ratio {p / s:.2f} (goal <= 1.5)")
        rows = server.psql("bench_ratio", "SELECT count(*) FROM attempts WHERE result = 'OK'")
        print(f"  attempts recorded in PostgreSQL: {rows} (expected {args.tasks * args.runs})")

        # Many hosts at once into one database.
        fleet = server.database("bench_fleet")
        small = taskdir(os.path.join(root, "small"), args.host_tasks)
        start = time.perf_counter()
        procs = [run_chain(runner, small, os.path.join(root, f"host-{h}"), fleet, f"host-{h:03d}")
                 for h in range(args.hosts)]
        errors = 0
        for proc in procs:
            _, err = proc.communicate()
            if proc.returncode != 0 or b"warn" in err:
                errors += 1
                print("  error:", proc.returncode, err.decode().strip()[:300])
        elapsed = time.perf_counter() - start
        runs = server.psql("bench_fleet", "SELECT count(*) FROM runs WHERE exit_code = 0")
        hosts = server.psql("bench_fleet", "SELECT count(DISTINCT host) FROM run_meta")
        attempts = server.psql("bench_fleet", "SELECT count(*) FROM attempts WHERE result = 'OK'")
        print(f"{args.hosts} hosts x {args.host_tasks} tasks at once: {elapsed:.2f} s, "
              f"errors {errors}, runs {runs}/{args.hosts}, hosts {hosts}, "
              f"attempts {attempts}/{args.hosts * args.host_tasks}")

        ms = wake_up(runner, server, root, args.firings)
        print(f"cross-host event wake-up over {args.firings} firings "
              "(fire on host B returned -> task on host A started):")
        print(f"  median {statistics.median(ms):.2f} ms, p99 {percentile(ms, 99):.2f} ms, "
              f"max {max(ms):.2f} ms (goal: p99 < 100 ms)")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
