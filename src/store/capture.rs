//! An attempt's captured output, capped at `log_max_bytes` with the head and the tail kept.
//!
//! The head is written straight to the file. Once it is full, further output goes into a
//! ring in a side file of the tail's size, so neither memory nor disk grows with a chatty
//! task. When the attempt ends, a marker saying how much was dropped and the ring, in
//! order, are appended to the file. The beginning (what the task set out to do) and the
//! end (how it failed) are what an admin reads.
//!
//! Every capture of a run also writes what it keeps, as it comes, to the run's dsari
//! `output.txt` ([`RunOutput`]), so dsari's tools (and `tail -f`) see a chain's output in
//! run order. Nothing is synced: the file is as durable as the task's own output was.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A capped capture file being written. The file is only created when the first byte
/// arrives: most tasks of a chain print nothing, and an empty file per attempt would
/// cost an inode each.
#[derive(Debug)]
pub(crate) struct CaptureFile {
    file: Option<File>,
    path: PathBuf,
    head_cap: u64,
    tail_cap: u64,
    head_written: u64,
    ring: Option<File>,
    ring_written: u64,
    finished: bool,
    mirror: Option<Mirror>,
    late_written: u64,
}

/// A run's `output.txt`, shared by the captures of all its attempts.
#[derive(Debug, Clone)]
pub(crate) struct RunOutput {
    file: Arc<Mutex<File>>,
    path: PathBuf,
}

impl RunOutput {
    /// Creates (empty, mode 0600) the run's `output.txt` at `path`. It exists from the
    /// run's start even if no task prints anything: dsari's tools expect it.
    pub(crate) fn create(path: &Path) -> io::Result<RunOutput> {
        let file = crate::state::open_private(path, 0o600, false, true)?;
        Ok(RunOutput {
            file: Arc::new(Mutex::new(file)),
            path: path.to_owned(),
        })
    }

    /// Opens a run's existing `output.txt` to append to it (a run resumed by `replay`
    /// or `skip`), creating it if it is missing.
    pub(crate) fn reopen(path: &Path) -> io::Result<RunOutput> {
        use std::os::unix::fs::OpenOptionsExt;
        // Like every file runner writes: a symlink planted in its place is not followed.
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(RunOutput {
            file: Arc::new(Mutex::new(file)),
            path: path.to_owned(),
        })
    }
}

/// One capture's view of the run's `output.txt`: with the task's prefix at line
/// starts when several tasks may run at once, as on the terminal.
#[derive(Debug)]
struct Mirror {
    output: RunOutput,
    prefix: Option<Vec<u8>>,
    at_line_start: bool,
    failed: bool,
}

impl Mirror {
    fn write(&mut self, data: &[u8]) {
        if self.failed || data.is_empty() {
            return;
        }
        let mut file = self.output.file.lock().unwrap_or_else(|e| e.into_inner());
        let result = match &self.prefix {
            None => file.write_all(data),
            Some(prefix) => {
                let mut decorated = Vec::with_capacity(data.len() + prefix.len());
                for piece in data.split_inclusive(|&b| b == b'\n') {
                    if self.at_line_start {
                        decorated.extend_from_slice(prefix);
                    }
                    decorated.extend_from_slice(piece);
                    self.at_line_start = piece.ends_with(b"\n");
                }
                file.write_all(&decorated)
            }
        };
        if let Err(e) = result {
            self.failed = true;
            log::warn!("cannot write {}: {e}", self.output.path.display());
        }
    }

    /// Ends a prefixed last line that has no newline, so the next task's line starts
    /// a line of its own in `output.txt`.
    fn end_line(&mut self) {
        if self.prefix.is_some() && !self.at_line_start {
            self.write(b"\n");
        }
    }
}

impl CaptureFile {
    /// A capture into `path` (created with mode 0600 on the first write: output may hold
    /// secrets) with a total cap of `max_bytes`.
    pub(crate) fn new(path: &Path, max_bytes: u64) -> CaptureFile {
        let head_cap = max_bytes / 2;
        CaptureFile {
            file: None,
            path: path.to_owned(),
            head_cap,
            tail_cap: max_bytes - head_cap,
            head_written: 0,
            ring: None,
            ring_written: 0,
            finished: false,
            mirror: None,
            late_written: 0,
        }
    }

