//! `docs/openapi.json` is the document the API serves at `/openapi.json`, kept equal to it here.
//! After changing the API: `LIFELINE_BLESS=1 cargo test -p lifeline-api --test openapi`.

use std::path::Path;

#[test]
fn the_published_document_is_the_generated_one() {
    let mut generated =
        serde_json::to_string_pretty(&lifeline_api::openapi()).expect("the document serialises");
    generated.push('\n');
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("LIFELINE_BLESS").is_some() {
        std::fs::write(&path, &generated).expect("docs/openapi.json written");
    }
    let published = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        published == generated,
        "docs/openapi.json differs from the API's document: run `LIFELINE_BLESS=1 cargo test -p lifeline-api --test openapi` and commit it"
    );
}

#[test]
fn every_guarded_operation_requires_the_token_and_the_open_ones_do_not() {
    let doc = serde_json::to_value(lifeline_api::openapi()).expect("serialises");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 20, "{} paths", paths.len());
    for (path, item) in paths {
        for (method, op) in item.as_object().expect("path item") {
            let security = &op["security"];
            let open = matches!(path.as_str(), "/health" | "/metrics");
            assert_eq!(
                security.is_null(),
                open,
                "{method} {path}: security {security}"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
