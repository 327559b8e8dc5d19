//! The JSON Schema files in `schemas/json/` are generated from the Rust types. This test
//! fails when they are stale; run it with `GPUQ_BLESS=1` to rewrite them.

use std::path::PathBuf;

use gpuq_schemas::callback::{LegacyCamelCallback, LegacySnakeCallback};
use gpuq_schemas::{CallbackPayload, JobEnvelope};

fn check(name: &str, schema: schemars::Schema) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("json")
        .join(format!("{name}.schema.json"));
    let fresh = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    if std::env::var_os("GPUQ_BLESS").is_some() {
        std::fs::write(&path, &fresh).unwrap();
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == fresh,
        "{} is stale; regenerate with `GPUQ_BLESS=1 cargo test -p gpuq-schemas --test json_schema`",
        path.display()
    );
}

#[test]
fn checked_in_json_schemas_match_the_rust_types() {
    check("job-envelope", schemars::schema_for!(JobEnvelope));
    check("callback", schemars::schema_for!(CallbackPayload));
    check(
        "callback-legacy-camel",
        schemars::schema_for!(LegacyCamelCallback),
    );
    check(
        "callback-legacy-snake",
        schemars::schema_for!(LegacySnakeCallback),
    );
}
