//! One line at a time from any `BufRead`, holding at most a bound: a line of a gigabyte costs
//! the bound, not a gigabyte, and the line after it is read as usual.

use std::io::{self, BufRead};

/// Reads the next line into `buf` without its `\n` or `\r\n`, keeping at most `max + 1` bytes of
/// it; returns the line's whole length (more than `max`: `buf` holds only its start), or `None`
/// at the end of the input.
pub fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<usize>> {
    buf.clear();
    let keep = max.saturating_add(1);
    let mut len = 0usize;
    let mut started = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if !started {
                return Ok(None);
            }
            break;
        }
        started = true;
        let (part, newline) = match memchr::memchr(b'\n', chunk) {
            Some(end) => (&chunk[..end], true),
            None => (chunk, false),
        };
        let room = keep.saturating_sub(buf.len()).min(part.len());
        buf.extend_from_slice(&part[..room]);
        len = len.saturating_add(part.len());
        let used = part.len() + usize::from(newline);
        reader.consume(used);
        if newline {
            break;
        }
    }
    // `\r\n` line ends (Windows tools): the `\r` is the line end's, not the line's.
    if buf.len() == len && buf.last() == Some(&b'\r') {
        buf.pop();
        len -= 1;
    }
    Ok(Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input` as (length, kept bytes), read through a buffer of `capacity`.
    fn lines(input: &[u8], capacity: usize, max: usize) -> Vec<(usize, String)> {
        let mut reader = io::BufReader::with_capacity(capacity, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while let Some(len) = read_line(&mut reader, &mut buf, max).unwrap() {
            out.push((len, String::from_utf8_lossy(&buf).into_owned()));
        }
        out
    }

    #[test]
    fn lines_end_at_newlines_with_or_without_a_carriage_return() {
        for capacity in [1, 2, 3, 7, 64] {
            assert_eq!(
                lines(b"{\"a\":1}\n\r\n{\"b\":2}\r\nlast", capacity, 100),
                vec![
                    (7, "{\"a\":1}".into()),
                    (0, String::new()),
                    (7, "{\"b\":2}".into()),
                    (4, "last".into()),
                ],
                "capacity {capacity}"
            );
        }
        assert!(lines(b"", 8, 100).is_empty());
        assert_eq!(lines(b"\n", 8, 100), vec![(0, String::new())]);
    }

    #[test]
    fn a_long_line_is_measured_not_kept_and_the_next_one_is_read() {
        let long = "x".repeat(1000);
        let input = format!("ab\n{long}\ncd\n");
        for capacity in [1, 5, 64, 4096] {
            let read = lines(input.as_bytes(), capacity, 10);
            assert_eq!(read.len(), 3, "capacity {capacity}");
            assert_eq!(read[0], (2, "ab".into()));
            assert_eq!(read[1].0, 1000);
            assert_eq!(read[1].1.len(), 11, "max + 1 bytes kept");
            assert_eq!(read[2], (2, "cd".into()));
        }
    }

    #[test]
    fn a_carriage_return_does_not_push_a_line_over_the_bound() {
        // Ten bytes and `\r\n`: ten bytes long, within a bound of ten.
        assert_eq!(
            lines(b"0123456789\r\nx", 4, 10),
            vec![(10, "0123456789".into()), (1, "x".into())]
        );
    }
}
