//! `haldir-lab`: the demo (needs root), `cargo run --release -p haldir-lab`.
//!
//! An LVS direct-routing appliance in network namespaces (two haldir routers, two real
//! servers, a client holding 200 connections); it kills the master and shows that the
//! connections survive. Without IPVS in this kernel it runs inside a VM
//! (`tests/vm/run.sh --lab`). `--vrrp-only`: the VRRP failover alone, no IPVS needed.
//! `--active-active`: three directors behind an ECMP router instead, each announcing the
//! VIP over BGP with FRR; a director dies, returns, a fourth joins, a real server dies.
//! `--active-standby`: the same site with a haldir VRRP pair instead, for the comparison.
//! See [`haldir_lab::demo`].

use std::process::ExitCode;

use clap::Parser;

/// The haldir demo: an LVS direct-routing appliance (or, with --vrrp-only, a VRRP
/// failover; with --active-active, directors behind ECMP; with --active-standby, a VRRP
/// pair on that site) in network namespaces. Needs root.
#[derive(Debug, Parser)]
#[command(name = "haldir-lab", args_override_self = true)]
struct Cli {
    #[command(flatten)]
    demo: haldir_lab::demo::DemoOptions,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("HALDIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match haldir_lab::demo::run(cli.demo) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("haldir-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_haldir_option_overrides_an_earlier_one() {
        // The re-run inside the VM appends `--haldir PATH` to the user's own arguments.
        let cli = Cli::try_parse_from(["haldir-lab", "--haldir", "/a", "--haldir", "/b"])
            .expect("a repeated --haldir is accepted");
        assert_eq!(cli.demo.haldir.as_deref(), Some(std::path::Path::new("/b")));
    }

    #[test]
    fn active_standby_is_a_story_of_its_own_beside_active_active() {
        let cli = Cli::try_parse_from(["haldir-lab", "--active-standby"])
            .expect("--active-standby is accepted");
        assert!(cli.demo.active_standby && !cli.demo.active_active);
        assert!(
            Cli::try_parse_from(["haldir-lab", "--active-active", "--active-standby"]).is_err(),
            "one story at a time"
        );
    }
}
