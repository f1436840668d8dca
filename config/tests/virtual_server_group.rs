//! keepalived's `virtual_server_group` (issue 13): every member of the group
//! (an address and port, a range of the last octet, or a fwmark) becomes a
//! virtual server with the `virtual_server group NAME` block's settings and
//! real servers, and `convert` writes those virtual servers as TOML that
//! reads back to the same model.

use std::net::SocketAddr;

use haldir_config::{parse_keepalived, parse_toml, to_toml, VirtualServerAddress};

const FILE: &str = "keepalived.conf";

/// A group of a single address, a range of three and a fwmark, used by one
/// DR service with two real servers.
const GROUP: &str = "virtual_server group WEB {
    lb_algo wlc
    lb_kind DR
    protocol TCP
    real_server 10.20.0.1 80 {
        weight 2
    }
    real_server 10.20.0.2 80 {
        weight 3
    }
}

virtual_server_group WEB {
    192.0.2.10 80
    192.0.2.20-22 8080
    fwmark 7
}
";

fn addresses(model: &haldir_config::Model) -> Vec<String> {
    model
        .virtual_servers
        .iter()
        .map(|vs| match &vs.address {
            VirtualServerAddress::Socket { ip, port } => SocketAddr::new(*ip, *port).to_string(),
            VirtualServerAddress::Fwmark(mark) => format!("fwmark {mark}"),
        })
        .collect()
}

/// The virtual servers with their source locations blanked (`Model::without_locations`).
fn without_locs(model: haldir_config::Model) -> Vec<haldir_config::VirtualServer> {
    model.without_locations().virtual_servers
}

#[test]
fn each_group_member_becomes_a_virtual_server_with_the_blocks_real_servers() {
    let model = parse_keepalived(GROUP, FILE).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        addresses(&model),
        [
            "192.0.2.10:80",
            "192.0.2.20:8080",
            "192.0.2.21:8080",
            "192.0.2.22:8080",
            "fwmark 7"
        ]
    );
    for vs in &model.virtual_servers {
        let reals: Vec<(String, u32)> = vs
            .real_servers
            .iter()
            .map(|rs| (rs.ip.to_string(), rs.weight))
            .collect();
        assert_eq!(
            reals,
            [("10.20.0.1".to_owned(), 2), ("10.20.0.2".to_owned(), 3)],
            "{:?}",
            vs.address
        );
        assert_eq!(format!("{:?}", vs.scheduler), "Wlc");
    }
}

#[test]
fn a_converted_group_reads_back_to_the_same_model() {
    let model = parse_keepalived(GROUP, FILE).unwrap_or_else(|e| panic!("{e}"));
    let toml = to_toml(&model);
    let again = parse_toml(&toml, "haldir.toml").unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(without_locs(again), without_locs(model));
}

#[test]
fn an_unknown_group_and_a_backward_range_are_errors_at_their_word() {
    let text = "virtual_server group NOPE {\n    lb_kind DR\n}\nvirtual_server_group OTHER {\n    192.0.2.9-3 80\n}\n";
    let errors = parse_keepalived(text, FILE)
        .expect_err("must fail")
        .to_string();
    assert!(
        errors.contains("keepalived.conf:1:22: virtual_server group `NOPE`: no virtual_server_group of that name"),
        "{errors}"
    );
    assert!(
        errors.contains("keepalived.conf:5:5: virtual_server_group entry `192.0.2.9-3 80`: the range ends (3) before it starts (9)"),
        "{errors}"
    );
}