    /// Also writes what is kept to the run's `output.txt`, each line after `prefix`
    /// when one is given.
    pub(crate) fn mirrored(mut self, output: RunOutput, prefix: Option<String>) -> CaptureFile {
        self.mirror = Some(Mirror {
            output,
            prefix: prefix.map(String::into_bytes),
            at_line_start: true,
            failed: false,
        });
        self
    }

    /// Writes `data` to the file and to `output.txt`.
    fn emit(&mut self, data: &[u8]) -> io::Result<()> {
        self.file()?.write_all(data)?;
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.write(data);
        }
        Ok(())
    }

    /// Whether anything was captured (and so whether the file exists).
    pub(crate) fn is_empty(&self) -> bool {
        self.file.is_none()
    }

    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let file = crate::state::open_private(&self.path, 0o600, false, true)?;
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("the file was just opened"))
    }

    fn ring_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".tail");
        PathBuf::from(name)
    }

    fn write_ring(&mut self, mut data: &[u8]) -> io::Result<()> {
        if self.tail_cap == 0 {
            self.ring_written += data.len() as u64;
            return Ok(());
        }
        if self.ring.is_none() {
            let ring = crate::state::open_private(&self.ring_path(), 0o600, true, true)?;
            self.ring = Some(ring);
        }
        let ring = self.ring.as_ref().expect("ring was just opened");
        // Only the last tail_cap bytes of a large write can survive.
        if data.len() as u64 > self.tail_cap {
            let skip = data.len() - self.tail_cap as usize;
            self.ring_written += skip as u64;
            data = &data[skip..];
        }
        while !data.is_empty() {
            let offset = self.ring_written % self.tail_cap;
            let room = (self.tail_cap - offset) as usize;
            let n = room.min(data.len());
            ring.write_all_at(&data[..n], offset)?;
            self.ring_written += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    /// Appends the marker and the ring to the file (and to `output.txt`) and removes the
    /// ring. Later writes (from a leftover process still holding the pipe) are appended
    /// after it, up to the tail's share of the cap.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if self.ring_written == 0 {
            if let Some(mirror) = &mut self.mirror {
                mirror.end_line();
            }
            return Ok(());
        }
        let kept = self.ring_written.min(self.tail_cap);
        let dropped = self.ring_written - kept;
        if dropped > 0 {
            let marker = format!(
                "\n[runner: {dropped} bytes of output omitted; log_max_bytes keeps the first and last parts]\n"
            );
            self.emit(marker.as_bytes())?;
        }
        if let Some(ring) = self.ring.take() {
            // The ring's oldest byte is where the next would go once it has wrapped.
            let oldest = if self.ring_written > self.tail_cap {
                self.ring_written % self.tail_cap
            } else {
                0
            };
            let mut buffer = vec![0; 8192];
            let mut copied = 0;
            while copied < kept {
                let offset = (oldest + copied) % self.tail_cap;
                let room = (self.tail_cap - offset).min(kept - copied);
                let n = room.min(buffer.len() as u64) as usize;
                ring.read_exact_at(&mut buffer[..n], offset)?;
                self.emit(&buffer[..n])?;
                copied += n as u64;
            }
            drop(ring);
            let _ = std::fs::remove_file(self.ring_path());
        }
        if let Some(mirror) = &mut self.mirror {
            mirror.end_line();
        }
        self.file()?.flush()
    }
}

