//! KEEPALIVED.md's keyword table is the front-end's keyword table: every
//! keyword of every block, with the same classification and reason, so the
//! two cannot drift. After changing a table in `keepalived_front`, regenerate
//! the section with `HALDIR_WRITE_KEYWORD_TABLE=1 cargo test -p haldir-config
//! --test keepalived_keyword_doc`.

use std::path::Path;

const BEGIN: &str = "<!-- keyword table: generated from keepalived_front, do not edit -->\n";
const END: &str = "<!-- end of keyword table -->\n";

/// The markdown table the code's keyword tables give.
fn expected_table() -> String {
    let mut out = String::from(BEGIN);
    out.push_str("| block | keyword | haldir | why |\n|---|---|---|---|\n");
    for (block, keyword, class, why) in haldir_config::keepalived_keyword_table() {
        let why = if why.is_empty() { "see FORMAT.md" } else { why };
        out.push_str(&format!(
            "| {block} | `{keyword}` | {class} | {} |\n",
            why.replace('|', "\\|")
        ));
    }
    out.push_str(END);
    out
}

#[test]
fn keepalived_md_lists_every_keyword_with_the_codes_classification() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("KEEPALIVED.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let start = doc
        .find(BEGIN)
        .expect("KEEPALIVED.md has the generated keyword table");
    let end = doc[start..].find(END).expect("the table's end marker") + start + END.len();
    let expected = expected_table();
    if std::env::var_os("HALDIR_WRITE_KEYWORD_TABLE").is_some() {
        let updated = format!("{}{expected}{}", &doc[..start], &doc[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    let written = &doc[start..end];
    for line in expected.lines() {
        assert!(
            written.lines().any(|l| l == line),
            "KEEPALIVED.md's keyword table lacks or classifies differently:\n{line}\n(regenerate: HALDIR_WRITE_KEYWORD_TABLE=1 cargo test -p haldir-config --test keepalived_keyword_doc)"
        );
    }
    assert_eq!(
        written, expected,
        "KEEPALIVED.md's keyword table has extra or reordered rows"
    );
}
