//! RFC 5798 Accept_Mode for instances configured with `accept = false`.
//!
//! RFC 5798 §6.4.3: a master that is not the address owner "MUST NOT accept
//! packets addressed to the IPvX address(es) associated with the virtual router"
//! unless Accept_Mode is True. Like keepalived (which uses iptables / nftables for
//! the same), haldir installs a filter that drops IP packets to those addresses
//! on input, leaving neighbour discovery alone so the address still resolves.
//! The filter lives in its own nftables table, `inet haldir_accept`, replaced
//! whole at start (so a crashed run's table is not left stale) and removed on a
//! graceful stop.

use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// The nftables table haldir owns.
pub const TABLE: &str = "haldir_accept";

/// Errors from `nft`.
#[derive(Debug, thiserror::Error)]
pub enum AcceptFilterError {
    /// `nft` could not be run.
    #[error("accept = false needs nftables' `nft` command: {0}")]
    Spawn(#[source] std::io::Error),
    /// `nft` refused the ruleset.
    #[error("nft refused the accept-mode filter: {0}")]
    Refused(String),
}

/// The ruleset that drops input to `addresses` (nothing when empty).
pub fn ruleset(addresses: &[IpAddr]) -> String {
    let mut rules = String::new();
    let v4: Vec<String> = addresses
        .iter()
        .filter(|a| a.is_ipv4())
        .map(ToString::to_string)
        .collect();
    let v6: Vec<String> = addresses
        .iter()
        .filter(|a| a.is_ipv6())
        .map(ToString::to_string)
        .collect();
    if !v6.is_empty() {
        // Neighbour discovery must still reach the address (RFC 4861), or
        // nobody could resolve it.
        rules.push_str("    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept\n");
        rules.push_str(&format!(
            "    ip6 daddr {{ {} }} counter drop\n",
            v6.join(", ")
        ));
    }
    if !v4.is_empty() {
        rules.push_str(&format!(
            "    ip daddr {{ {} }} counter drop\n",
            v4.join(", ")
        ));
    }
    // Declaring the table first makes the delete succeed when it is absent.
    let mut text = format!("table inet {TABLE} {{}}\ndelete table inet {TABLE}\n");
    if !rules.is_empty() {
        text.push_str(&format!(
            "table inet {TABLE} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n{rules}  }}\n}}\n"
        ));
    }
    text
}

/// Installs the filter for `addresses` (replacing any earlier one), or removes
/// it when `addresses` is empty.
pub fn install(addresses: &[IpAddr]) -> Result<(), AcceptFilterError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(AcceptFilterError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(ruleset(addresses).as_bytes())
            .map_err(AcceptFilterError::Spawn)?;
    }
    let output = child.wait_with_output().map_err(AcceptFilterError::Spawn)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(AcceptFilterError::Refused(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ))
    }
}

/// [`install`] off the runtime's thread: running `nft` is a fork, an exec and a wait,
/// tens of milliseconds (seconds on a loaded or emulated machine) that the thread which
/// also times every advert must not spend.
pub async fn install_off_thread(addresses: Vec<IpAddr>) -> Result<(), AcceptFilterError> {
    tokio::task::spawn_blocking(move || install(&addresses))
        .await
        .map_err(|e| AcceptFilterError::Spawn(std::io::Error::other(e.to_string())))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_only_removes_the_table() {
        assert_eq!(
            ruleset(&[]),
            "table inet haldir_accept {}\ndelete table inet haldir_accept\n"
        );
    }

    #[test]
    fn both_families_drop_to_the_addresses_and_keep_neighbour_discovery() {
        let text = ruleset(&[
            "192.0.2.10".parse().unwrap(),
            "2001:db8::10".parse().unwrap(),
        ]);
        assert!(text.contains("ip daddr { 192.0.2.10 } counter drop"));
        assert!(text.contains("ip6 daddr { 2001:db8::10 } counter drop"));
        let nd = text.find("nd-neighbor-solicit").unwrap();
        let drop6 = text.find("ip6 daddr").unwrap();
        assert!(
            nd < drop6,
            "neighbour discovery is accepted before the drop"
        );
    }
}