impl Write for CaptureFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            let room = self.tail_cap.saturating_sub(self.late_written) as usize;
            let late = &data[..room.min(data.len())];
            if !late.is_empty() {
                self.emit(late)?;
                self.late_written += late.len() as u64;
            }
            return Ok(data.len());
        }
        let room = self.head_cap.saturating_sub(self.head_written) as usize;
        let (head, rest) = data.split_at(room.min(data.len()));
        if !head.is_empty() {
            self.emit(head)?;
            self.head_written += head.len() as u64;
        }
        if !rest.is_empty() {
            self.write_ring(rest)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(max: u64, chunks: &[&[u8]]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        let mut c = CaptureFile::new(&path, max);
        for chunk in chunks {
            c.write_all(chunk).expect("write");
        }
        c.finish().expect("finish");
        assert!(!dir.path().join("out.log.tail").exists(), "ring removed");
        std::fs::read_to_string(&path).expect("read")
    }

    #[test]
    fn small_output_is_kept_whole() {
        assert_eq!(capture(100, &[b"hello ", b"world\n"]), "hello world\n");
    }

    #[test]
    fn output_exactly_at_the_cap_has_no_marker() {
        assert_eq!(capture(10, &[b"0123456789"]), "0123456789");
    }

    #[test]
    fn long_output_keeps_head_and_tail_in_order() {
        // cap 10: head 5 bytes, tail 5 bytes, written in odd-sized pieces.
        let text = capture(10, &[b"abc", b"defg", b"hijklm", b"nopq", b"rstuvwxyz"]);
        assert!(
            text.starts_with("abcde\n[runner: 16 bytes of output omitted"),
            "{text}"
        );
        assert!(text.ends_with("]\nvwxyz"), "{text}");
    }

    #[test]
    fn tail_shorter_than_ring_is_not_padded() {
        let text = capture(10, &[b"abcdefg"]);
        assert_eq!(text, "abcdefg");
    }

    #[test]
    fn nothing_written_creates_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        let mut c = CaptureFile::new(&path, 100);
        c.finish().expect("finish");
        assert!(c.is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn writes_after_finish_are_appended_up_to_the_tail_share() {
        // A leftover process may still write once its task ended: kept, but capped.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        let mut c = CaptureFile::new(&path, 20);
        c.write_all(b"before").expect("write");
        c.finish().expect("finish");
        c.write_all(b"after").expect("write");
        c.write_all(b"-and-much-more-than-fits").expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "beforeafter-and-"
        );
    }

    #[test]
    fn output_txt_gets_every_capture_in_order_capped_and_prefixed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = RunOutput::create(&dir.path().join("output.txt")).expect("create");
        let mut a = CaptureFile::new(&dir.path().join("a.log"), 10).mirrored(out.clone(), None);
        a.write_all(b"abc").expect("write");
        a.write_all(b"defghijklmnopqrstuvwxyz").expect("write");
        a.finish().expect("finish");
        let mut b = CaptureFile::new(&dir.path().join("b.log"), 100)
            .mirrored(out.clone(), Some("[b] ".to_owned()));
        b.write_all(b"one\ntw").expect("write");
        b.write_all(b"o\n").expect("write");
        b.finish().expect("finish");
        let a_log = std::fs::read_to_string(dir.path().join("a.log")).expect("read");
        let text = std::fs::read_to_string(dir.path().join("output.txt")).expect("read");
        assert_eq!(text, format!("{a_log}[b] one\n[b] two\n"));
        assert!(a_log.starts_with("abcde\n[runner: 16 bytes"), "{a_log}");
        assert!(a_log.ends_with("]\nvwxyz"), "{a_log}");
    }

    #[test]
    fn a_prefixed_last_line_without_newline_is_ended_in_output_txt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = RunOutput::create(&dir.path().join("output.txt")).expect("create");
        let mut a = CaptureFile::new(&dir.path().join("a.log"), 100)
            .mirrored(out.clone(), Some("[a] ".to_owned()));
        a.write_all(b"one\npartial").expect("write");
        a.finish().expect("finish");
        let mut b = CaptureFile::new(&dir.path().join("b.log"), 100)
            .mirrored(out.clone(), Some("[b] ".to_owned()));
        b.write_all(b"two\n").expect("write");
        b.finish().expect("finish");
        let text = std::fs::read_to_string(dir.path().join("output.txt")).expect("read");
        assert_eq!(text, "[a] one\n[a] partial\n[b] two\n");
        let a_log = std::fs::read_to_string(dir.path().join("a.log")).expect("read");
        assert_eq!(
            a_log, "one\npartial",
            "the attempt's own log keeps its bytes"
        );
    }

    #[test]
    fn a_silent_run_has_an_empty_output_txt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("output.txt");
        let out = RunOutput::create(&path).expect("create");
        let mut c = CaptureFile::new(&dir.path().join("a.log"), 100).mirrored(out, None);
        c.finish().expect("finish");
        assert_eq!(std::fs::read(&path).expect("read"), b"");
    }

    #[test]
    fn memory_does_not_grow_with_output() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        let mut c = CaptureFile::new(&path, 1024);
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..160 {
            c.write_all(&block).expect("write");
        }
        c.finish().expect("finish");
        let size = std::fs::metadata(&path).expect("meta").len();
        assert!(size < 1024 + 200, "file is capped: {size}");
    }
}
