//! The committed JSON Schema is the one the types generate, and [`validate`] accepts the
//! documents haldir writes and refuses broken ones.

use haldir_status::schema::{schema_text, validate, validate_document};
use serde_json::{json, Value};

const SCHEMA_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/status.schema.json");

#[test]
fn the_committed_schema_file_is_up_to_date() {
    let generated = schema_text();
    if std::env::var_os("HALDIR_BLESS").is_some() {
        std::fs::write(SCHEMA_FILE, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(SCHEMA_FILE).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/status.schema.json is out of date with the types of haldir-status: \
         regenerate it with `HALDIR_BLESS=1 cargo test -p haldir-status --test schema`"
    );
}

fn valid_document() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/document.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_document_haldir_writes_is_valid() {
    validate(&valid_document()).unwrap();
    let file = json!({
        "bulk_resync": valid_document()["bulk_resync"],
        "instances": valid_document()["instances"],
        "links": [],
        "schema_version": 3,
    });
    validate(&file).unwrap();
}

fn refused(document: &Value) -> String {
    match validate(document) {
        Ok(()) => panic!("accepted: {document:#}"),
        Err(e) => e,
    }
}

#[test]
fn a_missing_required_field_is_refused_even_a_nullable_one() {
    let mut document = valid_document();
    document.as_object_mut().unwrap().remove("now_unix");
    assert!(refused(&document).contains("missing field `now_unix`"));

    // `null` is a value; absent is not.
    let mut document = valid_document();
    let destination = &mut document["virtual_servers"][0]["destinations"][1];
    assert_eq!(destination["last_check"], Value::Null);
    destination.as_object_mut().unwrap().remove("last_check");
    assert!(refused(&document).contains("missing field `last_check`"));
}

#[test]
fn a_field_of_the_wrong_type_is_refused() {
    let mut document = valid_document();
    document["instances"][0]["priority"] = json!("150");
    let error = refused(&document);
    assert!(error.contains("invalid type: string \"150\""), "{error}");

    let mut document = valid_document();
    document["instances"][0]["state"] = json!("LEADER");
    assert!(refused(&document).contains("unknown variant `LEADER`"));
}

#[test]
fn an_unknown_field_is_refused() {
    let mut document = valid_document();
    document["links"][0]["mtu"] = json!(1500);
    let error = refused(&document);
    assert!(error.contains("unknown field `mtu`"), "{error}");

    // The sections the bulk resync and the DR ARP check own are typed as strictly.
    let mut document = valid_document();
    document["bulk_resync"]["paused"] = json!(true);
    let error = refused(&document);
    assert!(error.contains("unknown field `paused`"), "{error}");
    let mut document = valid_document();
    document["dr_arp_check"]["vlan"] = json!(7);
    let error = refused(&document);
    assert!(error.contains("unknown field `vlan`"), "{error}");
}

#[test]
fn another_schema_version_is_refused() {
    let mut document = valid_document();
    document["schema_version"] = json!(1);
    assert!(validate_document(&document)
        .unwrap_err()
        .contains("schema_version 1"));
}
