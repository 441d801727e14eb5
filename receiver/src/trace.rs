//! W3C trace context for raw records: continue the caller's trace, or start one.

/// The `traceparent` to store with the record: the incoming trace id with a new span id, or a new
/// trace when the header is absent or invalid.
pub fn child_traceparent(incoming: Option<&str>) -> String {
    let mut random = [0u8; 24];
    // On the (practically impossible) failure of the OS generator, a fixed id still forms a valid header.
    let _ = getrandom::fill(&mut random);
    let span = hex(&random[16..]);
    match incoming.and_then(parse) {
        Some((trace, flags)) => format!("00-{trace}-{span}-{flags}"),
        None => format!("00-{}-{span}-01", hex(&random[..16])),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `(trace id, flags)` of a valid version-00 header.
fn parse(header: &str) -> Option<(&str, &str)> {
    let mut parts = header.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let lower_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = parts.next().is_none()
        && version == "00"
        && lower_hex(trace, 32)
        && lower_hex(parent, 16)
        && lower_hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then_some((trace, flags))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INCOMING: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn continues_a_valid_trace_with_a_new_span() {
        let out = child_traceparent(Some(INCOMING));
        assert!(out.starts_with("00-0af7651916cd43dd8448eb211c80319c-"));
        assert!(out.ends_with("-01"));
        assert_ne!(out, INCOMING);
        assert!(parse(&out).is_some());
    }

    #[test]
    fn starts_a_trace_when_the_header_is_missing_or_bad() {
        for bad in [
            None,
            Some(""),
            Some("garbage"),
            Some("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
            Some("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
            Some("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"),
        ] {
            let out = child_traceparent(bad);
            assert!(parse(&out).is_some(), "{out}");
            assert!(!out.contains("0af7651916cd43dd8448eb211c80319c"), "{bad:?}");
        }
    }
}
