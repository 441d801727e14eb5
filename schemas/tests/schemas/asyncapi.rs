//! `asyncapi.yaml` against the reference AsyncAPI parser (`@asyncapi/parser` from npm, run by
//! `asyncapi-check/validate.mjs`, which resolves every `$ref` into the JSON Schema files) and
//! against the topics the pipeline really has.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use gf_schemas::{SCHEMA_FILES, topic};
use serde_json::Value;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Installs the parser from package-lock.json on first use (the tests of this file share it).
fn parse(document: &Path) -> Output {
    static INSTALL: Mutex<()> = Mutex::new(());
    let check = crate_dir().join("asyncapi-check");
    {
        let _once = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
        if !check.join("node_modules/@asyncapi/parser").exists() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .current_dir(&check)
                .status()
                .expect("npm (Node.js 18 or later) installs the AsyncAPI parser");
            assert!(status.success(), "npm ci in {} failed", check.display());
        }
    }
    Command::new("node")
        .arg(check.join("validate.mjs"))
        .arg(document)
        .output()
        .expect("node runs the AsyncAPI parser")
}

#[test]
fn the_document_is_valid_asyncapi_3_with_every_topic_and_nothing_else() {
    let out = parse(&crate_dir().join("asyncapi.yaml"));
    assert!(
        out.status.success(),
        "the AsyncAPI parser refused asyncapi.yaml:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).expect("the validator prints JSON");
    assert_eq!(parsed["version"], "3.0.0");

    let channels = parsed["channels"].as_array().expect("channels");
    let addresses: BTreeSet<String> = channels
        .iter()
        .map(|c| c["address"].as_str().expect("address").to_owned())
        .collect();
    let topics: BTreeSet<String> = topic::ALL
        .iter()
        .map(|t| topic::name(topic::DEFAULT_PREFIX, t))
        .collect();
    assert_eq!(addresses, topics, "channels and topics differ");

    // Each topic has a writer and a reader, and its payload schema was resolved (the raw topic
    // carries opaque bytes; every other payload is one of our JSON Schema files).
    let operations = parsed["operations"].as_array().expect("operations");
    for channel in channels {
        let address = channel["address"].as_str().unwrap();
        for action in ["send", "receive"] {
            assert!(
                operations.iter().any(|o| o["action"] == action
                    && o["channels"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c == address)),
                "no {action} operation on {address}"
            );
        }
        let message = &channel["messages"][0];
        assert_eq!(message["hasPayload"], true, "{address}");
        let properties = message["payloadProperties"].as_array().unwrap();
        if address != topic::name(topic::DEFAULT_PREFIX, topic::RAW) {
            assert!(
                properties.len() >= 4,
                "{address}: payload $ref not resolved: {properties:?}"
            );
        }
    }
}

#[test]
fn every_referenced_schema_file_is_one_we_ship_and_every_topic_schema_is_referenced() {
    let text = std::fs::read_to_string(crate_dir().join("asyncapi.yaml")).unwrap();
    let referenced: BTreeSet<&str> = text
        .split("$ref: './json/")
        .skip(1)
        .filter_map(|rest| rest.split('\'').next())
        .collect();
    let shipped: BTreeSet<&str> = SCHEMA_FILES.iter().map(|(name, _)| *name).collect();
    for file in &referenced {
        assert!(shipped.contains(file), "{file} is not in SCHEMA_FILES");
    }
    // Not topic payloads: the shared definitions and the public HTTP API's body.
    let not_topics = ["common.v1.schema.json", "public-event.v1.schema.json"];
    for file in shipped.difference(&referenced) {
        assert!(not_topics.contains(file), "{file} is not referenced");
    }
}

#[test]
fn the_parser_refuses_a_broken_document() {
    let dir = std::env::temp_dir().join(format!("gf-asyncapi-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("json")).unwrap();
    for (name, content) in SCHEMA_FILES {
        std::fs::write(dir.join("json").join(name), content).unwrap();
    }
    let good = std::fs::read_to_string(crate_dir().join("asyncapi.yaml")).unwrap();
    for (what, broken) in [
        (
            "an unknown action",
            good.replacen("action: send", "action: publish", 1),
        ),
        (
            "a payload that points nowhere",
            good.replacen("./json/signal.v1.schema.json", "./json/missing.json", 1),
        ),
        (
            "an operation on a channel that does not exist",
            good.replacen(
                "$ref: '#/channels/signals'",
                "$ref: '#/channels/nowhere'",
                1,
            ),
        ),
    ] {
        assert_ne!(broken, good, "{what}: the edit did not apply");
        let file = dir.join("asyncapi.yaml");
        std::fs::write(&file, broken).unwrap();
        let out = parse(&file);
        assert!(!out.status.success(), "{what} was accepted");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
