//! Export files as numbered lines: a zip of JSON-lines entries (gzipped or not: Amplitude's
//! Export API), one gzipped file, or plain JSON lines. What a file is comes from its first bytes,
//! not its name. Zip entries are opened one at a time and gzip is decoded as it streams, so
//! memory stays bounded whatever the file's size.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::bufread::MultiGzDecoder;
use serde::{Deserialize, Serialize};

use crate::lines::read_line;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";
/// An archive with no entries starts with its end record.
const EMPTY_ZIP_MAGIC: [u8; 4] = *b"PK\x05\x06";
/// Large reads: decoding and the line scan, not system calls, should be the cost.
const READ_BUFFER: usize = 256 * 1024;

/// How far a file was read: every entry before `entry` (zip entries by index; 0 for other
/// files), and the first `line` lines of `entry`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub entry: usize,
    pub line: u64,
}

/// One line of a file, where it is.
pub struct LineAt<'a> {
    /// The zip entry's index (0 for other files) and name.
    pub entry: usize,
    pub entry_name: Option<&'a str>,
    /// 1-based, within the entry.
    pub number: u64,
    pub line: Line<'a>,
}

impl LineAt<'_> {
    pub fn position(&self) -> Position {
        Position {
            entry: self.entry,
            line: self.number,
        }
    }
}

pub enum Line<'a> {
    Text(&'a [u8]),
    /// Longer than the bound: only its length is known.
    TooLong(usize),
}

/// Whether [`each_line`] read everything or was told to stop.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    Finished,
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {error}", path.display())]
    Open { path: PathBuf, error: io::Error },
    #[error("{} is not a readable zip archive: {error}", path.display())]
    Zip {
        path: PathBuf,
        error: zip::result::ZipError,
    },
    #[error("cannot read {at} after line {line}: {error}")]
    Read {
        at: String,
        line: u64,
        error: io::Error,
    },
}

/// Calls `each` with every line of `path` after `from`, in order, until it breaks. Each line is
/// at most `max_line` bytes (longer ones come as [`Line::TooLong`]); `offset` follows the byte
/// offset read in the file, for progress.
pub fn each_line(
    path: &Path,
    from: Position,
    max_line: usize,
    offset: &Arc<AtomicU64>,
    mut each: impl FnMut(LineAt<'_>) -> ControlFlow<()>,
) -> Result<Flow, ReadError> {
    let open = |error| ReadError::Open {
        path: path.to_owned(),
        error,
    };
    let mut file = File::open(path).map_err(open)?;
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut file, &mut magic).map_err(open)?;
    file.seek(SeekFrom::Start(0)).map_err(open)?;
    let file = Tracked {
        inner: file,
        offset: offset.clone(),
    };
    let is_zip = got == 4 && (magic == ZIP_MAGIC || magic == EMPTY_ZIP_MAGIC);
    if !is_zip {
        let reader = BufReader::with_capacity(READ_BUFFER, file);
        let at = path.display().to_string();
        return lines_of(reader, &at, None, 0, from.line, max_line, &mut each);
    }
    let zip_error = |error| ReadError::Zip {
        path: path.to_owned(),
        error,
    };
    let mut archive = zip::ZipArchive::new(file).map_err(zip_error)?;
    for index in from.entry..archive.len() {
        let entry = archive.by_index(index).map_err(zip_error)?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("entry {index}"));
        // macOS archivers add resource forks under __MACOSX/: not the export's data.
        if entry.is_dir() || name.starts_with("__MACOSX/") {
            continue;
        }
        let skip = if index == from.entry { from.line } else { 0 };
        let at = format!("{} ({name})", path.display());
        let reader = BufReader::with_capacity(READ_BUFFER, entry);
        let flow = lines_of(reader, &at, Some(&name), index, skip, max_line, &mut each)?;
        if flow == Flow::Stopped {
            return Ok(Flow::Stopped);
        }
    }
    Ok(Flow::Finished)
}

/// The lines of one stream (a file or a zip entry), gunzipped when it starts like gzip; the
/// first `skip` lines are read past.
fn lines_of(
    mut reader: impl BufRead,
    at: &str,
    name: Option<&str>,
    entry: usize,
    skip: u64,
    max_line: usize,
    each: &mut impl FnMut(LineAt<'_>) -> ControlFlow<()>,
) -> Result<Flow, ReadError> {
    let failed = |line, error| ReadError::Read {
        at: at.to_owned(),
        line,
        error,
    };
    let gzipped = reader
        .fill_buf()
        .map_err(|e| failed(0, e))?
        .starts_with(&GZIP_MAGIC);
    // Exports are often several gzip members end to end; all of them are read.
    let mut reader: Box<dyn BufRead + '_> = if gzipped {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(reader),
        ))
    } else {
        Box::new(reader)
    };
    let mut buf = Vec::new();
    let mut number = 0u64;
    while let Some(len) =
        read_line(&mut reader, &mut buf, max_line).map_err(|e| failed(number, e))?
    {
        number += 1;
        if number <= skip {
            continue;
        }
        let line = if len > max_line {
            Line::TooLong(len)
        } else if number == 1 {
            Line::Text(buf.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&buf))
        } else {
            Line::Text(&buf)
        };
        let at = LineAt {
            entry,
            entry_name: name,
            number,
            line,
        };
        if each(at).is_break() {
            return Ok(Flow::Stopped);
        }
    }
    Ok(Flow::Finished)
}

