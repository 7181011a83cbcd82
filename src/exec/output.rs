//! Where a task's stdout and stderr go.
//!
//! The fast path hands the task runner's own descriptors (or a daemon run's
//! `output.txt`), costing nothing. When output must also be captured, or prefixed because
//! several tasks run at once, each stream gets a pipe (one for both when runner's stdout
//! and stderr are one place, [`streams_are_one`]) that the supervising thread itself
//! drains whenever `poll` says so ([`Pump`]): no reader threads, and memory stays flat
//! because fixed-size chunks are moved and no whole line is ever held.
//!
//! A task may leave a process behind that still holds its pipes (a service started with
//! `&`). Closing the read end would kill that process with SIGPIPE on its next write,
//! and waiting for end-of-file would hold up the chain, so the pump is handed to one
//! background thread ([`linger`]) that keeps copying, to runner's streams and into the
//! attempt's capture, for as long as runner runs; when runner exits, [`hand_off`] gives
//! the pipes still open to the relay process (see `pgroup.rs`), which copies to runner's
//! stdout and stderr until the last writer is gone.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{ChildStderr, ChildStdout};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::pgroup::{self, RELAY_STDERR, RELAY_STDOUT};
use super::spawn::{Command, Stdio};

/// Where a copy of an attempt's output goes (the records' capture file), shared between
/// whoever writes it and whoever finishes it. Any writer will do: exec and the store meet
/// only through std types (`record::SharedCapture` is the same type).
pub(crate) type SharedCapture = Arc<Mutex<dyn Write + Send>>;

/// The routing of one attempt's output.
#[derive(Default)]
pub(crate) struct Output {
    /// Put before every line when several tasks share the terminal.
    pub(crate) prefix: Option<String>,
    /// Where the copy goes, if anywhere.
    pub(crate) capture: Option<SharedCapture>,
    /// A file that receives both streams directly instead (a daemon run's output.txt).
    /// [`Output::configure`] hands it to the process itself, so that runner holds no
    /// descriptor of it while the process runs: a daemon with a thousand runs at once
    /// would otherwise hold a thousand more.
    pub(crate) file: Mutex<Option<std::fs::File>>,
    /// Called once the process is spawned, before its output is moved or its exit
    /// awaited, on the supervising thread, and again when the moment it returns comes
    /// while the process runs: what the caller does while the task starts (a chain
    /// writes the attempt's start then, or before a task hook that runs first).
    pub(crate) on_spawn: Mutex<Option<OnSpawn>>,
}

/// What [`Output::on_spawn`] calls.
pub(crate) type OnSpawn = Box<dyn FnMut(bool) -> Option<Instant> + Send>;

impl Output {
    fn needs_pipes(&self) -> bool {
        // While a live view draws on the terminal, output goes through runner so that
        // the view can step aside for it.
        self.prefix.is_some() || self.capture.is_some() || crate::terminal::is_shared()
    }

    /// Sets the child's stdout and stderr before it is spawned; takes [`Output::file`].
    pub(crate) fn configure(&self, cmd: &mut Command) {
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(file) = file {
            cmd.stdout = Stdio::File(file);
            cmd.stderr = Stdio::SameAsStdout;
            return;
        }
        if self.needs_pipes() {
            cmd.stdout = Stdio::Piped;
            // See `Waiter::write_ends` in `supervise.rs`.
            cmd.hold_write_ends = true;
            // Both streams end in the same place anyway: one pipe carries both, in the
            // order they were written.
            cmd.stderr = if streams_are_one() {
                Stdio::SameAsStdout
            } else {
                Stdio::Piped
            };
        } else {
            cmd.stdout = Stdio::Inherit;
            cmd.stderr = Stdio::Inherit;
        }
    }

    /// The process is spawned: calls [`Output::on_spawn`], which may hold its records
    /// back for a moment; returns when to call [`Output::records_due`] if the process
    /// still runs then.
    pub(crate) fn spawned(&self) -> Option<Instant> {
        self.call_on_spawn(false)
    }

    /// The moment [`Output::spawned`] named has come: writes what was held back; returns
    /// the next such moment, if any.
    pub(crate) fn records_due(&self) -> Option<Instant> {
        self.call_on_spawn(false)
    }

