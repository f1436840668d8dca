//! On a kernel without IPVS (this host), `haldir run` with virtual servers says
//! so clearly and the VRRP part still runs. Needs root (network namespaces).

use std::time::Duration;

use haldir_lab::{is_root, Haldir, HaldirInstance, Lab};

#[test]
fn without_ipvs_haldir_says_so_and_vrrp_still_runs() {
    if !is_root() {
        eprintln!("SKIPPED without_ipvs_haldir_says_so_and_vrrp_still_runs: needs root");
        return;
    }
    if std::path::Path::new("/proc/net/ip_vs").exists() {
        eprintln!("SKIPPED without_ipvs_haldir_says_so_and_vrrp_still_runs: this kernel has IPVS");
        return;
    }
    let lab = Lab::new("noipvs").unwrap();
    lab.add_host("r1", &["10.0.0.1/24"]).unwrap();
    let instance = HaldirInstance::v3(51, 150, Duration::from_millis(50), &["10.0.0.100/24"]);
    let config = format!(
        "{}\n[[virtual_server]]\nip = \"10.0.0.100\"\nport = 80\nlb_kind = \"DR\"\nlb_algo = \"rr\"\n\n[[virtual_server.real_server]]\nip = \"10.0.1.1\"\nport = 80\n",
        instance.render()
    );
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_haldir"));
    let r1 = Haldir::start_with_config(&lab, "r1", binary, &config).unwrap();
    assert!(
        r1.wait_state("MASTER", Duration::from_secs(5)),
        "{}",
        r1.log()
    );
    assert!(lab.has_address("r1", "10.0.0.100"));
    assert!(
        r1.log()
            .contains("this kernel has no IPVS; load the ip_vs module"),
        "{}",
        r1.log()
    );
    assert!(r1.is_running());
    assert!(r1.stop().unwrap().success());
}
