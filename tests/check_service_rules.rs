//! `kindred check` on a Service kube-proxy wrote no rules for: an error naming the Service, as
//! `kindred diff --service` gives, not "0 services compared ... equal".

mod common;
use common::*;

#[test]
fn a_service_without_rules_is_an_error_naming_it() {
    let text = std::fs::read_to_string(format!("{}/assets/demo.jsonl", env!("CARGO_MANIFEST_DIR")))
        .unwrap();
    let missing = text.replacen(
        "\"service\":\"default/echo\"",
        "\"service\":\"default/nothing\"",
        1,
    );
    assert_ne!(missing, text);
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("missing.jsonl");
    std::fs::write(&f, &missing).unwrap();
    let o = kindred(&["check", "--replay", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("Service default/nothing: no rules for this service in either dump"),
        "{}",
        stderr(&o)
    );
    assert!(!stdout(&o).contains("PASS"), "{}", stdout(&o));
    // `kindred diff --service` on a node's dump from that recording says the same.
    let dump = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"]["type"] == "rule_dump")
        .unwrap();
    let dump_file = d.path().join("dump.txt");
    std::fs::write(&dump_file, dump["event"]["text"].as_str().unwrap()).unwrap();
    let df = dump_file.to_str().unwrap();
    let o = kindred(&["diff", df, df, "--service", "default/nothing"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("default/nothing: no rules for this service in either dump"),
        "{}",
        stderr(&o)
    );
}
