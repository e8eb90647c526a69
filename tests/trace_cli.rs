//! `kindred trace` run as a binary: exit codes, the JSON schema, both text layouts, bad input.

mod common;
use common::*;

use std::io::Write;
use std::process::{Command, Output, Stdio};

const V133: &str = "trace/kernel/nftables-overall-v1.33.txt";
const V134: &str = "trace/kernel/nftables-overall-v1.34.txt";
const IPT: &str = "trace/kernel/iptables-overall.txt";

fn f(rel: &str) -> String {
    fixture(rel).to_str().unwrap().to_string()
}

/// The node's own connection to ns2/svc2's eTP=Local LB IP (no local endpoint).
fn host_to_lb() -> Vec<&'static str> {
    vec![
        "--src",
        "192.168.0.2",
        "--dst",
        "1.2.3.4:80",
        "--from",
        "host",
        "--local-ip",
        "192.168.0.2",
    ]
}

/// kindred with extra environment and standard input.
fn kindred_with(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    time_limit();
    let mut c = Command::new(env!("CARGO_BIN_EXE_kindred"));
    c.args(args)
        .env("XDG_STATE_HOME", test_state())
        .env("NO_COLOR", "1")
        .env("KINDRED_LOG", std::env::temp_dir().join("kindred-test.log"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().expect("run kindred");
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn args<'a>(dumps: &[&'a str], packet: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["trace"];
    a.extend_from_slice(dumps);
    a.extend_from_slice(packet);
    a.extend_from_slice(extra);
    a
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(o), stderr(o)))
}

/// One side's keys, exactly; a step's keys, exactly.
fn assert_side_shape(v: &serde_json::Value) {
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    keys.retain(|k| *k != "schema");
    assert_eq!(
        keys,
        ["endpoints", "masquerade", "notes", "path", "verdict"],
        "{v}"
    );
    for s in v["path"].as_array().unwrap() {
        let mut k: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort();
        assert_eq!(k, ["chain", "hook", "line", "rule", "table"], "{s}");
        assert!(s["line"].as_u64().unwrap() > 0);
    }
}

#[test]
fn pr_132456_base_drops_host_traffic_pr_dnats_it_exit_1() {
    let (b, p) = (f(V133), f(V134));
    let o = kindred(&args(&[&b, &p], &host_to_lb(), &["--format", "json"]));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["schema"], "kindred.trace/v1");
    assert_eq!(v["equal"], false);
    assert_eq!(v["base"]["verdict"], "drop", "{v}");
    assert_eq!(v["pr"]["verdict"], "dnat", "{v}");
    assert_eq!(v["pr"]["endpoints"], serde_json::json!(["10.180.0.2:80"]));
    assert_eq!(v["pr"]["masquerade"], true);
    assert_side_shape(&v["base"]);
    assert_side_shape(&v["pr"]);
    let last = v["base"]["path"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last["hook"], "output",
        "base drops in the output hook: {last}"
    );
}

#[test]
fn pr_132456_pod_traffic_is_dnated_in_both_exit_0() {
    let (b, p) = (f(V133), f(V134));
    let pod = [
        "--src",
        "10.0.1.5",
        "--dst",
        "1.2.3.4:80",
        "--local-ip",
        "192.168.0.2",
    ];
    let o = kindred(&args(&[&b, &p], &pod, &["--format", "json"]));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let v = json(&o);
    assert_eq!(v["equal"], true);
    for side in ["base", "pr"] {
        assert_eq!(v[side]["verdict"], "dnat");
        assert_eq!(v[side]["endpoints"], serde_json::json!(["10.180.0.2:80"]));
    }
}

#[test]
fn one_dump_json_names_its_schema_and_the_verdict() {
    let d = f(IPT);
    let pkt = ["--src", "10.0.1.5", "--dst", "172.30.0.46:80"];
    let o = kindred(&args(&[&d], &pkt, &["--format", "json"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["schema"], "kindred.trace/v1");
    assert_eq!(v["verdict"], "reject", "{v}");
    assert_side_shape(&v);
    let last = v["path"].as_array().unwrap().last().unwrap().clone();
    assert!(last["rule"].as_str().unwrap().contains("REJECT"), "{last}");
    // The line is the dump's own line number.
    let text = std::fs::read_to_string(fixture(IPT)).unwrap();
    let n = last["line"].as_u64().unwrap() as usize;
    assert!(
        text.lines().nth(n - 1).unwrap().contains("REJECT"),
        "line {n}"
    );
}

#[test]
fn text_side_by_side_or_one_after_the_other_marks_where_paths_part() {
    let (b, p) = (f(V133), f(V134));
    let a = args(&[&b, &p], &host_to_lb(), &[]);
    let wide = kindred_with(&a, &[("COLUMNS", "200")], "");
    assert_eq!(wide.status.code(), Some(1), "{}", stderr(&wide));
    let w = stdout(&wide);
    assert!(w.contains("different verdicts"), "{w}");
    assert!(w.contains("base path") && w.contains("| pr path"), "{w}");
    assert_eq!(w.lines().filter(|l| l.starts_with("> ")).count(), 1, "{w}");
    assert!(w.lines().all(|l| l.chars().count() <= 200), "{w}");
    let narrow = kindred_with(&a, &[("COLUMNS", "80")], "");
    let n = stdout(&narrow);
    assert!(n.contains("base path (") && n.contains("pr path ("), "{n}");
    assert_eq!(n.lines().filter(|l| l.starts_with("> ")).count(), 2, "{n}");
    assert!(
        !n.contains('\x1b') && !w.contains('\x1b'),
        "NO_COLOR: no colour"
    );
    let mut colored = a.clone();
    colored.extend(["--color", "always"]);
    let c = kindred_with(&colored, &[("COLUMNS", "80")], "");
    assert!(stdout(&c).contains("\x1b[1;33m"), "{}", stdout(&c));
}

#[test]
fn dump_text_with_control_characters_stays_off_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture(IPT)).unwrap().replace(
        "\"ns6/svc6:p80 has no endpoints\"",
        "\"ns6/svc6:p80 \x1b]0;pwned\x07\x1b[2J has no endpoints\"",
    );
    let p = dir.path().join("evil.txt");
    std::fs::write(&p, &text).unwrap();
    let pkt = ["--src", "10.0.1.5", "--dst", "172.30.0.46:80"];
    let o = kindred(&args(&[p.to_str().unwrap()], &pkt, &[]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("\\x1b]0;pwned\\x07"), "{out}");
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
}

#[test]
fn standard_input_is_an_operand() {
    let text = std::fs::read_to_string(fixture(V134)).unwrap();
    let a = args(&["-"], &host_to_lb(), &["--format", "json"]);
    let o = kindred_with(&a, &[], &text);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["verdict"], "dnat");
}

