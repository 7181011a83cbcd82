//! Where a task's stdout and stderr go.
//!
//! The fast path hands the task runner's own descriptors (or a daemon run's
//! `output.txt`), costing nothing. When output must also be captured, or prefixed because
//! several tasks run at once, each stream gets a pipe that the supervising thread itself
//! drains whenever `poll` says so ([`Pump`]): no reader threads, and memory stays flat
//! because fixed-size chunks are moved and no whole line is ever held.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

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
    pub(crate) file: Option<std::fs::File>,
}

impl Output {
    fn needs_pipes(&self) -> bool {
        self.file.is_none() && (self.prefix.is_some() || self.capture.is_some())
    }

    /// Sets the child's stdout and stderr before it is spawned.
    pub(crate) fn configure(&self, cmd: &mut Command) {
        if let Some(file) = &self.file {
            match (file.try_clone(), file.try_clone()) {
                (Ok(out), Ok(err)) => {
                    cmd.stdout(out).stderr(err);
                    return;
                }
                (Err(e), _) | (_, Err(e)) => {
                    log::warn!("cannot hand the output file to the process: {e}");
                }
            }
        }
        if self.needs_pipes() {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        } else {
            cmd.stdout(Stdio::inherit()).stderr(Stdio::inherit());
        }
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
            buffer: vec![0; 8192],
            decorated: Vec::new(),
        })
    }
}

/// A pipe end the pump can poll and read.
trait ReadFd: Read + Send {
    fn fd(&self) -> BorrowedFd<'_>;
}

impl ReadFd for ChildStdout {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }
}

impl ReadFd for ChildStderr {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
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
}

/// Copies a child's piped output to runner's streams and to the capture.
pub(crate) struct Pump {
    streams: [Option<Stream>; 2],
    prefix: Option<String>,
    capture: Option<SharedCapture>,
    buffer: Vec<u8>,
    decorated: Vec<u8>,
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

    /// Reads stream `index` until it would block, copying every chunk; closes it at EOF.
    pub(crate) fn drain(&mut self, index: usize) {
        loop {
            let Some(stream) = self.streams[index].as_mut() else {
                return;
            };
            let n = match stream.source.read(&mut self.buffer) {
                Ok(0) => {
                    self.streams[index] = None;
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
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
            // A closed terminal must not stop the copy into the capture.
            let _ = match stream.target {
                Target::Stdout => io::stdout().lock().write_all(out),
                Target::Stderr => io::stderr().lock().write_all(out),
            };
        }
    }
}
