//! `kindred init`, scenario errors through the CLI, and the dashboard refusing a non-terminal.

mod common;
use common::*;

#[test]
fn init_writes_the_builtin_scenario_and_never_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("k.yaml");
    let o = kindred(&["init", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.starts_with("# kindred scenario"));
    assert!(text.contains("ref: pr/77523"));
    let o = kindred(&["init", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("exists: not overwriting"));
    assert_eq!(
        kindred(&["init", "-f", f.to_str().unwrap(), "--force"])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn a_bad_scenario_is_named_with_file_line_and_field() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.yaml");
    let text = kindred::scenario::DEFAULT.replacen("  workers: 2", "  workers: 0", 1);
    std::fs::write(&f, &text).unwrap();
    let line = text.lines().position(|l| l.trim() == "workers: 0").unwrap() + 1;
    let o = kindred(&["-f", f.to_str().unwrap(), "up"]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(
        e.contains(&format!("bad.yaml:{line}: cluster.workers: 0 workers")),
        "{e}"
    );
    let o = kindred(&["-f", "/nonexistent.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent.yaml: cannot read"));
}

#[test]
fn the_dashboard_needs_a_terminal() {
    let o = kindred(&["demo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("needs a terminal"));
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("r.jsonl");
    std::fs::write(&f, "{\"format\":\"kindred-recording\",\"version\":1}\n{\"t\":5,\"event\":{\"type\":\"pod\"}}\n").unwrap();
    let o = kindred(&["replay", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("r.jsonl:2: bad record"),
        "{}",
        stderr(&o)
    );
}
