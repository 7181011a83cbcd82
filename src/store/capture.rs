//! An attempt's captured output, capped at `log_max_bytes` with the head and the tail kept.
//!
//! The head is written straight to the file. Once it is full, further output goes into a
//! ring in a side file of the tail's size, so neither memory nor disk grows with a chatty
//! task. When the attempt ends, a marker saying how much was dropped and the ring, in
//! order, are appended to the file. The beginning (what the task set out to do) and the
//! end (how it failed) are what an admin reads.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

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
        }
    }

    /// Whether anything was captured (and so whether the file exists).
    pub(crate) fn is_empty(&self) -> bool {
        self.file.is_none()
    }

    fn file(&mut self) -> io::Result<&mut File> {
        if self.file.is_none() {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&self.path)?;
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
            let ring = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(self.ring_path())?;
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

    /// Appends the marker and the ring to the file and removes the ring. Later writes
    /// (from a leftover process holding the pipe) are dropped.
    pub(crate) fn finish(&mut self) -> io::Result<()> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        if self.ring_written == 0 {
            return Ok(());
        }
        let kept = self.ring_written.min(self.tail_cap);
        let dropped = self.ring_written - kept;
        let (tail_cap, ring_written) = (self.tail_cap, self.ring_written);
        let ring = self.ring.take();
        let ring_path = self.ring_path();
        let file = self.file()?;
        if dropped > 0 {
            writeln!(
                file,
                "\n[runner: {dropped} bytes of output omitted; log_max_bytes keeps the first and last parts]"
            )?;
        }
        if let Some(mut ring) = ring {
            if ring_written > tail_cap {
                // The ring is full and wrapped: its oldest byte is where the next would go.
                let oldest = ring_written % tail_cap;
                ring.seek(SeekFrom::Start(oldest))?;
                io::copy(&mut (&mut ring).take(tail_cap - oldest), file)?;
                ring.seek(SeekFrom::Start(0))?;
                io::copy(&mut (&mut ring).take(oldest), file)?;
            } else {
                ring.seek(SeekFrom::Start(0))?;
                io::copy(&mut (&mut ring).take(kept), file)?;
            }
            drop(ring);
            let _ = std::fs::remove_file(ring_path);
        }
        file.flush()
    }
}

impl Write for CaptureFile {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(data.len());
        }
        let room = self.head_cap.saturating_sub(self.head_written) as usize;
        let (head, rest) = data.split_at(room.min(data.len()));
        if !head.is_empty() {
            self.file()?.write_all(head)?;
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
    fn writes_after_finish_are_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.log");
        let mut c = CaptureFile::new(&path, 100);
        c.write_all(b"before").expect("write");
        c.finish().expect("finish");
        c.write_all(b"after").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "before");
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