#[test]
fn a_bad_address_names_its_flag_exit_2() {
    let d = f(IPT);
    for (flag, bad) in [
        ("--src", "10.0.1.300"),
        ("--dst", "172.30.0.41"),
        ("--dst", "172.30.0.41:99999"),
        ("--local-ip", "node"),
    ] {
        let mut a = vec!["trace", &d, "--src", "10.0.1.5", "--dst", "172.30.0.41:80"];
        if flag == "--local-ip" {
            a.extend([flag, bad]);
        } else {
            let i = a.iter().position(|x| *x == flag).unwrap();
            a[i + 1] = bad;
        }
        let o = kindred(&a);
        assert_eq!(o.status.code(), Some(2), "{flag} {bad}");
        let e = stderr(&o);
        assert!(e.contains(flag) && e.contains(bad), "{flag} {bad}: {e}");
        assert!(o.stdout.is_empty());
    }
}

#[test]
fn a_dump_that_does_not_parse_is_named_with_its_line_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("cut.txt");
    std::fs::write(
        &p,
        "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -j KUBE-SVC-X\n",
    )
    .unwrap();
    let ps = p.to_str().unwrap();
    let pkt = ["--src", "10.0.1.5", "--dst", "172.30.0.41:80"];
    let good = f(IPT);
    for dumps in [vec![ps], vec![&good, ps]] {
        let o = kindred(&args(&dumps, &pkt, &[]));
        assert_eq!(o.status.code(), Some(2));
        let e = stderr(&o);
        assert!(e.contains(&format!("{ps}:3: ")), "{e}");
        assert!(e.contains("COMMIT"), "{e}");
    }
}

#[test]
fn a_dump_without_kube_proxy_rules_is_refused_not_traced_as_accept() {
    let dir = tempfile::tempdir().unwrap();
    let pkt = ["--src", "10.0.1.5", "--dst", "172.30.0.41:80"];
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let plain = dir.path().join("plain.txt");
    std::fs::write(
        &plain,
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let good = f(IPT);
    for bad in [&empty, &plain] {
        let b = bad.to_str().unwrap();
        for dumps in [vec![b], vec![&good, b]] {
            let o = kindred(&args(&dumps, &pkt, &[]));
            assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
            let e = stderr(&o);
            assert!(
                e.contains(&format!("{b}: no kube-proxy rules found")),
                "{e}"
            );
        }
    }
}

#[test]
fn missing_files_stdin_twice_and_an_empty_node_are_trouble() {
    let pkt = ["--src", "10.0.1.5", "--dst", "172.30.0.41:80"];
    let o = kindred(&args(&["/nonexistent/dump.txt"], &pkt, &[]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("/nonexistent/dump.txt"),
        "{}",
        stderr(&o)
    );
    let o = kindred(&args(&["-", "-"], &pkt, &[]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("only once"), "{}", stderr(&o));
    let o = kindred(&args(&["node:"], &pkt, &[]));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("node: needs a container name"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_rule_the_tracer_cannot_evaluate_is_trouble_and_named_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture(IPT)).unwrap().replace(
        "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\"",
        "-A KUBE-SERVICES -m u32 --u32 \"0x0&0xf=0x5\" -m comment --comment \"ns1/svc1:p80 cluster IP\"",
    );
    let p = dir.path().join("u32.txt");
    std::fs::write(&p, &text).unwrap();
    let ps = p.to_str().unwrap();
    let line = 1 + text.lines().position(|l| l.contains("-m u32")).unwrap();
    let pkt = ["--src", "10.0.1.5", "--dst", "172.30.0.41:80"];
    let good = f(IPT);
    for dumps in [vec![ps], vec![&good, ps]] {
        let o = kindred(&args(&dumps, &pkt, &[]));
        assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
        assert!(stdout(&o).contains("unknown"), "{}", stdout(&o));
        let e = stderr(&o);
        assert!(e.contains(ps) && e.contains(&format!("line {line}")), "{e}");
    }
}
