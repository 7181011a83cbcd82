#!/usr/bin/env python3
"""After a `kill -9` of runner, how long until a running task's processes are gone.

Two shapes: a background child that stays in the task's process group (the guardian
ends it with the group), and a `setsid` child in a session of its own (the guardian
finds it by the attempt's RUNNER_ATTEMPT_TOKEN). For each, K times: start a chain whose
task starts the child and runs on, wait until the child is there (for setsid: until it
leads its own session), kill runner with SIGKILL, and time until the child is gone (a
zombie counts as gone). Prints the median and maximum in ms, and the load average, which
these figures follow: reading /proc of a process that is in the middle of an exec blocks,
so a machine busy starting processes slows the guardian's sweep down.

Usage: bench/escape.py [--runner PATH] [--runs K]
"""

import argparse
import os
import statistics
import subprocess
import tempfile
import time

SHAPES = [
    ("child in the task's group", "sleep 1000 &"),
    ("setsid child, own session", "setsid sleep 1000 &"),
]


def state(pid):
    """(state letter, session id) of `pid`, or (None, None) once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return rest[0], int(rest[3])
    except (OSError, IndexError, ValueError):
        return None, None


def once(runner, root, start_child, own_session):
    taskdir = os.path.join(root, "tasks.d")
    os.makedirs(taskdir, exist_ok=True)
    pidfile = os.path.join(root, "pid")
    if os.path.exists(pidfile):
        os.unlink(pidfile)
    task = os.path.join(taskdir, "10-task.sh")
    with open(task, "w") as f:
        f.write(f"#!/bin/sh\n{start_child}\necho $! > {pidfile}\nexec sleep 1002\n")
    os.chmod(task, 0o755)
    ini = os.path.join(root, "runner.ini")
    with open(ini, "w") as f:
        f.write("[runner]\nkill_grace = 3\n")
    proc = subprocess.Popen(
        [runner, "--state-dir", os.path.join(root, "state"), "-c", ini, taskdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    child = None
    while child is None and time.monotonic() < deadline:
        try:
            with open(pidfile) as f:
                child = int(f.read())
        except (OSError, ValueError):
            time.sleep(0.005)
    if child is None:
        proc.kill()
        raise SystemExit("the task never wrote its child's pid")
    while own_session and state(child)[1] != child and time.monotonic() < deadline:
        time.sleep(0.002)
    began = time.perf_counter()
    proc.kill()
    proc.wait()
    while state(child)[0] not in (None, "Z", "X"):
        if time.perf_counter() - began > 30:
            os.kill(child, 9)
            raise SystemExit(f"child {child} outlived runner by 30 s")
        time.sleep(0.001)
    return (time.perf_counter() - began) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument(
        "--runner", default=os.path.join(here, "..", "target", "release", "runner")
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="runner-escape-") as root:
        os.chmod(root, 0o755)
        for name, start_child in SHAPES:
            own_session = start_child.startswith("setsid")
            times = [
                once(args.runner, root, start_child, own_session) for _ in range(args.runs)
            ]
            print(
                f"{name:28} gone after kill -9 of runner: median {statistics.median(times):6.1f} ms,"
                f" max {max(times):6.1f} ms ({args.runs} runs)"
            )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
