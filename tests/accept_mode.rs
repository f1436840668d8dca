//! RFC 5798 Accept_Mode with real sockets: a master configured with
//! `accept = false` holds the virtual address but drops what is sent to it;
//! with `accept = true` (the default) it answers. Needs root and nftables.

use std::net::IpAddr;
use std::time::Duration;

use haldir_lab::capture::{Capture, FrameKind};
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

/// The accept-mode filter is installed by running `nft`: a reload that changes it must not
/// stop the adverts while `nft` runs (issue 15, point 8: it ran on the thread that times
/// them). Here `nft` is a wrapper that takes 2 s before it runs the real one; the master's
/// adverts (every 100 ms) keep coming on the wire throughout, and the new filter is in
/// place after.
#[test]
fn a_slow_nft_during_a_reload_does_not_stop_the_adverts() {
    if !is_root() {
        eprintln!("SKIPPED a_slow_nft_during_a_reload_does_not_stop_the_adverts: needs root");
        return;
    }
    let Some(real_nft) = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("\n!!!!!!!! SKIPPED a_slow_nft_during_a_reload_does_not_stop_the_adverts: no nft (apt-get install nftables) !!!!!!!!\n");
        return;
    };
    let lab = Lab::new("accept-slow").expect("lab");
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    let bin = lab.dir().join("slow-nft");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("nft");
    haldir_lab::place_script(&wrapper, &format!("sleep 2\nexec {real_nft} \"$@\"")).unwrap();

    let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display());
    let instance = |vips: &[&str]| {
        let mut instance = HaldirInstance::v3(51, 150, Duration::from_millis(100), vips);
        instance.extra_lines.push("accept = false".into());
        instance.render()
    };
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_haldir"));
    let r1 = Haldir::start_with_env(
        &lab,
        "r1",
        binary,
        &instance(&["10.0.0.100/24"]),
        &[("PATH", path.as_str())],
    )
    .unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(10)),
        "{}",
        r1.log()
    );
    let capture = Capture::start(&lab).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let reloaded = std::time::Instant::now();
    assert!(
        r1.reload(&instance(&["10.0.0.100/24", "10.0.0.101/24"]))
            .unwrap(),
        "{}",
        r1.log()
    );
    let reload_took = reloaded.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let r1_mac = lab.mac_bytes("r1").unwrap();
    let adverts: Vec<std::time::Instant> = capture
        .stop()
        .into_iter()
        .filter(|f| f.kind == FrameKind::Vrrp4 && f.src_mac() == r1_mac)
        .map(|f| f.at)
        .collect();
    let longest = adverts
        .windows(2)
        .map(|w| w[1].saturating_duration_since(w[0]))
        .max()
        .unwrap_or_default();
    let tables = lab
        .output("r1", &["nft", "list", "table", "inet", "haldir_accept"])
        .unwrap();
    let tables = String::from_utf8_lossy(&tables.stdout).into_owned();
    eprintln!(
        "slow nft: the reload took {} ms; {} adverts captured, the longest gap {} ms",
        reload_took.as_millis(),
        adverts.len(),
        longest.as_millis()
    );
    assert!(
        reload_took >= Duration::from_secs(2),
        "the wrapper did not run: {reload_took:?}\n{}",
        r1.log()
    );
    assert!(
        longest < Duration::from_millis(1000),
        "the adverts stopped for {longest:?} while nft ran\n{}",
        r1.log()
    );
    assert!(tables.contains("10.0.0.101"), "{tables}");
    assert!(r1.stop().unwrap().success());
}
