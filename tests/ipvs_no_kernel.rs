//! On a kernel without IPVS (the development and CI hosts: `CONFIG_IP_VS` unset), haldir's
//! IPVS client must say so plainly instead of a raw netlink error. Inside the VM, or on any
//! kernel with ip_vs loaded, the same call must connect.

use haldir_ipvs::{IpvsClient, IpvsError};

#[tokio::test]
async fn connect_says_this_kernel_has_no_ipvs_when_it_has_none() {
    let loaded = std::path::Path::new("/proc/net/ip_vs").exists();
    match IpvsClient::connect().await {
        Err(IpvsError::NoIpvs) => {
            assert!(!loaded, "NoIpvs although /proc/net/ip_vs exists");
            assert_eq!(
                IpvsError::NoIpvs.to_string(),
                "this kernel has no IPVS; load the ip_vs module (modprobe ip_vs)"
            );
            eprintln!("this kernel has no IPVS, and the client says so");
        }
        Ok(client) => {
            // Resolving the family can autoload ip_vs where it is a module.
            assert!(client.family_id() > 0);
            assert!(
                std::path::Path::new("/proc/net/ip_vs").exists(),
                "connected, yet the kernel shows no /proc/net/ip_vs"
            );
        }
        Err(other) => panic!("expected NoIpvs or a connection, got: {other}"),
    }
}
