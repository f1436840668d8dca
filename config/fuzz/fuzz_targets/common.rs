//! Shared by the config fuzz targets: the round-trip property.

use haldir_config::{not_converted, parse_toml, to_toml, Loc, Model};

/// `model` with every source location replaced by one fixed value (as
/// `config/tests/keepalived_conf.rs` compares models).
pub fn without_locs(mut model: Model) -> Model {
    let nowhere = Loc {
        file: "".into(),
        line: 0,
        col: 0,
    };
    for instance in &mut model.vrrp_instances {
        instance.loc = nowhere.clone();
    }
    for vs in &mut model.virtual_servers {
        vs.loc = nowhere.clone();
        for rs in &mut vs.real_servers {
            rs.loc = nowhere.clone();
            for check in &mut rs.checks {
                check.loc = nowhere.clone();
            }
        }
    }
    for script in &mut model.vrrp_scripts {
        script.loc = nowhere.clone();
    }
    for group in &mut model.sync_groups {
        group.loc = nowhere.clone();
    }
    model
}

/// A model the front-end accepted must convert to TOML that parses back to
/// the same model (when `to_toml` claims to convert everything).
pub fn round_trip(model: Model) {
    if !not_converted(&model).is_empty() {
        return;
    }
    let toml = to_toml(&model);
    let again = parse_toml(&toml, "converted.toml")
        .unwrap_or_else(|e| panic!("converted TOML is invalid:\n{e}\n{toml}"));
    let (again, model) = (without_locs(again), without_locs(model));
    assert_eq!(again, model, "model changed in the round trip:\n{toml}");
}
