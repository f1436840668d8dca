//! `SMTP_CHECK`: the server is up when it speaks SMTP far enough to greet and answer a
//! `HELO`: connect (as `TCP_CHECK`), read the greeting (RFC 5321 §4.2: a `220` reply; §3.1:
//! a server that will not serve answers `554`), send `HELO name` (§4.1.1.1), expect `250`,
//! then `QUIT` (§4.1.1.10) and close. The whole exchange is bounded by `connect_timeout`
//! (keepalived restarts the same timeout at each step; one bound for the whole is stricter
//! and never slower to declare a dead server down). Replies may be multi-line (§4.2.1:
//! `250-` lines continue, the `250 ` line ends); at most [`MAX_REPLY`] bytes are read.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tcp::{connect, humanize};
use crate::{CheckFuture, CheckOutcome, Checker};

/// keepalived's default `helo_name`.
pub const DEFAULT_HELO_NAME: &str = "smtpchecker.keepalived.org";

/// The most bytes of one reply read before the server counts as broken.
pub const MAX_REPLY: usize = 4096;

/// An `SMTP_CHECK`.
#[derive(Debug, Clone)]
pub struct SmtpCheck {
    /// `connect_ip` / `connect_port` (default the real server, port 25).
    pub target: SocketAddr,
    /// `bindto` / `bind_port`.
    pub bind_to: Option<SocketAddr>,
    /// `connect_timeout`: for the whole exchange.
    pub timeout: Duration,
    /// `helo_name`.
    pub helo_name: String,
}

/// Reads one complete reply (its last line `NNN ` or `NNN` alone) and returns its code.
async fn reply(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<u16, String> {
    buffer.clear();
    let mut chunk = [0u8; 512];
    loop {
        if let Some(code) = complete_reply(buffer)? {
            return Ok(code);
        }
        if buffer.len() > MAX_REPLY {
            return Err(format!("a reply longer than {MAX_REPLY} bytes"));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("reading: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The code of the reply in `text` if its last line has arrived: lines end with CRLF (a
/// bare LF is taken too); `NNN-` continues, `NNN ` or `NNN` ends. `Err` for a line that
/// is not a reply.
pub fn complete_reply(text: &[u8]) -> Result<Option<u16>, String> {
    let mut rest = text;
    while let Some(end) = rest.iter().position(|&b| b == b'\n') {
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        rest = &rest[end + 1..];
        let code = line
            .get(..3)
            .filter(|c| c.iter().all(u8::is_ascii_digit))
            .and_then(|c| std::str::from_utf8(c).ok()?.parse::<u16>().ok())
            .ok_or_else(|| {
                format!(
                    "not an SMTP reply: {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(60)])
                )
            })?;
        match line.get(3) {
            Some(b'-') => continue,
            None | Some(b' ') => return Ok(Some(code)),
            Some(_) => {
                return Err(format!(
                    "not an SMTP reply: {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(60)])
                ))
            }
        }
    }
    Ok(None)
}

impl SmtpCheck {
    async fn run(&self) -> Result<(), String> {
        let mut stream = connect(self.target, self.bind_to, self.timeout).await?;
        let mut buffer = Vec::with_capacity(512);
        match reply(&mut stream, &mut buffer).await? {
            220 => {}
            code => return Err(format!("greeting {code}, not 220")),
        }
        let helo = format!("HELO {}\r\n", self.helo_name);
        stream
            .write_all(helo.as_bytes())
            .await
            .map_err(|e| format!("sending HELO: {e}"))?;
        match reply(&mut stream, &mut buffer).await? {
            250 => {}
            code => return Err(format!("HELO answered {code}, not 250")),
        }
        // A polite end; the server's answer to it does not matter.
        let _ = stream.write_all(b"QUIT\r\n").await;
        Ok(())
    }
}

impl Checker for SmtpCheck {
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.run()).await {
                Ok(Ok(())) => CheckOutcome::Up,
                Ok(Err(reason)) => CheckOutcome::Down(format!("SMTP {}: {reason}", self.target)),
                Err(_) => CheckOutcome::Down(format!(
                    "SMTP {}: no complete exchange within {}",
                    self.target,
                    humanize(self.timeout)
                )),
            }
        })
    }

    fn kind(&self) -> &'static str {
        "SMTP_CHECK"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_end_on_their_last_line_and_garbage_is_an_error() {
        assert_eq!(complete_reply(b"220 mx ready\r\n"), Ok(Some(220)));
        assert_eq!(complete_reply(b"250-mx\r\n250-SIZE 1\r\n"), Ok(None));
        assert_eq!(complete_reply(b"250-mx\r\n250 OK\r\n"), Ok(Some(250)));
        assert_eq!(complete_reply(b"220\n"), Ok(Some(220)));
        assert_eq!(complete_reply(b"220 part"), Ok(None), "no line end yet");
        assert!(complete_reply(b"HTTP/1.1 400\r\n").is_err());
        assert!(complete_reply(b"2200\r\n").is_err());
    }
}
