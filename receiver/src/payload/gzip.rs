//! gzip bodies decoded with a bound: a bomb stops at the limit, and the buffer grows only as the
//! receiver's memory budget allows.

use std::io::Read;

use super::PayloadError;

/// Decodes a gzip body, refusing to produce more than `limit` bytes (gzip bombs stop there).
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, PayloadError> {
    gunzip_reserving(body, limit, |_| true)
}

/// [`gunzip`], asking `reserve` for every byte of buffer it grows by (the receiver's memory
/// budget); stops with [`PayloadError::BudgetSpent`] when refused.
pub fn gunzip_reserving(
    body: &[u8],
    limit: usize,
    mut reserve: impl FnMut(usize) -> bool,
) -> Result<Vec<u8>, PayloadError> {
    let mut decoder = flate2::read::MultiGzDecoder::new(body).take(limit as u64 + 1);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = decoder
            .read(&mut chunk)
            .map_err(|e| PayloadError::BadGzip(e.to_string()))?;
        if n == 0 {
            break;
        }
        if out.len() + n > limit {
            return Err(PayloadError::TooLarge { limit });
        }
        if out.len() + n > out.capacity() {
            let wanted = (out.capacity() * 2).max(out.len() + n).min(limit);
            if !reserve(wanted - out.capacity()) {
                return Err(PayloadError::BudgetSpent);
            }
            out.reserve_exact(wanted - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn gzip_is_decoded_within_the_limit() {
        let body = br#"{"events":[{"event_type":"x"}]}"#;
        assert_eq!(gunzip(&gzip(body), 1024).unwrap(), body);
        // A bomb: 64 MiB of zeros in a few KiB, refused at the limit.
        let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        assert_eq!(
            gunzip(&bomb, 1024 * 1024),
            Err(PayloadError::TooLarge { limit: 1024 * 1024 })
        );
        assert!(matches!(
            gunzip(b"not gzip", 1024),
            Err(PayloadError::BadGzip(_))
        ));
    }
}
