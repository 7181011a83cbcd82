#!/usr/bin/env python3
"""A store locked by another process in the middle of a chain: how long the chain stalls,
how long runner's exit waits, and what the run is recorded as once the lock is let go.

    python3 bench/lockstall.py target/release/runner [LOCK_AT_S] [LOCK_FOR_S]

Six tasks of 0.5 s; another process takes `BEGIN EXCLUSIVE` on the store LOCK_AT_S (0.5)
into the run and holds it LOCK_FOR_S (4). Prints each task's gap to the one before (0.5 s
when nothing stalls), the exit time, and the recorded run after the lock is released.
"""
import json, os, sqlite3, subprocess, sys, tempfile, threading, time

binary = os.path.abspath(sys.argv[1])
lock_at = float(sys.argv[2]) if len(sys.argv) > 2 else 0.5
lock_for = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
root = tempfile.mkdtemp(prefix="lockstall-")
tasks = os.path.join(root, "tasks.d")
os.mkdir(tasks)
for i in range(6):
    path = os.path.join(tasks, "%02d-t%d.sh" % (i * 10 + 10, i))
    with open(path, "w") as f:
        f.write('#!/bin/sh\nsleep 0.5\necho %d $(date +%%s.%%N) >> "$LOG"\n' % i)
    os.chmod(path, 0o755)
ini = os.path.join(root, "runner.ini")
with open(ini, "w") as f:
    f.write("[runner]\nsleep_time = 0\nretry_jitter = 0\n")
state = os.path.join(root, "state")
env = dict(os.environ, LOG=os.path.join(root, "log"))
cmd = [binary, "--state-dir", state, "-c", ini, tasks]
subprocess.run(cmd, env=env, capture_output=True, check=True)  # creates the store
start = time.time()
chain = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
time.sleep(lock_at)
db = sqlite3.connect(os.path.join(state, "runner.sqlite3"), isolation_level=None,
                     timeout=10, check_same_thread=False)
db.execute("BEGIN EXCLUSIVE")
locked = time.time() - start


def release():
    time.sleep(lock_for)
    db.execute("COMMIT")


releaser = threading.Thread(target=release)
releaser.start()
_, err = chain.communicate()
exited = time.time() - start
prev = start
gaps = []
with open(env["LOG"]) as f:
    for line in f.read().split("\n")[6:]:
        if line:
            t = float(line.split()[1])
            gaps.append(t - prev)
            prev = t
print("locked at %.2fs for %.1fs; chain exit %d at %.2fs (last task at %.2fs)"
      % (locked, lock_for, chain.returncode, exited, prev - start))
print("task gaps: " + " ".join("%.2f" % g for g in gaps) + "  (worst stall %.2fs)"
      % (max(gaps) - 0.5))
releaser.join()
deadline = time.time() + 30
while True:
    out = subprocess.run([binary, "--state-dir", state, "runs", "list", "--format", "json",
                          "--limit", "1"], capture_output=True, text=True).stdout
    run = json.loads(out)[0]
    if run["status"] != "running" and (run["status"] != "lost" or time.time() > deadline):
        break
    time.sleep(0.2)
print("recorded: status %s, exit_code %s, %.2fs after the release"
      % (run["status"], run["exit_code"], time.time() - start - locked - lock_for))
