#!/usr/bin/env python3
"""Timeout overshoot benchmark: how long past max_time an attempt lasts, per task shape.

For five task shapes (a shell with a child, a shell with a background child, 20
children, a child calling setsid, a double-forked daemon), each with max_time = 1 and
kill_grace = 3, runs the chain K times under this machine's PID 1 and K times as PID 1
of a new PID namespace (`unshare -fp --mount-proc`, root only), and prints the median
and maximum overshoot: the attempt's recorded stop time minus its start time minus
max_time. The goal is under 20 ms everywhere (the contract allows 100 ms).

It also prints the wall time of the issue's example (`time runner ...` on a shell that
runs `sleep 30`: about 1.0 s, where it used to take 3.0 s), and how long runner as PID 1
takes to exit after a SIGTERM (what `docker stop` sends) with kill_grace = 10.

Usage: bench/overshoot.py [--runner PATH] [--runs K]
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

SLEEPER = "sh -c 'exec sleep 30'"
SHAPES = [
    ("shell with a child", f"{SLEEPER}\n"),
    ("shell with a background child", f"{SLEEPER} &\n{SLEEPER}\n"),
    ("20 children", f"i=0\nwhile [ $i -lt 20 ]; do {SLEEPER} & i=$((i+1)); done\nwait\n"),
    ("a child calling setsid", f"setsid {SLEEPER} &\nwait\n"),
    ("a double-forked daemon", f"( setsid {SLEEPER} & )\n{SLEEPER}\n"),
]
INI = "[runner]\nmax_time = 1\nkill_grace = 3\nmax_tries = 1\n"


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def chain_dir(root, body):
    tasks = os.path.join(root, "t")
    os.makedirs(tasks, mode=0o755, exist_ok=True)
    write(os.path.join(tasks, "10-a.sh"), "#!/bin/sh\n" + body, 0o755)
    write(os.path.join(root, "c.ini"), INI)
    return tasks


def last_attempt(runner, state):
    out = subprocess.run([runner, "--state-dir", state, "runs", "list", "--limit", "1",
                          "--format", "json"], check=True, capture_output=True).stdout
    run_id = json.loads(out)[0]["run_id"]
    out = subprocess.run([runner, "--state-dir", state, "runs", "show", run_id,
                          "--format", "json"], check=True, capture_output=True).stdout
    attempt = json.loads(out)["tasks"][0]["attempts"][0]
    return attempt["stop_time"] - attempt["start_time"]


def overshoots(runner, body, runs, wrap):
    figures = []
    with tempfile.TemporaryDirectory(prefix="runner-overshoot-") as root:
        tasks = chain_dir(root, body)
        state = os.path.join(root, "state")
        for _ in range(runs):
            proc = subprocess.run(wrap + [runner, "--state-dir", state, "-c",
                                          os.path.join(root, "c.ini"), tasks],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if proc.returncode != 1:
                raise SystemExit(f"runner exited {proc.returncode}, expected 1")
            figures.append(last_attempt(runner, state) - 1.0)
    return figures


def can_unshare():
    if os.geteuid() != 0:
        return "needs root"
    probe = subprocess.run(["unshare", "-fp", "--mount-proc", "true"],
                           stderr=subprocess.DEVNULL)
    return None if probe.returncode == 0 else "unshare -fp --mount-proc is not permitted"


def issue_example(runner):
    """The issue's reproduction, timed from outside."""
    with tempfile.TemporaryDirectory(prefix="runner-overshoot-") as root:
        tasks = chain_dir(root, "sleep 30\n")
        write(os.path.join(tasks, "halt.sh"), "#!/bin/sh\ndate +%s.%N\n", 0o755)
        start = time.perf_counter()
        subprocess.run([runner, "--state-dir", os.path.join(root, "S"), "-c",
                        os.path.join(root, "c.ini"), tasks],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def sigterm_as_init(runner):
    """SIGTERM to runner as PID 1 (docker stop) while a shell with children runs."""
    with tempfile.TemporaryDirectory(prefix="runner-overshoot-") as root:
        tasks = chain_dir(root, f"touch {root}/started\n{SLEEPER} &\n{SLEEPER}\n")
        write(os.path.join(root, "c.ini"), "[runner]\nkill_grace = 10\n")
        proc = subprocess.Popen(["unshare", "-fp", "--mount-proc", runner, "--state-dir",
                                 os.path.join(root, "S"), "-c", os.path.join(root, "c.ini"),
                                 tasks], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not os.path.exists(os.path.join(root, "started")):
            time.sleep(0.01)
        time.sleep(0.2)  # let the shell start its children: this is a benchmark
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            init = int(f.read().split()[0])
        start = time.perf_counter()
        os.kill(init, 15)
        code = proc.wait()
        return time.perf_counter() - start, code


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    runner = os.path.abspath(args.runner)
    why_not = can_unshare()
    modes = [("host PID 1", [])]
    if why_not is None:
        modes.append(("runner as PID 1", ["unshare", "-fp", "--mount-proc"]))
    else:
        print(f"SKIPPED runner as PID 1: {why_not}")
    print(f"overshoot past max_time = 1 s (kill_grace = 3 s), {args.runs} runs each, ms")
    print(f"{'shape':32} {'init':16} {'median':>8} {'max':>8}")
    worst = 0.0
    for shape, body in SHAPES:
        for mode, wrap in modes:
            figures = overshoots(runner, body, args.runs, wrap)
            worst = max(worst, max(figures))
            print(f"{shape:32} {mode:16} {statistics.median(figures) * 1000:8.1f} "
                  f"{max(figures) * 1000:8.1f}")
    print(f"worst overshoot: {worst * 1000:.1f} ms (goal < 20 ms, contract < 100 ms)")
    print(f"issue example (shell running sleep 30, max_time 1, kill_grace 3): "
          f"{issue_example(runner):.3f} s wall")
    if why_not is None:
        took, code = sigterm_as_init(runner)
        print(f"SIGTERM to runner as PID 1 (kill_grace 10): exit {code} after {took:.3f} s")


if __name__ == "__main__":
    main()
