//! Where a task's stdout and stderr go.
//!
//! The fast path hands the task runner's own descriptors, costing nothing. When output
//! must also be captured, or prefixed because several tasks run at once, each stream gets
//! a pipe and a reader thread that copies chunks to runner's stream and to the capture.
//! Memory stays flat: readers move fixed-size chunks and never hold a whole line.

use std::io::{self, Read, Write};
use std::process::{ChildStderr, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Something that keeps a copy of an attempt's output (the records' capture file).
pub(crate) trait Capture: Write + Send {}
impl<T: Write + Send> Capture for T {}

/// A capture shared by the stdout and stderr readers, interleaved chunk by chunk.
pub(crate) type SharedCapture = Arc<Mutex<dyn Capture>>;

/// How long to wait for the readers once the task has exited. A grandchild that keeps the
/// pipe open (a daemon started with `&`) must not hold up the chain.
const READER_JOIN_BOUND: Duration = Duration::from_millis(500);

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
        self.prefix.is_some() || self.capture.is_some()
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

    /// Starts the reader threads for a spawned child's pipes, if any.
    pub(crate) fn start(
        &self,
        stdout: Option<ChildStdout>,
        stderr: Option<ChildStderr>,
    ) -> Readers {
        let (done, finished) = mpsc::channel();
        let mut started = 0;
        if let Some(out) = stdout {
            started += self.spawn_reader(out, Stream::Stdout, done.clone());
        }
        if let Some(err) = stderr {
            started += self.spawn_reader(err, Stream::Stderr, done.clone());
        }
        Readers { started, finished }
    }

    fn spawn_reader(
        &self,
        source: impl Read + Send + 'static,
        stream: Stream,
        done: mpsc::Sender<()>,
    ) -> usize {
        let prefix = self.prefix.clone();
        let capture = self.capture.clone();
        let spawned = thread::Builder::new()
            .name("output".to_owned())
            .spawn(move || {
                copy_stream(source, stream, prefix.as_deref(), capture.as_ref());
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => 1,
            Err(e) => {
                log::warn!("cannot start an output reader: {e}");
                0
            }
        }
    }
}

/// The running reader threads of one attempt.
pub(crate) struct Readers {
    started: usize,
    finished: mpsc::Receiver<()>,
}

impl Readers {
    /// Waits (boundedly) for the readers to drain the pipes after the task exited.
    pub(crate) fn finish(self) {
        let deadline = Instant::now() + READER_JOIN_BOUND;
        for _ in 0..self.started {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.finished.recv_timeout(left).is_err() {
                log::debug!("a task's output pipe is still held open by a leftover process");
                return;
            }
        }
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

fn copy_stream(
    mut source: impl Read,
    stream: Stream,
    prefix: Option<&str>,
    capture: Option<&SharedCapture>,
) {
    let mut buf = [0u8; 8192];
    let mut at_line_start = true;
    let mut decorated = Vec::new();
    loop {
        let n = match source.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let chunk = &buf[..n];
        if let Some(capture) = capture {
            let mut capture = capture.lock().unwrap_or_else(|e| e.into_inner());
            let _ = capture.write_all(chunk);
        }
        let out: &[u8] = match prefix {
            Some(prefix) => {
                decorated.clear();
                for piece in chunk.split_inclusive(|&b| b == b'\n') {
                    if at_line_start {
                        decorated.extend_from_slice(prefix.as_bytes());
                    }
                    decorated.extend_from_slice(piece);
                    at_line_start = piece.ends_with(b"\n");
                }
                &decorated
            }
            None => chunk,
        };
        // A closed terminal must not stop the copy into the capture.
        let _ = match stream {
            Stream::Stdout => io::stdout().lock().write_all(out),
            Stream::Stderr => io::stderr().lock().write_all(out),
        };
    }
}