    /// The attempt begins before its process (a task hook runs first): its records are
    /// written now.
    pub(crate) fn record_now(&self) {
        self.call_on_spawn(true);
    }

    fn call_on_spawn(&self, now: bool) -> Option<Instant> {
        let mut on_spawn = self.on_spawn.lock().unwrap_or_else(|e| e.into_inner());
        on_spawn.as_mut().and_then(|call| call(now))
    }

    /// The pump for a spawned child's pipes; `None` when output is not piped.
    pub(crate) fn pump(
        &self,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
    ) -> Option<Pump> {
        if stdout.is_none() && stderr.is_none() {
            return None;
        }
        let stream = |source: Option<Box<dyn ReadFd>>, target| {
            source.and_then(|source| {
                // Non-blocking, so one `read` too many never stalls the supervising loop.
                let nonblocking = fcntl(
                    source.fd().as_raw_fd(),
                    FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
                );
                if let Err(e) = nonblocking {
                    log::warn!("cannot read task output without blocking: {e}");
                    return None;
                }
                Some(Stream {
                    source,
                    target,
                    at_line_start: true,
                    pending: Vec::new(),
                })
            })
        };
        Some(Pump {
            streams: [
                stream(
                    stdout.map(|s| Box::new(s) as Box<dyn ReadFd>),
                    Target::Stdout,
                ),
                stream(
                    stderr.map(|s| Box::new(s) as Box<dyn ReadFd>),
                    Target::Stderr,
                ),
            ],
            prefix: self.prefix.clone(),
            capture: self.capture.clone(),
            buffer: READ_BUFFER
                .try_with(std::cell::Cell::take)
                .ok()
                .flatten()
                .filter(|b| b.len() == READ_SIZE)
                .unwrap_or_else(|| vec![0; READ_SIZE]),
            decorated: Vec::new(),
        })
    }
}

/// Whether runner's stdout and stderr are one terminal, pipe, socket or device (a shell's
/// `2>&1`, a service's journal, `/dev/null` for both): then what a task writes to either
/// lands in the same place, and the copy to runner's stdout stands for both. Regular
/// files are never taken as one: two opens of a file write at offsets of their own.
fn streams_are_one() -> bool {
    static ONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ONE.get_or_init(|| {
        use nix::sys::stat::{SFlag, fstat};
        let (Ok(out), Ok(err)) = (
            fstat(io::stdout().as_raw_fd()),
            fstat(io::stderr().as_raw_fd()),
        ) else {
            return false;
        };
        let kind = SFlag::from_bits_truncate(out.st_mode) & SFlag::S_IFMT;
        let shared = [SFlag::S_IFCHR, SFlag::S_IFIFO, SFlag::S_IFSOCK].contains(&kind);
        shared && (out.st_dev, out.st_ino, out.st_rdev) == (err.st_dev, err.st_ino, err.st_rdev)
    })
}

/// A pipe end the pump can poll and read.
trait ReadFd: Read + Send {
    fn fd(&self) -> BorrowedFd<'_>;
    fn into_owned(self: Box<Self>) -> OwnedFd;
}

impl ReadFd for ChildStdout {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn into_owned(self: Box<Self>) -> OwnedFd {
        OwnedFd::from(*self)
    }
}

impl ReadFd for ChildStderr {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
    fn into_owned(self: Box<Self>) -> OwnedFd {
        OwnedFd::from(*self)
    }
}

#[derive(Clone, Copy)]
enum Target {
    Stdout,
    Stderr,
}

struct Stream {
    source: Box<dyn ReadFd>,
    target: Target,
    at_line_start: bool,
    /// The end of a line not yet written, held while a live view shares the terminal
    /// (a view drawn after half a line would garble both).
    pending: Vec<u8>,
}

/// A line longer than this is written in pieces even while a view shares the terminal:
/// memory stays bounded.
const MAX_PENDING: usize = 64 * 1024;