/// Fills `buf` as far as the file goes.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A file that reports where it is read: the zip reader seeks, so this is the offset, not a sum.
struct Tracked {
    inner: File,
    offset: Arc<AtomicU64>,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.offset.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for Tracked {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let at = self.inner.seek(to)?;
        self.offset.store(at, Ordering::Relaxed);
        Ok(at)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use zip::write::SimpleFileOptions;

    use super::*;

    /// A file of its own under the system's temporary directory, removed when dropped.
    pub struct TempFile(pub PathBuf);

    impl TempFile {
        pub fn new(name: &str, bytes: &[u8]) -> TempFile {
            let dir = std::env::temp_dir().join(format!("gf-import-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    pub fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    /// A zip of `(name, bytes)` entries, deflated.
    pub fn zip(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, bytes) in entries {
            zip.start_file(*name, SimpleFileOptions::default()).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// Every line read from `path` after `from`: (entry, number, text or `TOO LONG n`).
    fn read(path: &Path, from: Position, max: usize) -> Vec<(usize, u64, String)> {
        let mut out = Vec::new();
        let offset = Arc::new(AtomicU64::new(0));
        let flow = each_line(path, from, max, &offset, |at| {
            let text = match at.line {
                Line::Text(t) => String::from_utf8_lossy(t).into_owned(),
                Line::TooLong(n) => format!("TOO LONG {n}"),
            };
            out.push((at.entry, at.number, text));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(flow, Flow::Finished);
        assert!(offset.load(Ordering::Relaxed) > 0);
        out
    }

    fn line(entry: usize, number: u64, text: &str) -> (usize, u64, String) {
        (entry, number, text.to_owned())
    }

    #[test]
    fn plain_gzipped_and_concatenated_gzip_files_read_the_same() {
        let text = b"{\"a\":1}\n{\"b\":2}\n";
        let expected = vec![line(0, 1, "{\"a\":1}"), line(0, 2, "{\"b\":2}")];
        let plain = TempFile::new("events.jsonl", text);
        assert_eq!(read(&plain.0, Position::default(), 100), expected);
        let gz = TempFile::new("events.json.gz", &gzip(text));
        assert_eq!(read(&gz.0, Position::default(), 100), expected);
        // Two gzip members end to end, the way exports are often appended.
        let mut two = gzip(b"{\"a\":1}\n");
        two.extend(gzip(b"{\"b\":2}\n"));
        let two = TempFile::new("whatever.dat", &two);
        assert_eq!(read(&two.0, Position::default(), 100), expected);
    }

    #[test]
    fn a_zip_of_gzipped_entries_is_read_entry_by_entry() {
        let archive = zip(&[
            ("123/", Vec::new()),
            (
                "123/123_2024-01-01_0#0.json.gz",
                gzip(b"{\"a\":1}\n{\"a\":2}\n"),
            ),
            ("__MACOSX/._junk", b"\x00\x05".to_vec()),
            ("123/123_2024-01-01_1#0.json", b"{\"b\":1}".to_vec()),
        ]);
        let file = TempFile::new("export.zip", &archive);
        assert_eq!(
            read(&file.0, Position::default(), 100),
            vec![
                line(1, 1, "{\"a\":1}"),
                line(1, 2, "{\"a\":2}"),
                line(3, 1, "{\"b\":1}"),
            ]
        );
        // Resuming after the first line of entry 1 skips what was done, not the next entry.
        assert_eq!(
            read(&file.0, Position { entry: 1, line: 1 }, 100),
            vec![line(1, 2, "{\"a\":2}"), line(3, 1, "{\"b\":1}")]
        );
        assert_eq!(
            read(&file.0, Position { entry: 1, line: 2 }, 100),
            vec![line(3, 1, "{\"b\":1}")]
        );
        assert!(read(&file.0, Position { entry: 4, line: 0 }, 100).is_empty());
    }

    #[test]
    fn long_lines_and_a_byte_order_mark() {
        let file = TempFile::new(
            "events.jsonl",
            b"\xEF\xBB\xBF{\"a\":1}\n{\"long\":\"xxxxxxxxxxxxxxxxxxxx\"}\n{}\n",
        );
        assert_eq!(
            read(&file.0, Position::default(), 10),
            vec![
                line(0, 1, "{\"a\":1}"),
                line(0, 2, "TOO LONG 31"),
                line(0, 3, "{}")
            ]
        );
    }

    #[test]
    fn stopping_and_broken_files() {
        let file = TempFile::new("events.jsonl", b"{}\n{}\n{}\n");
        let offset = Arc::new(AtomicU64::new(0));
        let mut seen = 0;
        let flow = each_line(&file.0, Position::default(), 100, &offset, |_| {
            seen += 1;
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
        assert_eq!((flow, seen), (Flow::Stopped, 2));

        let mut cut = gzip(b"{\"a\":1}\n{\"b\":2}\n".repeat(100).as_slice());
        cut.truncate(cut.len() / 2);
        let cut = TempFile::new("cut.json.gz", &cut);
        let error = each_line(&cut.0, Position::default(), 100, &offset, |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
        assert!(
            error.to_string().contains("cut.json.gz after line"),
            "{error}"
        );

        let missing = file.0.with_file_name("missing.jsonl");
        let error = each_line(&missing, Position::default(), 100, &offset, |_| {
            ControlFlow::Continue(())
        })
        .unwrap_err();
        assert!(error.to_string().contains("missing.jsonl"), "{error}");
    }
}
