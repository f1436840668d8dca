//! The JSON Schema of the status document and the status file (`docs/status.schema.json`),
//! derived from the types, and [`validate`].
//!
//! [`validate`] checks a document against the typed model itself: it deserializes it into
//! [`StatusDocument`] (or [`StatusFile`]), whose structs deny unknown fields and whose
//! nullable fields must still be present. The schema file is generated from the same types,
//! so the two cannot disagree, and no JSON Schema engine (with its regex and URL
//! dependencies) is needed to check the documents the tests read.

use serde::Deserialize;

use crate::{StatusDocument, StatusFile, SCHEMA_VERSION};

/// The JSON Schema (draft 2020-12) of the documents: a status document or a status file.
pub fn schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let document = generator.subschema_for::<StatusDocument>();
    let file = generator.subschema_for::<StatusFile>();
    let mut root = serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "haldir status",
        "description": format!(
            "A haldir status document (control socket `status`, `haldir status --json`) or \
             status file (`haldir run --status-file`), schema_version {SCHEMA_VERSION}. \
             Described field by field in docs/status.md."
        ),
        "oneOf": [document, file],
    });
    root["$defs"] = serde_json::to_value(generator.definitions()).unwrap_or_default();
    root
}

/// [`schema`] as the text of `docs/status.schema.json`.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}

fn check<'de, T: Deserialize<'de>>(document: &'de serde_json::Value) -> Result<T, String> {
    T::deserialize(document).map_err(|e| e.to_string())
}

fn check_version(version: u32) -> Result<(), String> {
    if version == SCHEMA_VERSION {
        Ok(())
    } else {
        Err(format!(
            "schema_version {version}: this haldir reads {SCHEMA_VERSION}"
        ))
    }
}

/// Checks a status document (the control socket's answer to `status`): every field
/// present with its type, no unknown field, the current [`SCHEMA_VERSION`].
pub fn validate_document(document: &serde_json::Value) -> Result<StatusDocument, String> {
    let typed: StatusDocument = check(document).map_err(|e| format!("status document: {e}"))?;
    check_version(typed.schema_version)?;
    Ok(typed)
}

/// Checks a status file's content the same way.
pub fn validate_status_file(document: &serde_json::Value) -> Result<StatusFile, String> {
    let typed: StatusFile = check(document).map_err(|e| format!("status file: {e}"))?;
    check_version(typed.schema_version)?;
    Ok(typed)
}

/// Checks a status document or a status file (told apart by `pid`, which only the
/// document has); `Err` says what is wrong.
pub fn validate(document: &serde_json::Value) -> Result<(), String> {
    if document.get("pid").is_some() {
        validate_document(document).map(drop)
    } else {
        validate_status_file(document).map(drop)
    }
}
