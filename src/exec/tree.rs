//! A snapshot of the process table from `/proc`: who is whose child, in which group and
//! session, and who is only a zombie.
//!
//! Supervision needs "every live process of this task", and `kill(-pgid, 0)` cannot say
//! that: it succeeds while a zombie is left in the group, and it misses whatever left
//! the group with `setsid`. A scan of `/proc/*/stat` sees both: zombies by their state,
//! and escaped processes by their parent chain (runner is a child subreaper, so an
//! orphan of a task becomes runner's child instead of init's). This file only reads;
//! attributing processes to attempts is `reaper.rs`'s job.

use std::collections::HashMap;
use std::sync::OnceLock;

/// One process as `/proc/PID/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proc {
    /// Its pid.
    pub(crate) pid: i32,
    /// Its parent's pid (the thread group, not the thread).
    pub(crate) ppid: i32,
    /// Its process group.
    pub(crate) pgid: i32,
    /// Its session.
    pub(crate) sid: i32,
    /// Whether it exited and only waits to be reaped.
    pub(crate) zombie: bool,
    /// When it started, in clock ticks since boot: with the pid, a name no later process
    /// can take.
    pub(crate) start: u64,
}

/// A pid with its start time: the same pid later is another process.
pub(crate) type ProcKey = (i32, u64);

impl Proc {
    /// The process's lasting name.
    pub(crate) fn key(&self) -> ProcKey {
        (self.pid, self.start)
    }
}

/// Every process visible in `/proc`, indexed by pid and by parent.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    procs: HashMap<i32, Proc>,
    children: HashMap<i32, Vec<i32>>,
}

