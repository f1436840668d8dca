//! Rules for single values of the health-check settings that the checkers' libraries
//! would otherwise be asked about: a TLS server name (SNI), a DNS query name, a CA file.
//! They live here so the configuration is validated without linking the TLS and HTTP
//! stack; `director/` has tests that hold each rule to the health checkers' own.

use std::path::Path;

/// Whether `name` can be sent as a TLS server name: a DNS name by rustls' rule
/// (`rustls_pki_types::DnsName`: labels of 1-63 letters, digits, `_` and inner `-`, at
/// most 253 bytes, one trailing dot allowed, the last label not a number), or an IP
/// address literal.
pub(crate) fn tls_server_name_ok(name: &str) -> bool {
    dns_host_name_ok(name.as_bytes()) || name.parse::<std::net::IpAddr>().is_ok()
}

/// The label state of rustls' DNS name check.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    /// Nothing yet.
    Start,
    /// Known not to be a number.
    NonNumeric,
    /// Decimal digits so far (not a lone `0`).
    AllNumeric,
    /// Exactly `0` so far.
    Zero,
    /// `0x` and hex digits.
    HexNumber,
    /// Ends in `-`.
    EndsInHyphen,
}

fn dns_host_name_ok(input: &[u8]) -> bool {
    const MAX_LABEL_LENGTH: usize = 63;
    const MAX_NAME_LENGTH: usize = 253;
    if input.is_empty() || input.len() > MAX_NAME_LENGTH {
        return false;
    }
    let (mut start, mut state, mut idx) = (0, Label::Start, 0);
    loop {
        match input.get(idx).copied() {
            Some(c @ (b'a'..=b'z' | b'A'..=b'Z' | b'_')) => {
                state = match (state, c) {
                    (Label::Zero, b'x' | b'X') => Label::HexNumber,
                    (Label::HexNumber, b'a'..=b'f' | b'A'..=b'F') => Label::HexNumber,
                    _ => Label::NonNumeric,
                }
            }
            Some(c @ b'0'..=b'9') => {
                state = match state {
                    Label::Start if c == b'0' => Label::Zero,
                    Label::Start | Label::AllNumeric | Label::Zero => Label::AllNumeric,
                    Label::HexNumber => Label::HexNumber,
                    Label::NonNumeric | Label::EndsInHyphen => Label::NonNumeric,
                }
            }
            Some(b'.') | None => {
                let len = idx - start;
                if len == 0 || len > MAX_LABEL_LENGTH || state == Label::EndsInHyphen {
                    return false;
                }
                if idx + 1 >= input.len() {
                    break;
                }
                idx += 1;
                start = idx;
                state = Label::Start;
                continue;
            }
            Some(b'-') if idx != start => state = Label::EndsInHyphen,
            _ => return false,
        }
        idx += 1;
    }
    // The last label must not look like a number (an IPv4 address in disguise).
    !matches!(state, Label::AllNumeric | Label::Zero | Label::HexNumber)
}

/// Whether `name` can be a `DNS_CHECK` query name (RFC 1035 §3.1): one trailing dot
/// allowed, every label 1-63 bytes, the encoded name at most 255 bytes; "." is the root.
pub(crate) fn dns_name_ok(name: &str) -> bool {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return true;
    }
    let mut encoded = 1; // the root label's zero byte
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return false;
        }
        encoded += 1 + label.len();
    }
    encoded <= 255
}

/// What is wrong with `path` as an `SSL_GET` `ca_file` (`None`: usable): it must be a
/// regular file (a FIFO or /dev/zero would be read forever) holding at least one PEM
/// `CERTIFICATE` block whose base64 decodes to a DER sequence.
pub(crate) fn ca_file_problem(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => return Some("not a regular file".into()),
        Ok(_) => {}
        Err(e) => return Some(e.to_string()),
    }
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => return Some(e.to_string()),
    };
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = text.as_str();
    let mut certificates = 0;
    while let Some(at) = rest.find(BEGIN) {
        let body = &rest[at + BEGIN.len()..];
        let Some(end) = body.find(END) else {
            return Some("a certificate has no END line".into());
        };
        match base64_decode(&body[..end]) {
            Some(der) if der.first() == Some(&0x30) => certificates += 1,
            _ => return Some("a certificate is not valid base64-encoded DER".into()),
        }
        rest = &body[end + END.len()..];
    }
    (certificates == 0).then(|| "no certificate in the file".into())
}

/// Standard base64 (RFC 4648 §4) with `=` padding, whitespace ignored.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let symbols: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let data = symbols
        .strip_suffix(b"==")
        .or_else(|| symbols.strip_suffix(b"="));
    let data = data.unwrap_or(&symbols);
    if symbols.len() % 4 != 0 || data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        let mut bits = 0u32;
        for &c in chunk {
            bits = bits << 6 | value(c)?;
        }
        bits <<= 6 * (4 - chunk.len() as u32);
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding() {
        assert_eq!(base64_decode("TWFu").unwrap(), b"Man");
        assert_eq!(base64_decode("TWE=").unwrap(), b"Ma");
        assert_eq!(base64_decode("TQ==\n").unwrap(), b"M");
        assert_eq!(base64_decode("TQ"), None, "padding is required");
        assert_eq!(base64_decode("T!=="), None);
    }

    #[test]
    fn dns_names_follow_the_label_and_length_limits() {
        assert!(dns_name_ok("."));
        assert!(dns_name_ok("www.example.com."));
        assert!(!dns_name_ok("a..b"));
        assert!(!dns_name_ok(&"a".repeat(64)));
        let long = vec!["a".repeat(63); 4].join(".");
        assert!(!dns_name_ok(&long), "{} bytes encoded", long.len() + 2);
        assert!(dns_name_ok(&long[..long.len() - 2]));
    }

    #[test]
    fn tls_names_are_host_names_or_addresses() {
        for good in [
            "www.example.com",
            "a-b.example.",
            "_srv.example",
            "10.0.0.1",
            "::1",
        ] {
            assert!(tls_server_name_ok(good), "{good}");
        }
        for bad in [
            "bad_name!",
            "-a.example",
            "a-.example",
            "example.123",
            "0x1f",
            "",
            "a..b",
        ] {
            assert!(!tls_server_name_ok(bad), "{bad}");
        }
    }
}
