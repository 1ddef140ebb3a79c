//! Size-rotated log files, as the seeds' winston transports keep them: `combined.log` gets every
//! line, `error.log` only errors; when writing a batch would take a file past `max_size`, it is
//! renamed to `NAME.1` (older ones shift to `.2`, `.3`, …) and a new one is started, so that at
//! most `max_files` files exist per log (the current one included). Writes come in batches from
//! [`super::log_writer::BatchWriter`], never from the request path.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An append-only file that rotates by size.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    max_size: u64,
    max_files: usize,
    file: Option<File>,
    size: u64,
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending; its current size counts toward `max_size`.
    pub fn open(path: PathBuf, max_size: u64, max_files: usize) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path,
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            file: Some(file),
            size,
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    /// `NAME` → `NAME.1` → … → `NAME.{max_files - 1}`; the oldest is deleted.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        let keep = self.max_files - 1;
        if keep == 0 {
            remove_if_exists(&self.path)?;
        } else {
            remove_if_exists(&self.numbered(keep))?;
            for n in (1..keep).rev() {
                rename_if_exists(&self.numbered(n), &self.numbered(n + 1))?;
            }
            rename_if_exists(&self.path, &self.numbered(1))?;
        }
        self.file = Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?,
        );
        self.size = 0;
        Ok(())
    }
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

impl Write for RotatingFile {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_size {
            self.rotate()?;
        }
        let file = match self.file.as_mut() {
            Some(file) => file,
            None => {
                self.rotate()?;
                self.file.as_mut().expect("rotate opens a file")
            }
        };
        let written = file.write(bytes)?;
        self.size += written as u64;
        Ok(written)
    }

    /// Batches are whole lines: write them in one piece so a line never straddles two files.
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_size {
            self.rotate()?;
        }
        let file = match self.file.as_mut() {
            Some(file) => file,
            None => {
                self.rotate()?;
                self.file.as_mut().expect("rotate opens a file")
            }
        };
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
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

    fn files(dir: &Path) -> Vec<(String, u64)> {
        let mut names: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        names.sort();
        names
    }

    #[test]
    fn rotates_at_the_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("combined.log");
        let mut file = RotatingFile::open(path.clone(), 100, 3).unwrap();
        // 40-byte lines: two fit in 100 bytes, the third starts a new file.
        for n in 0..9 {
            file.write_all(format!("{n:039}\n").as_bytes()).unwrap();
        }
        file.flush().unwrap();
        assert_eq!(
            files(dir.path()),
            vec![
                ("combined.log".to_owned(), 40),
                ("combined.log.1".to_owned(), 80),
                ("combined.log.2".to_owned(), 80),
            ],
            "pruned to 3 files"
        );
        // Newest in the current file, the one before in .1, oldest kept in .2.
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(&path), format!("{:039}\n", 8));
        assert!(read(&dir.path().join("combined.log.1")).contains("0006\n"));
        assert!(read(&dir.path().join("combined.log.2")).contains("0004\n"));
        assert!(!read(&dir.path().join("combined.log.2")).contains("0003\n"));
    }

    #[test]
    fn reopening_counts_the_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("error.log");
        std::fs::write(&path, vec![b'x'; 90]).unwrap();
        let mut file = RotatingFile::open(path.clone(), 100, 2).unwrap();
        file.write_all(b"0123456789abc\n").unwrap();
        assert_eq!(
            files(dir.path()),
            vec![("error.log".to_owned(), 14), ("error.log.1".to_owned(), 90)]
        );
        // One file only: rotation truncates.
        let mut single = RotatingFile::open(dir.path().join("one.log"), 10, 1).unwrap();
        single.write_all(b"123456789\n").unwrap();
        single.write_all(b"abc\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("one.log")).unwrap(),
            "abc\n"
        );
        assert!(!dir.path().join("one.log.1").exists());
    }
}