impl Snapshot {
    /// Reads the process table. Processes that end while it is read are simply missing.
    pub(crate) fn take() -> Snapshot {
        let mut snapshot = Snapshot::default();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return snapshot;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = read_small(&format!("/proc/{pid}/stat")) else {
                continue;
            };
            if let Some(proc) = parse_stat(pid, &String::from_utf8_lossy(&stat)) {
                snapshot.children.entry(proc.ppid).or_default().push(pid);
                snapshot.procs.insert(pid, proc);
            }
        }
        snapshot
    }

    /// The process with this pid, if it exists (zombies included).
    pub(crate) fn get(&self, pid: i32) -> Option<&Proc> {
        self.procs.get(&pid)
    }

    /// Every process in the table.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.procs.values()
    }

    /// The direct children of `pid`.
    pub(crate) fn children(&self, pid: i32) -> impl Iterator<Item = &Proc> {
        self.children
            .get(&pid)
            .into_iter()
            .flatten()
            .filter_map(|c| self.procs.get(c))
    }
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(pid: i32, stat: &str) -> Option<Proc> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (3), ppid (4), pgrp (5), session (6), ... starttime (22).
    Some(Proc {
        pid,
        zombie: matches!(*fields.first()?, "Z" | "X"),
        ppid: fields.get(1)?.parse().ok()?,
        pgid: fields.get(2)?.parse().ok()?,
        sid: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// The children of this process that are not a supervisor's own: the orphans (and
/// helpers) in `/proc/self/task/PID/children`, the list of the main thread, one small
/// file; `None` where the kernel does not offer it.
///
/// The list of a thread holds the children that thread made and the orphans given to it.
/// Linux gives an orphan to the first live thread of the subreaper (`find_alive_thread`
/// walks the thread list from the group leader), which for runner is its main thread
/// whatever thread spawned the orphan's ancestor; the other threads only hold the
/// leaders their supervisors spawned and wait for. Reading every thread's list instead
/// cost a file per thread for each ended run, with a thread per run in the daemon: at
/// 1,000 runs a second, three quarters of the daemon's CPU.
///
/// Each thread opens the file once and reads it from its start each time (`pread`): the
/// kernel makes the list anew for a read at offset 0, and the open and close it took per
/// ended task were half of this check's system calls, a path walk through `/proc` among
/// them. One descriptor per thread, not one for all: reads of one open file from several
/// threads at once move its position under each other, and a read that goes on from
/// where another thread's left off can cut a pid in two.
pub(crate) fn own_children() -> Option<Vec<i32>> {
    thread_local! {
        static FILE: Option<std::fs::File> =
            std::fs::File::open(format!("/proc/self/task/{}/children", own_pid())).ok();
    }
    thread_local! {
        // Read into again for each task: its thread reads the list once per task.
        static TEXT: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    TEXT.with_borrow_mut(|text| {
        FILE.with(|file| file.as_ref().map(|file| read_whole_into(file, text)))?
            .ok()?;
        Some(
            text.split(|b| b.is_ascii_whitespace())
                .filter_map(|p| std::str::from_utf8(p).ok()?.parse::<i32>().ok())
                // Never 0 or less: those name process groups to `waitpid` and `kill`.
                .filter(|&pid| pid > 0)
                .collect(),
        )
    })
}

/// runner's pid, asked once: nothing that calls this runs in a forked copy of runner.
pub(crate) fn own_pid() -> i32 {
    static PID: OnceLock<i32> = OnceLock::new();
    *PID.get_or_init(|| std::process::id() as i32)
}

/// A small `/proc` file whole: reads into a buffer of a kilobyte (grown as needed), without the `statx` that
/// `fs::read` spends on a size `/proc` does not know, nor the reads that a buffer
/// grown from 32 bytes takes.
fn read_small(path: &str) -> std::io::Result<Vec<u8>> {
    read_whole(&std::fs::File::open(path)?)
}

/// The most a read of a `/proc` file may ask for and still trust a short answer as
/// the end (see [`read_whole`]): the page a `seq_file` formats into at first.
const SEQ_PAGE: usize = 4096;

/// All of a `/proc` file from its start, by `pread`, into a buffer of a kilobyte grown
/// as needed.
///
/// These files are `seq_file`s: a read goes on formatting records until it has what
/// was asked for or the records end, and only a record too big for the kernel's page
/// (never a pid, nor a `stat` line) returns less before the end. So a short answer
/// to a read of at most [`SEQ_PAGE`] is the whole rest, and the `pread` that would
/// return 0 is left out: one system call per task instead of two, the children list
/// being read for every task that ends.
fn read_whole(file: &std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_whole_into(file, &mut buf)?;
    Ok(buf)
}

/// [`read_whole`] into `buf`, whose contents it replaces, keeping its allocation.
fn read_whole_into(file: &std::fs::File, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.resize(buf.capacity().max(1024), 0);
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        let asked = buf.len() - len;
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) if n < asked && asked <= SEQ_PAGE => {
                len += n;
                break;
            }
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    Ok(())
}

/// The start time (clock ticks since boot) in one `/proc/PID/stat` line.
pub(crate) fn start_of(pid: i32, stat: &str) -> Option<u64> {
    parse_stat(pid, stat).map(|p| p.start)
}

/// A process's command line for people: its arguments joined by spaces, or its short
/// name in brackets when it has none (a kernel thread, a zombie).
pub(crate) fn command_line(pid: i32) -> String {
    if let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) {
        let words: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        if !words.is_empty() {
            return words.join(" ");
        }
    }
    match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => format!("[{}]", comm.trim_end()),
        Err(_) => "[gone]".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_parentheses_in_the_name() {
        let line = "42 (a (b) c) S 7 42 7 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let proc = parse_stat(42, line).expect("parsed");
        assert_eq!(
            proc,
            Proc {
                pid: 42,
                ppid: 7,
                pgid: 42,
                sid: 7,
                zombie: false,
                start: 12345
            }
        );
        let zombie = "43 (sh) Z 1 43 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0";
        assert!(parse_stat(43, zombie).expect("parsed").zombie);
    }

    #[test]
    fn the_snapshot_sees_this_process_and_its_parent() {
        let snapshot = Snapshot::take();
        let me = std::process::id() as i32;
        let proc = snapshot.get(me).expect("this process is in /proc");
        assert!(!proc.zombie);
        assert_eq!(proc.ppid, nix::unistd::getppid().as_raw());
        assert!(snapshot.children(proc.ppid).any(|p| p.pid == me));
        assert!(command_line(me).contains("runner") || !command_line(me).is_empty());
    }

    #[test]
    fn a_children_list_longer_than_the_first_read_is_read_whole() {
        // 400 pids are more than the first read's kilobyte: the read that fills it, and
        // the short one after it that ends the list, must bring every pid.
        let mut spawned: Vec<std::process::Child> = (0..400)
            .map(|_| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .expect("sleep")
            })
            .collect();
        let path = format!("/proc/self/task/{}/children", nix::unistd::gettid());
        let file = std::fs::File::open(path).expect("children file");
        let text = read_whole(&file).expect("read");
        for child in &mut spawned {
            let _ = child.kill();
            let _ = child.wait();
        }
        assert!(text.len() > 1024, "only {} bytes", text.len());
        let mut listed: Vec<u32> = String::from_utf8(text)
            .expect("text")
            .split_whitespace()
            .map(|p| p.parse().expect("a pid"))
            .collect();
        let mut expected: Vec<u32> = spawned.iter().map(|c| c.id()).collect();
        listed.sort_unstable();
        expected.sort_unstable();
        assert_eq!(listed, expected);
    }

    #[test]
    fn an_orphan_of_a_process_spawned_on_another_thread_is_listed() {
        // The rule own_children rests on: Linux hands an orphan to the subreaper's main
        // thread, whichever thread spawned the process it descends from (this test runs
        // on a thread of the test harness, not on the main thread).
        crate::exec::pgroup::become_subreaper().expect("subreaper");
        let mut shell = std::process::Command::new("/bin/sh")
            .args(["-c", "setsid sleep 30 >/dev/null 2>&1 & echo $!"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut text = String::new();
        std::io::Read::read_to_string(shell.stdout.as_mut().expect("stdout"), &mut text)
            .expect("read");
        shell.wait().expect("wait");
        let orphan: i32 = text.trim().parse().expect("a pid");
        let listed = own_children().expect("children").contains(&orphan);
        crate::exec::pgroup::signal_pid(orphan, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(orphan), None);
        assert!(listed, "orphan {orphan} not in the main thread's children");
    }
}
