//! RFC 5798 Accept_Mode with real sockets: a master configured with
//! `accept = false` holds the virtual address but drops what is sent to it;
//! with `accept = true` (the default) it answers. Needs root and nftables.

use std::net::IpAddr;
use std::time::Duration;

use haldir_lab::{is_root, Haldir, HaldirInstance, Lab, Prober, Responder};

const PORT: u16 = 7777;

fn run_master(accept: bool) -> (usize, String) {
    let lab = Lab::new("accept").expect("lab");
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    lab.add_host("client", &["10.0.0.10/24"]).unwrap();
    let mut instance = HaldirInstance::v3(51, 150, Duration::from_millis(50), &["10.0.0.100/24"]);
    instance.extra_lines.push(format!("accept = {accept}"));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_haldir"));
    let r1 = Haldir::start(&lab, "r1", binary, &[instance]).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    assert!(lab.has_address("r1", "10.0.0.100"));
    let _responder = Responder::start(&lab, "r1", PORT).unwrap();
    let vip: IpAddr = "10.0.0.100".parse().unwrap();
    let prober = Prober::start(&lab, "client", vip, PORT).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let report = prober.stop();
    let tables = lab.output("r1", &["nft", "list", "tables"]).unwrap();
    let tables_while_running = String::from_utf8_lossy(&tables.stdout).into_owned();
    assert!(r1.stop().unwrap().success());
    let tables = lab.output("r1", &["nft", "list", "tables"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&tables.stdout).contains("haldir_accept"),
        "the filter is removed on a graceful stop"
    );
    (report.reply_count(), tables_while_running)
}

#[test]
fn master_without_accept_mode_drops_traffic_to_the_virtual_address() {
    if !is_root() {
        eprintln!(
            "SKIPPED master_without_accept_mode_drops_traffic_to_the_virtual_address: needs root"
        );
        return;
    }
    let (replies, tables) = run_master(false);
    assert_eq!(replies, 0, "nothing sent to the VIP may be accepted");
    assert!(tables.contains("haldir_accept"), "{tables}");
}

#[test]
fn master_with_accept_mode_answers_on_the_virtual_address() {
    if !is_root() {
        eprintln!("SKIPPED master_with_accept_mode_answers_on_the_virtual_address: needs root");
        return;
    }
    let (replies, tables) = run_master(true);
    assert!(replies > 100, "only {replies} replies in 500 ms");
    assert!(!tables.contains("haldir_accept"), "{tables}");
}