impl Stream {
    /// Writes `out` to runner's stream, whole lines only while the terminal is shared.
    fn emit(&mut self, out: &[u8]) {
        if !crate::terminal::is_shared() {
            if self.pending.is_empty() {
                self.write(out);
            } else {
                let mut all = std::mem::take(&mut self.pending);
                all.extend_from_slice(out);
                self.write(&all);
            }
            return;
        }
        self.pending.extend_from_slice(out);
        let cut = match self.pending.iter().rposition(|&b| b == b'\n') {
            Some(last) => last + 1,
            None if self.pending.len() > MAX_PENDING => self.pending.len(),
            None => return,
        };
        let rest = self.pending.split_off(cut);
        let lines = std::mem::replace(&mut self.pending, rest);
        self.write(&lines);
    }

    /// At end-of-file: writes what is held; a last line without its newline is ended
    /// when `end_line` says so, and always while the terminal is shared (the view is
    /// drawn below it).
    fn finish(&mut self, end_line: bool) {
        let mut rest = std::mem::take(&mut self.pending);
        if end_line || (!rest.is_empty() && crate::terminal::is_shared()) {
            rest.push(b'\n');
        }
        if !rest.is_empty() {
            self.write(&rest);
        }
    }

    fn write(&self, bytes: &[u8]) {
        // A closed terminal must not stop the copy into the capture.
        crate::terminal::write(|| {
            // stdout is line-buffered: flushed, so the end of a line shows as it comes.
            let _ = match self.target {
                Target::Stdout => {
                    let mut out = io::stdout().lock();
                    out.write_all(bytes).and_then(|()| out.flush())
                }
                Target::Stderr => io::stderr().lock().write_all(bytes),
            };
        });
    }
}

/// Copies a child's piped output to runner's streams and to the capture.
pub(crate) struct Pump {
    streams: [Option<Stream>; 2],
    prefix: Option<String>,
    capture: Option<SharedCapture>,
    buffer: Vec<u8>,
    decorated: Vec<u8>,
}

/// How much a pump reads at once.
const READ_SIZE: usize = 8192;

thread_local! {
    /// The read buffer of the thread's last pump, for its next: zeroing 8 KiB for each
    /// attempt took about 9,000 of the 110,000 instructions (callgrind) that runner's
    /// chain thread spent on a task that prints nothing.
    static READ_BUFFER: std::cell::Cell<Option<Vec<u8>>> = const { std::cell::Cell::new(None) };
}

impl Drop for Pump {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        // A thread that is exiting has no buffer to keep.
        let _ = READ_BUFFER.try_with(|cell| cell.set(Some(buffer)));
    }
}

impl Pump {
    /// The descriptors still open, with their stream index, for `poll`.
    pub(crate) fn fds(&self) -> Vec<(usize, BorrowedFd<'_>)> {
        self.streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s.source.fd())))
            .collect()
    }

    /// Whether both pipes reached end-of-file.
    pub(crate) fn is_done(&self) -> bool {
        self.streams.iter().all(Option::is_none)
    }

    /// Copies whatever is ready on every stream, without waiting.
    pub(crate) fn drain_ready(&mut self) {
        for index in 0..self.streams.len() {
            self.drain(index);
        }
    }

    /// The pipes still open, each with the descriptor it is copied to (1 or 2).
    fn into_fds(mut self) -> Vec<(OwnedFd, i32)> {
        std::mem::take(&mut self.streams)
            .into_iter()
            .flatten()
            .map(|s| {
                if !s.pending.is_empty() {
                    s.write(&s.pending);
                }
                let target = match s.target {
                    Target::Stdout => RELAY_STDOUT,
                    Target::Stderr => RELAY_STDERR,
                };
                (s.source.into_owned(), target)
            })
            .collect()
    }

    /// Reads stream `index` until it would block, copying every chunk; closes it at EOF.
    pub(crate) fn drain(&mut self, index: usize) {
        loop {
            let Some(stream) = self.streams[index].as_mut() else {
                return;
            };
            let n = match stream.source.read(&mut self.buffer) {
                Ok(0) => {
                    // A last line without its newline is ended here, so the next task's
                    // prefixed line starts a line of its own.
                    let end_line = self.prefix.is_some() && !stream.at_line_start;
                    stream.finish(end_line);
                    self.streams[index] = None;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    stream.finish(false);
                    self.streams[index] = None;
                    return;
                }
            };
            let chunk = &self.buffer[..n];
            if let Some(capture) = &self.capture {
                let mut capture = capture.lock().unwrap_or_else(|e| e.into_inner());
                let _ = capture.write_all(chunk);
            }
            let out: &[u8] = match &self.prefix {
                Some(prefix) => {
                    self.decorated.clear();
                    for piece in chunk.split_inclusive(|&b| b == b'\n') {
                        if stream.at_line_start {
                            self.decorated.extend_from_slice(prefix.as_bytes());
                        }
                        self.decorated.extend_from_slice(piece);
                        stream.at_line_start = piece.ends_with(b"\n");
                    }
                    &self.decorated
                }
                None => chunk,
            };
            stream.emit(out);
        }
    }
}

