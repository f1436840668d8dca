//! Proves the kernel-test VM (`tests/vm/run.sh`): the kernel has IPVS with its schedulers,
//! `ipvsadm` programs and lists a direct-routing service, IPVS tables are per network
//! namespace, and the namespace lab works inside the VM. Skipped (loudly) outside the VM.

use std::process::Command;

use haldir_lab::{self as lab, vm::in_vm_or_skip, Lab};

fn ipvsadm(lab: &Lab, host: &str, args: &[&str]) -> String {
    let mut argv = vec!["ipvsadm"];
    argv.extend_from_slice(args);
    let out = lab.run(host, &argv).unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_vm_kernel_has_ipvs_and_its_schedulers() {
    if !in_vm_or_skip("kernel_smoke::the_vm_kernel_has_ipvs_and_its_schedulers") {
        return;
    }
    let version = std::fs::read_to_string("/proc/net/ip_vs").expect("/proc/net/ip_vs exists");
    assert!(
        version.starts_with("IP Virtual Server version"),
        "{version}"
    );
    let loaded = std::env::var("HALDIR_VM_SCHEDULERS").unwrap_or_default();
    let loaded: Vec<&str> = loaded.split_whitespace().collect();
    eprintln!("schedulers loaded by the rig: {loaded:?}");
    for scheduler in ["rr", "wrr", "lc", "wlc", "sh", "dh", "sed", "nq", "mh"] {
        assert!(
            loaded.contains(&scheduler),
            "ip_vs_{scheduler} not loaded: {loaded:?}"
        );
    }
}

#[test]
fn ipvsadm_programs_a_direct_routing_service_and_lists_it() {
    if !in_vm_or_skip("kernel_smoke::ipvsadm_programs_a_direct_routing_service_and_lists_it") {
        return;
    }
    // A namespace of its own: every IPVS table is per network namespace.
    let lab = Lab::new("kernel-smoke-ipvsadm").unwrap();
    lab.add_host("r1", &["10.1.0.1/24"]).unwrap();
    ipvsadm(&lab, "r1", &["-A", "-t", "10.1.0.1:80", "-s", "rr"]);
    ipvsadm(
        &lab,
        "r1",
        &[
            "-a",
            "-t",
            "10.1.0.1:80",
            "-r",
            "10.1.0.2:80",
            "-g",
            "-w",
            "3",
        ],
    );
    let table = ipvsadm(&lab, "r1", &["-Ln"]);
    eprintln!("{table}");
    assert!(table.contains("TCP  10.1.0.1:80 rr"), "{table}");
    let dest = table
        .lines()
        .find(|line| line.contains("-> 10.1.0.2:80"))
        .unwrap_or_else(|| panic!("no destination in\n{table}"));
    let fields: Vec<&str> = dest.split_whitespace().collect();
    assert_eq!(&fields[..4], ["->", "10.1.0.2:80", "Route", "3"], "{dest}");

    // The VM's own namespace does not see the lab namespace's table.
    let root = Command::new("ipvsadm").arg("-Ln").output().unwrap();
    let root = String::from_utf8_lossy(&root.stdout);
    assert!(
        !root.contains("10.1.0.1:80"),
        "IPVS table leaked out of the namespace:\n{root}"
    );
}

#[test]
fn the_namespace_lab_works_inside_the_vm() {
    if !in_vm_or_skip("kernel_smoke::the_namespace_lab_works_inside_the_vm") {
        return;
    }
    let lab = Lab::new("kernel-smoke-lab").unwrap();
    lab.add_host("a", &["10.2.0.1/24"]).unwrap();
    lab.add_host("b", &["10.2.0.2/24"]).unwrap();
    let server = lab::in_netns(&lab.ns_name("b"), || {
        std::net::UdpSocket::bind("10.2.0.2:9000").unwrap()
    })
    .unwrap();
    let client = lab::in_netns(&lab.ns_name("a"), || {
        std::net::UdpSocket::bind("10.2.0.1:0").unwrap()
    })
    .unwrap();
    server
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    client.send_to(b"hello", "10.2.0.2:9000").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from.to_string(), client.local_addr().unwrap().to_string());
}
