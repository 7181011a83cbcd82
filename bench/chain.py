#!/usr/bin/env python3
"""Chain benchmark: runner against run-parts on the same task directory.

Prints, for a directory of N trivial `#!/bin/sh` tasks, the median wall time of
`runner -n 1` (recording off, and on) and of `run-parts`, alternating runs so that
both see the same machine state; the ratio of each runner mode to run-parts, in wall
time and in CPU time (which a busy machine changes less), and the ratio within each
round of the rotation (median and range); the overshoot past `max_time = 1` on
`sleep 30`; and runner's peak RSS on the chain. With `--baseline PATH`, another runner
binary (an older build) runs in the same rotation, so before and after are measured in
the same machine state.

Usage: bench/chain.py [--runner PATH] [--baseline PATH] [--tasks N] [--runs K]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time


def timed(argv, env=None):
    """Runs argv; returns (seconds, CPU seconds, peak RSS in KiB).

    GNU time reports the peak RSS: measuring from here would count the copy of this
    Python process that exists between fork and exec. The CPU time (user and system, of
    the command and every task it ran) is what the machine's load changes least.
    """
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", report.name] + argv,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} exited {proc.returncode}")
        peak = int(report.read().split()[-1])
    return elapsed, usage.ru_utime + usage.ru_stime, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--baseline", help="another runner binary to measure alongside")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runner = os.path.abspath(args.runner)
    run_parts = shutil.which("run-parts")
    if run_parts is None:
        raise SystemExit("run-parts is not installed (Debian package debianutils)")
    if not os.path.exists("/usr/bin/time"):
        raise SystemExit("GNU time is not installed (Debian package time)")

    with tempfile.TemporaryDirectory(prefix="runner-bench-") as root:
        tasks = os.path.join(root, "tasks.d")
        os.mkdir(tasks, 0o755)
        for i in range(args.tasks):
            # run-parts only accepts names of [A-Za-z0-9_-]; no extension.
            path = os.path.join(tasks, f"t{i:04d}")
            with open(path, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(path, 0o755)
        state = os.path.join(root, "state")
        env = dict(os.environ, RUST_LOG="error")
        modes = {
            "run-parts": [run_parts, tasks],
            "runner --no-record": [runner, "-q", "--no-record", "--state-dir", state, "-n", "1", tasks],
            "runner (recording)": [runner, "-q", "--state-dir", state, "-n", "1", tasks],
        }
        if args.baseline:
            # A state directory of its own: a build with an older schema refuses a store
            # the other one migrated, and would run without recording.
            baseline = os.path.abspath(args.baseline)
            other = os.path.join(root, "baseline-state")
            modes["baseline --no-record"] = [baseline, "-q", "--no-record", "--state-dir",
                                             other, "-n", "1", tasks]
            modes["baseline (recording)"] = [baseline, "-q", "--state-dir", other, "-n", "1",
                                             tasks]
        times = {name: [] for name in modes}
        cpu = {name: [] for name in modes}
        rss = {name: 0 for name in modes}
        for name, argv in modes.items():  # warm-up: page cache, store creation
            timed(argv, env)
        for _ in range(args.runs):
            for name, argv in modes.items():
                seconds, used, peak = timed(argv, env)
                times[name].append(seconds)
                cpu[name].append(used)
                rss[name] = max(rss[name], peak)

        base = statistics.median(times["run-parts"])
        base_cpu = statistics.median(cpu["run-parts"])
        print(f"chain of {args.tasks} trivial tasks, median of {args.runs} alternating runs"
              " (CPU: user and system time, tasks included):")
        for name in modes:
            median = statistics.median(times[name])
            used = statistics.median(cpu[name])
            print(f"  {name:<22} {median * 1000:8.1f} ms   ratio {median / base:5.2f}x"
                  f"   CPU {used * 1000:6.1f} ms ({used / base_cpu:4.2f}x)"
                  f"   peak RSS {rss[name] / 1024:5.1f} MB")
        # The machine's pace drifts over a benchmark by more than the differences
        # measured; each round's runs follow each other within a second or two, so
        # the ratio within a round sees the least of that drift.
        print(f"ratio to run-parts within each round (median, lowest and highest of {args.runs}):")
        for name in modes:
            if name == "run-parts":
                continue
            ratios = sorted(t / b for t, b in zip(times[name], times["run-parts"]))
            print(f"  {name:<22} {statistics.median(ratios):5.3f}x"
                  f"   [{ratios[0]:5.3f}x .. {ratios[-1]:5.3f}x]")

        slow = os.path.join(root, "slow.d")
        os.mkdir(slow, 0o755)
        with open(os.path.join(slow, "sleep"), "w") as f:
            f.write("#!/bin/sh\nexec sleep 30\n")
        os.chmod(os.path.join(slow, "sleep"), 0o755)
        ini = os.path.join(root, "slow.ini")
        with open(ini, "w") as f:
            f.write("[runner]\nmax_time = 1\nmax_tries = 1\nhalt_task = none\n")
        overshoots = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run([runner, "-q", "--no-record", "--state-dir", state, "-c", ini, slow],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            overshoots.append(time.perf_counter() - start - 1.0)
        print(f"timeout overshoot past max_time = 1 on sleep 30 (whole runner process, {args.runs} runs):")
        print(f"  median {statistics.median(overshoots) * 1000:.1f} ms, max {max(overshoots) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