/// The thread that keeps copying pumps whose pipes outlived their task.
struct Lingering {
    pumps: Sender<Pump>,
    wake: UnixStream,
    thread: JoinHandle<Vec<Pump>>,
}

static LINGERING: Mutex<Option<Lingering>> = Mutex::new(None);

/// Keeps copying `pump` in the background until its pipes reach end-of-file (or runner
/// exits and [`hand_off`] takes over). Never blocks the caller.
pub(crate) fn linger(pump: Pump) {
    let mut guard = LINGERING.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_none() {
        match start_lingering() {
            Ok(lingering) => *guard = Some(lingering),
            Err(e) => {
                log::warn!("cannot keep copying a leftover process's output: {e}");
                return;
            }
        }
    }
    if let Some(lingering) = guard.as_mut()
        && lingering.pumps.send(pump).is_ok()
    {
        let _ = lingering.wake.write_all(b"+");
    }
}

fn start_lingering() -> io::Result<Lingering> {
    let (wake, mut woken) = UnixStream::pair()?;
    woken.set_nonblocking(true)?;
    let (pumps, incoming) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("leftover-output".to_owned())
        .spawn(move || copy_lingering(&mut woken, &incoming))?;
    Ok(Lingering {
        pumps,
        wake,
        thread,
    })
}

/// The lingering thread: polls every open pipe and the wake socket; returns the pumps
/// still open when told to stop (the channel is closed).
fn copy_lingering(woken: &mut UnixStream, incoming: &Receiver<Pump>) -> Vec<Pump> {
    let mut pumps: Vec<Pump> = Vec::new();
    loop {
        loop {
            match incoming.try_recv() {
                Ok(pump) => pumps.push(pump),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => return pumps,
            }
        }
        let ready: Vec<(usize, usize)> = {
            let mut fds = vec![PollFd::new(woken.as_fd(), PollFlags::POLLIN)];
            let mut where_ = Vec::new();
            for (p, pump) in pumps.iter().enumerate() {
                for (index, fd) in pump.fds() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    where_.push((p, index));
                }
            }
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            fds[1..]
                .iter()
                .zip(where_)
                .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                .map(|(_, at)| at)
                .collect()
        };
        let mut byte = [0u8; 64];
        while woken.read(&mut byte).is_ok_and(|n| n > 0) {}
        for (p, index) in ready {
            pumps[p].drain(index);
        }
        pumps.retain(|p| !p.is_done());
    }
}

/// At runner's exit: copies what the lingering pipes hold now, then gives those still
/// open to the relay process, which outlives runner.
pub(crate) fn hand_off() {
    let Some(lingering) = LINGERING.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    let Lingering {
        pumps,
        mut wake,
        thread,
    } = lingering;
    drop(pumps);
    let _ = wake.write_all(b"-");
    let Ok(mut pumps) = thread.join() else {
        return;
    };
    let mut streams: Vec<(OwnedFd, i32)> = Vec::new();
    for mut pump in pumps.drain(..) {
        pump.drain_ready();
        streams.extend(pump.into_fds());
    }
    if streams.is_empty() {
        return;
    }
    let _ = io::stdout().flush();
    let raw: Vec<(i32, i32)> = streams.iter().map(|(fd, t)| (fd.as_raw_fd(), *t)).collect();
    match pgroup::start_relay(&raw) {
        Ok(()) => log::debug!(
            "{} output pipe(s) of leftover processes handed to the relay",
            raw.len()
        ),
        Err(e) => log::warn!("cannot start the output relay for leftover processes: {e}"),
    }
    // The relay has its own copies.
    drop(streams);
}
