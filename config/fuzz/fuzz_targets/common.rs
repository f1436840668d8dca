//! Shared by the config fuzz targets: the round-trip property.

use haldir_config::{not_converted, parse_toml, to_toml, Model};

/// `model` with its source locations blanked (`Model::without_locations`).
pub fn without_locs(model: Model) -> Model {
    model.without_locations()
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
