#!/usr/bin/env python3
"""Chain cost benchmark: what runner itself spends per task, recording on and off.

Wall time on a shared machine says little, so this counts what does not depend on the
load: for a directory of N trivial `#!/bin/sh` tasks, runner's own CPU time (user and
system, all its threads, not its tasks': read from /proc while runner is a zombie) and,
with `--strace`, the system calls of runner's threads, per task, in total and of the
chain's thread alone, the most frequent by name. Its stdout and stderr are /dev/null, as
in bench/chain.py. With `--baseline PATH` an older build runs in the same rotation.

Usage: bench/chain_cost.py [--runner PATH] [--baseline PATH] [--tasks N] [--runs K] [--strace]
"""

import argparse
import collections
import os
import re
import shutil
import statistics
import subprocess
import tempfile


def own_cpu(argv, env):
    """Runs argv; returns runner's own (user, system) CPU seconds, not its children's."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    # Still a zombie after this: its /proc/PID/stat holds its own times.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    with open(f"/proc/{proc.pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    if proc.wait() != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def syscalls(argv, env, tasks_dir):
    """Runs argv under strace -ff; returns (per-thread Counters of runner's threads, the
    chain thread's Counter). Processes that exec a task are the tasks', not runner's."""
    with tempfile.TemporaryDirectory(prefix="runner-strace-") as out:
        subprocess.run(["strace", "-ff", "-o", os.path.join(out, "t")] + argv,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                       check=True)
        threads = []
        for name in os.listdir(out):
            with open(os.path.join(out, name)) as f:
                text = f.read()
            if f'execve("{tasks_dir}/' in text:
                continue
            threads.append(collections.Counter(re.findall(r"^([a-z_0-9]+)\(", text, re.M)))
    chain = max(threads, key=lambda c: sum(c.values()))
    return threads, chain


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", default="target/release/runner")
    parser.add_argument("--baseline", help="another runner binary to measure alongside")
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--strace", action="store_true", help="count system calls too")
    args = parser.parse_args()
    if args.strace and shutil.which("strace") is None:
        raise SystemExit("strace is not installed (Debian package strace)")
    binaries = {"runner": os.path.abspath(args.runner)}
    if args.baseline:
        binaries["baseline"] = os.path.abspath(args.baseline)

    with tempfile.TemporaryDirectory(prefix="runner-bench-") as root:
        tasks = os.path.join(root, "tasks.d")
        os.mkdir(tasks, 0o755)
        for i in range(args.tasks):
            path = os.path.join(tasks, f"t{i:04d}")
            with open(path, "w") as f:
                f.write("#!/bin/sh\nexit 0\n")
            os.chmod(path, 0o755)
        env = dict(os.environ, RUST_LOG="error")
        modes = {}
        for name, binary in binaries.items():
            state = os.path.join(root, f"state-{name}")
            base = [binary, "-q", "--state-dir", state, "-n", "1"]
            modes[f"{name} --no-record"] = base + ["--no-record", tasks]
            modes[f"{name} (recording)"] = base + [tasks]
        for argv in modes.values():  # warm-up: page cache, store creation
            own_cpu(argv, env)
        cpu = {name: [] for name in modes}
        for _ in range(args.runs):
            for name, argv in modes.items():
                cpu[name].append(own_cpu(argv, env))
        n = args.tasks
        print(f"chain of {n} trivial tasks, runner's own CPU (all its threads, not its tasks), "
              f"mean of {args.runs} alternating runs:")
        for name, times in cpu.items():
            user = statistics.mean(t[0] for t in times)
            system = statistics.mean(t[1] for t in times)
            print(f"  {name:24s} {(user + system) * 1e6 / n:6.0f} us/task "
                  f"(user {user * 1e6 / n:4.0f}, system {system * 1e6 / n:4.0f})")
        if args.strace:
            print("system calls of runner's threads per task (one run each):")
            for name, argv in modes.items():
                threads, chain = syscalls(argv, env, tasks)
                total = sum(sum(c.values()) for c in threads)
                top = " ".join(f"{k} {v / n:.1f}" for k, v in chain.most_common(10))
                print(f"  {name:24s} {total / n:5.1f} in all, {sum(chain.values()) / n:5.1f} "
                      f"on the chain's thread ({chain['fsync']} fsync): {top}")
        print(f"load average: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
