//! `kindred check --replay`: the 2019 verdict from the demo recording, a regression, reports
//! validated (JSON against its schema, JUnit parsed, Markdown snapshot).

mod common;
use common::*;

use kindred::backend::event::Event;
use kindred::backend::recording;
use kindred::model::{Outcome, Side};

fn demo_path() -> String {
    format!("{}/assets/demo.jsonl", env!("CARGO_MANIFEST_DIR"))
}

fn demo() -> recording::Recording {
    let text = std::fs::read_to_string(demo_path()).unwrap();
    recording::parse(&text, "demo").unwrap()
}

/// The demo as if the PR broke the hostNetwork pod on the worker without the echo pod.
fn regression(mut rec: recording::Recording) -> recording::Recording {
    for r in &mut rec.records {
        if let Event::Probe {
            side: Side::Pr,
            result,
        } = &mut r.event
            && result.source == "netshoot-77523-worker"
        {
            result.outcome = Outcome::Timeout;
            result.http_status = None;
        }
    }
    rec
}

fn schema_check(report: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/check-report.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).expect("schema compiles");
    let errors: Vec<String> = v
        .iter_errors(report)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match its schema: {errors:#?}"
    );
}

/// (testcases, failures) in a JUnit file, read with an XML parser.
fn junit_counts(xml: &str) -> (usize, usize) {
    use quick_xml::Reader;
    use quick_xml::events::Event as X;
    let mut r = Reader::from_str(xml);
    let (mut cases, mut failures) = (0, 0);
    loop {
        match r.read_event().expect("well-formed JUnit XML") {
            X::Start(e) | X::Empty(e) => match e.name().as_ref() {
                b"testcase" => cases += 1,
                b"failure" => failures += 1,
                _ => {}
            },
            X::Eof => break,
            _ => {}
        }
    }
    (cases, failures)
}

#[test]
fn demo_recording_gives_the_2019_verdict() {
    let d = tempfile::tempdir().unwrap();
    let (md, js, xml) = (
        d.path().join("r.md"),
        d.path().join("r.json"),
        d.path().join("r.xml"),
    );
    let o = kindred(&[
        "check",
        "--replay",
        &demo_path(),
        "--report-md",
        md.to_str().unwrap(),
        "--report-json",
        js.to_str().unwrap(),
        "--junit",
        xml.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("PASS: 4 of 4 expectations hold"), "{out}");
    let row = out
        .lines()
        .find(|l| l.starts_with("netshoot-*-worker "))
        .unwrap();
    assert!(
        row.contains("timeout") && row.contains("OK 200") && row.contains("(differs)"),
        "{row}"
    );

    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    schema_check(&v);
    assert_eq!(v["ok"], true);
    let p = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["source"] == "netshoot-*-worker")
        .unwrap();
    assert_eq!(p["base"]["outcome"], "timeout");
    assert_eq!(p["pr"]["outcome"], "ok");
    let svc = &v["rules"][0]["comparison"]["services"][0];
    assert_eq!(svc["service"], "default/echo:");
    assert_eq!(svc["added"].as_array().unwrap().len(), 2);
    assert_eq!(svc["removed"].as_array().unwrap().len(), 0);
    assert!(
        svc["added"][0]["rule"]
            .as_str()
            .unwrap()
            .contains("masquerade LOCAL traffic")
    );

    assert_eq!(
        junit_counts(&std::fs::read_to_string(&xml).unwrap()),
        (4, 0)
    );
    insta::assert_snapshot!("check_demo_markdown", std::fs::read_to_string(&md).unwrap());
}

#[test]
fn a_regression_fails_the_check() {
    let rec = regression(demo());
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("regression.jsonl");
    std::fs::write(&f, rec.to_jsonl()).unwrap();
    let (js, xml) = (d.path().join("r.json"), d.path().join("r.xml"));
    let o = kindred(&[
        "check",
        "--replay",
        f.to_str().unwrap(),
        "--report-json",
        js.to_str().unwrap(),
        "--junit",
        xml.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("FAIL: 1 of 4 expectations do not hold"),
        "{}",
        stdout(&o)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    schema_check(&v);
    assert_eq!(v["ok"], false);
    let bad: Vec<_> = v["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["holds"] == false)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["source"], "netshoot-77523-worker");
    assert_eq!(bad[0]["actual"], "timeout");
    let x = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(junit_counts(&x), (4, 1));
    assert!(x.contains("expected OK, got timeout"));
}

#[test]
fn trouble_is_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("empty.jsonl");
    std::fs::write(
        &f,
        "{\"format\":\"kindred-recording\",\"version\":1}\n{\"t\":0,\"event\":{\"type\":\"end\"}}\n",
    )
    .unwrap();
    let o = kindred(&["check", "--replay", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no session"), "{}", stderr(&o));
    // Cut short at a line boundary (no end marker): trouble, not a FAIL verdict.
    let text = std::fs::read_to_string(demo_path()).unwrap();
    let cut: String = text.lines().take(60).map(|l| format!("{l}\n")).collect();
    std::fs::write(&f, cut).unwrap();
    let o = kindred(&["check", "--replay", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("cut short"), "{}", stderr(&o));
    let o = kindred(&["check", "--replay", "/nonexistent.jsonl"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn the_report_names_the_commits_built() {
    let text = std::fs::read_to_string(demo_path()).unwrap();
    let mut rec = recording::parse(&text, "demo").unwrap();
    let at = rec
        .records
        .iter()
        .position(|r| matches!(r.event, Event::Phase { .. }))
        .unwrap();
    for (side, commit) in [
        (Side::Base, "0123456789abcdef0123456789abcdef01234567"),
        (Side::Pr, "fedcba9876543210fedcba9876543210fedcba98"),
    ] {
        rec.records.insert(
            at,
            recording::Record {
                t: rec.records[at].t,
                event: Event::Built {
                    side,
                    commit: commit.into(),
                    image: format!("kindred/node:{side:?}"),
                    version: Some("v1.34.0-alpha.1.5+0123456789abcd".into()),
                    snapshot: None,
                },
            },
        );
    }
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("built.jsonl");
    std::fs::write(&f, rec.to_jsonl()).unwrap();
    let (md, js) = (d.path().join("r.md"), d.path().join("r.json"));
    let o = kindred(&[
        "check",
        "--replay",
        f.to_str().unwrap(),
        "--report-md",
        md.to_str().unwrap(),
        "--report-json",
        js.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let m = std::fs::read_to_string(&md).unwrap();
    assert!(
        m.contains("commit `0123456789ab`") && m.contains("commit `fedcba987654`"),
        "{m}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    schema_check(&v);
    assert_eq!(
        v["pr"]["commit"],
        "fedcba9876543210fedcba9876543210fedcba98"
    );
    assert_eq!(v["pr"]["image"], "kindred/node:Pr");
    assert_eq!(v["pr"]["version"], "v1.34.0-alpha.1.5+0123456789abcd");
    assert!(
        m.contains("Kubernetes `v1.34.0-alpha.1.5+0123456789abcd`"),
        "{m}"
    );
}

/// The dashboard's view of a recording: the replay backend through the driver, as `kindred
/// replay` runs it (at full speed), until the whole recording has played and the Diff pane has
/// its result.
async fn dashboard_state(rec: recording::Recording) -> kindred::app::State {
    time_limit();
    use kindred::app::{Driver, Msg};
    use kindred::backend::replay::ReplayBackend;
    use kindred::model::Job;
    let backend = Box::new(ReplayBackend::new(rec, f64::INFINITY));
    let mut d = Driver::start(backend, None).unwrap();
    loop {
        let m = d.next().await;
        let end = matches!(
            m,
            Msg::Backend(Event::Finished {
                job: Job::Attach,
                ..
            })
        );
        d.apply(m);
        if end {
            break;
        }
    }
    while d.state.diff.pending.is_some() {
        let m = d.next().await;
        d.apply(m);
    }
    d.shutdown();
    std::mem::take(&mut d.state)
}

#[tokio::test(flavor = "multi_thread")]
async fn check_and_the_dashboard_agree_on_a_recording() {
    use kindred::backend::replay::ReplayBackend;
    use kindred::check::{CheckOptions, Limits, check, verdict};
    let predicting = common::predicting::recording();
    for (rec, ok) in [
        (demo(), true),
        (regression(demo()), false),
        (predicting, true),
    ] {
        let st = dashboard_state(rec.clone()).await;
        let seen = verdict(&st).unwrap();
        let opts = CheckOptions {
            limits: Limits::REPLAY,
            cleanup: false,
            record: None,
            latency_factor: Default::default(),
        };
        let backend = Box::new(ReplayBackend::new(rec, f64::INFINITY));
        let checked = check(backend, opts, |_| {}).await.unwrap();
        assert_eq!(checked.ok, ok);
        assert_eq!(seen, checked, "the dashboard and check judge alike");
        // The Diff pane shows the same comparison as the report, for the same node pair.
        let shown = st.diff.result.as_ref().expect("a diff on screen");
        let pair = st.diff.pair().unwrap();
        let reported = checked.rules.iter().find(|r| r.node == pair.role).unwrap();
        assert_eq!(*shown.comparison, reported.comparison);
        // And the same packet summary heads both.
        let packets = checked
            .packets
            .iter()
            .find(|p| p.node == pair.role)
            .unwrap();
        assert_eq!(shown.packets.as_deref(), Some(&packets.summary));
    }
}

/// The rule-change timeline is part of the recording: a replay (dashboard state) and `check
/// --replay` (its reports) see the same entries, at the recorded times, and no change twice
/// (a replayed dump read no later than the one held is no news).
#[test]
fn rule_changes_in_a_recording_reach_the_reports() {
    let mut rec = demo();
    let text = rec
        .records
        .iter()
        .rev()
        .find_map(|r| match &r.event {
            Event::RuleDump {
                side: Side::Pr,
                node,
                text,
                ..
            } if node == "77523-worker" => Some(text.clone()),
            _ => None,
        })
        .unwrap();
    // Five seconds before the session's end.
    let end = rec.records.len() - 1;
    let t = rec.records[end].t - 5000;
    assert!(rec.records[end - 1].t <= t + 5000);
    let churn = format!("{text}-A KUBE-SEP-CHURN -m comment --comment \"default/echo:\" -j DNAT\n");
    rec.records.insert(
        end,
        recording::Record {
            t: t + 5000,
            event: Event::RuleDump {
                side: Side::Pr,
                node: "77523-worker".into(),
                text: churn,
                at_ms: Some(t + 5000),
            },
        },
    );
    let st = common::headless::state_from(&rec);
    let entries: Vec<(u64, Side, String, usize, usize)> = st
        .timeline
        .entries
        .iter()
        .map(|c| {
            (
                c.at.as_millis() as u64,
                c.side,
                c.node.clone(),
                c.added,
                c.removed,
            )
        })
        .collect();
    assert_eq!(
        entries,
        [(t + 5000, Side::Pr, "77523-worker".to_string(), 1, 0)]
    );

    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("churn.jsonl");
    std::fs::write(&f, rec.to_jsonl()).unwrap();
    let (md, js) = (d.path().join("r.md"), d.path().join("r.json"));
    let o = kindred(&[
        "check",
        "--replay",
        f.to_str().unwrap(),
        "--report-md",
        md.to_str().unwrap(),
        "--report-json",
        js.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    schema_check(&report);
    let changes = report["rule_changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0]["at_ms"], t + 5000);
    assert_eq!(changes[0]["cluster"], "77523");
    assert_eq!(
        (changes[0]["added"].as_u64(), changes[0]["removed"].as_u64()),
        (Some(1), Some(0))
    );
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(
        md.contains("**Rule changes during the run**")
            && md.contains("| `77523` | `77523-worker` | 1 | 0 |"),
        "{md}"
    );
}

/// The second probe target of [`two_targets`]: it sorts after both LoadBalancer addresses, so a
/// verdict that looks at the first result of a source alone sees the LoadBalancer's.
const SECOND: &str = "192.0.2.10:80";

/// Run `check --replay` on `rec` with `args`; (exit code, stdout, stderr, JSON report).
fn check_replay(
    rec: &recording::Recording,
    args: &[&str],
) -> (Option<i32>, String, String, serde_json::Value) {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("rec.jsonl");
    std::fs::write(&f, rec.to_jsonl()).unwrap();
    let js = d.path().join("r.json");
    let mut argv = vec![
        "check",
        "--replay",
        f.to_str().unwrap(),
        "--report-json",
        js.to_str().unwrap(),
    ];
    argv.extend_from_slice(args);
    let o = kindred(&argv);
    let v = std::fs::read_to_string(&js)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(serde_json::Value::Null);
    if !v.is_null() {
        schema_check(&v);
    }
    (o.status.code(), stdout(&o), stderr(&o), v)
}

/// Every target is judged: an expectation without a target holds on each, so a failure on the
/// second one fails the check; an expectation that names the second target is judged there
/// (instead of the general one).
#[test]
fn check_judges_every_probe_target() {
    let rec = two_targets(demo(), SECOND);
    let (code, out, err, v) = check_replay(&rec, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("FAIL: 1 of 8 expectations do not hold"),
        "{out}"
    );
    assert!(
        out.contains(&format!("netshoot-*-worker2 → {SECOND}")),
        "{out}"
    );
    assert_eq!(v["ok"], false);
    let bad: Vec<_> = v["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["holds"] == false)
        .collect();
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(bad[0]["source"], "netshoot-77523-worker2");
    assert_eq!(bad[0]["target"], SECOND);
    assert_eq!(bad[0]["actual"], "timeout");
    let rows = v["probes"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 5, "a row per source and target: {rows:?}");
    let row = rows
        .iter()
        .find(|r| r["source"] == "netshoot-*-worker2" && r["target"] == SECOND)
        .unwrap();
    assert_eq!(
        (&row["pr"]["outcome"], &row["expected_pr"], &row["differs"]),
        (&"timeout".into(), &"ok".into(), &true.into())
    );

    // The scenario expects that timeout on the second target: the check passes.
    let mut rec = rec;
    for r in &mut rec.records {
        if let Event::Session(s) = &mut r.event {
            s.expectations.push(kindred::backend::event::Expectation {
                side: Side::Pr,
                source: "netshoot-77523-worker2".into(),
                outcome: Outcome::Fail,
                target: Some(SECOND.parse().unwrap()),
                min_rate: None,
            });
        }
    }
    let (code, out, err, v) = check_replay(&rec, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("PASS: 8 of 8 expectations hold"), "{out}");
    let on_second = v["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "netshoot-77523-worker2" && e["target"] == SECOND)
        .count();
    assert_eq!(
        on_second, 1,
        "the named expectation, not the general one, judges it"
    );
}

/// Without expectations there is no verdict: "no expectations: nothing judged", exit 2, unless
/// the reports alone are asked for.
#[test]
fn nothing_to_judge_is_not_a_pass() {
    let mut rec = demo();
    for r in &mut rec.records {
        if let Event::Session(s) = &mut r.event {
            s.expectations.clear();
        }
    }
    let (code, out, err, v) = check_replay(&rec, &[]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("no expectations: nothing judged"), "{err}");
    assert!(
        out.contains("no expectations: nothing judged") && !out.contains("PASS"),
        "{out}"
    );
    assert_eq!(v["ok"], false);
    let (code, out, err, v) = check_replay(&rec, &["--report-only"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("no expectations: nothing judged"), "{out}");
    assert_eq!(
        (
            v["ok"].as_bool(),
            v["expectations"].as_array().map(Vec::len)
        ),
        (Some(false), Some(0))
    );
    // --report-only: the reports whatever the verdict, exit 0.
    let (code, out, _, v) = check_replay(&regression(demo()), &["--report-only"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("FAIL: 1 of 4"), "{out}");
    assert_eq!(v["ok"], false);
}

/// A later `session` event in a recording that holds no expectations does not drop those set
/// before: the regression still fails, and the run says what the later event would have done.
#[test]
fn a_later_session_event_keeps_the_expectations() {
    let mut rec = regression(demo());
    let (at, mut later) = rec
        .records
        .iter()
        .find_map(|r| match &r.event {
            Event::Session(s) => Some((r.t, s.clone())),
            _ => None,
        })
        .unwrap();
    later.expectations.clear();
    let t = rec.records.last().unwrap().t.max(at);
    rec.records.push(recording::Record {
        t,
        event: Event::Session(later),
    });
    let (code, out, err, v) = check_replay(&rec, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("FAIL: 1 of 4 expectations do not hold"),
        "{out}"
    );
    assert!(
        err.contains(
            "a later session event drops or changes 4 expectation(s) set before: kept them"
        ),
        "{err}"
    );
    assert_eq!(v["expectations"].as_array().unwrap().len(), 4);
}

/// The PR worker's kube-proxy in nftables mode, the base's in iptables: the rules still compare
/// (each Service as it is), and every report says that the modes differ.
#[test]
fn reports_say_when_the_two_sides_modes_differ() {
    let mut rec = demo();
    let nft = std::fs::read_to_string(fixture(
        "nftables/k3s-real-nft-list-table-ip-kube-proxy.txt",
    ))
    .unwrap();
    for r in &mut rec.records {
        if let Event::RuleDump {
            side: Side::Pr,
            node,
            text,
            ..
        } = &mut r.event
            && node == "77523-worker"
        {
            *text = nft.clone();
        }
    }
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("modes.jsonl");
    std::fs::write(&f, rec.to_jsonl()).unwrap();
    let (md, js) = (d.path().join("r.md"), d.path().join("r.json"));
    let o = kindred(&[
        "check",
        "--replay",
        f.to_str().unwrap(),
        "--report-md",
        md.to_str().unwrap(),
        "--report-json",
        js.to_str().unwrap(),
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("note: the modes differ (base iptables, PR nftables)"),
        "{out}{}",
        stderr(&o)
    );
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(
        md.contains("> note: the modes differ (base iptables, PR nftables)"),
        "{md}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    schema_check(&v);
    let worker = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == "worker")
        .unwrap();
    assert_eq!(
        worker["comparison"]["modes"]["pr"], "nftables",
        "{worker:#}"
    );
    assert_eq!(worker["comparison"]["equal"], false);
}

/// Every report carries, per probe, expected, predicted and observed; what changed for the
/// Service's packets heads each; both kinds of disagreement are listed, the expected-vs-
/// predicted one as a warning naming the rule that decides it; and the verdict stays expected
/// vs observed (PASS). The rules are kube-proxy's before and after PR 132456
/// ([`common::predicting`]).
#[test]
fn reports_carry_predictions_disagreements_and_what_changed_for_packets() {
    let rec = common::predicting::recording();
    let d = tempfile::tempdir().unwrap();
    let (md, xml) = (d.path().join("r.md"), d.path().join("r.xml"));
    let (code, out, err, v) = check_replay(
        &rec,
        &[
            "--report-md",
            md.to_str().unwrap(),
            "--junit",
            xml.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "a warning is no failure: {out}{err}");
    assert!(out.contains("PASS: 4 of 4 expectations hold"), "{out}");
    // Text: the packets first, then the probes with their predictions, then the disagreements.
    let at = |what: &str| {
        out.find(what)
            .unwrap_or_else(|| panic!("{what} not in\n{out}"))
    };
    assert!(
        at("packets: 2 of 12 classes differ") < at("SOURCE"),
        "{out}"
    );
    assert!(
        out.contains("host → LB 1.2.3.4:80                    base drop (filter-output, service-endpoints-check)   PR dnat 1 endpoint masqueraded"),
        "{out}"
    );
    let row = |src: &str| {
        out.lines()
            .find(|l| l.starts_with(src))
            .unwrap()
            .to_string()
    };
    let host = row("netshoot-*-worker ");
    assert!(host.contains(" drop filter-output dnat "), "{host}");
    assert!(
        row("client-*-worker ").contains(" dnat               dnat "),
        "{out}"
    );
    let rule = "b133-worker line 179, endpoint-SGOXE6O3-ns2/svc2/tcp/p80__10.180.0.2/80: meta l4proto tcp dnat to 10.180.0.2:80";
    assert!(
        out.contains(&format!(
            "  client-b133-worker on b133: observed timeout, the rules say dnat (decided by {rule})"
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "WARNING: expected vs predicted (most likely a wrong expectation): client-b133-worker on b133: expected FAIL, the rules say dnat (decided by {rule})"
        )),
        "{out}"
    );
    assert!(at("Observed vs predicted") > at("SOURCE"), "{out}");

    // JSON (schema-checked by check_replay).
    let p = &v["packets"][0];
    assert_eq!(
        (&p["node"], &p["base_node"]),
        (&"worker".into(), &"b133-worker".into())
    );
    let changes = p["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 2, "{p:#}");
    assert_eq!(changes[0]["source"], "host");
    assert_eq!(
        changes[0]["destination"],
        serde_json::json!({"kind": "lb", "ip": "1.2.3.4", "port": 80, "proto": "tcp"}),
        "the cluster's LoadBalancer IP is named LB"
    );
    assert_eq!(changes[0]["base"]["verdict"], "drop");
    assert_eq!(changes[0]["pr"]["verdict"], "dnat");
    assert_eq!(p["base"]["node_ips"], serde_json::json!(["192.168.0.2"]));
    let probe = |src: &str| {
        v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["source"] == src)
            .unwrap()
            .clone()
    };
    let host = probe("netshoot-*-worker");
    assert_eq!(host["predicted_base"]["label"], "drop filter-output");
    assert_eq!(host["predicted_base"]["reaches"], false);
    assert_eq!(host["predicted_pr"]["label"], "dnat");
    assert_eq!(host["predicted_pr"]["reaches"], true);
    // The deciding rule is the dump's line.
    let r = &host["predicted_base"]["rule"];
    assert_eq!(r["node"], "b133-worker");
    let line = r["line"].as_u64().unwrap() as usize;
    let dumped = common::predicting::dump(0)
        .lines()
        .nth(line - 1)
        .unwrap()
        .to_string();
    assert_eq!(dumped.trim(), r["rule"].as_str().unwrap(), "{r:#}");
    assert_eq!(r["chain"], "service-endpoints-check");
    let dis: Vec<_> = v["disagreements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["kind"].as_str().unwrap(),
                d["side"].as_str().unwrap(),
                d["source"].as_str().unwrap(),
                d["outcome"].as_str().unwrap(),
                d["predicted"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        dis,
        [
            ("observed", "base", "client-b133-worker", "timeout", "dnat"),
            ("expected", "base", "client-b133-worker", "fail", "dnat"),
        ]
    );
    assert_eq!(v["ok"], true);
    let predicted: Vec<_> = v["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["predicted"].as_str().unwrap())
        .collect();
    assert_eq!(predicted, ["drop filter-output", "dnat", "dnat", "dnat"]);

    // Markdown.
    let m = std::fs::read_to_string(&md).unwrap();
    let at = |what: &str| m.find(what).unwrap_or_else(|| panic!("{what} not in\n{m}"));
    assert!(
        at("**What changed for packets** of `ns2/svc2` on worker") < at("| source |"),
        "{m}"
    );
    assert!(
        m.contains("| `host → LB 1.2.3.4:80` | drop (filter-output, service-endpoints-check) | dnat 1 endpoint masqueraded |"),
        "{m}"
    );
    assert!(
        m.contains("| predicted on `b133` | predicted on `p134` |"),
        "{m}"
    );
    assert!(m.contains("| drop filter-output | dnat |"), "{m}");
    assert!(
        at("**Observed vs predicted**") < at("⚠️ **Warning: expected vs predicted**"),
        "{m}"
    );
    assert!(
        m.contains("- `client-b133-worker` on `b133`: expected FAIL, the rules say dnat, decided by `b133-worker` line 179"),
        "{m}"
    );

    // JUnit: every expectation's output says expected, predicted and observed; the warning goes
    // with its test case; the suite's output starts with what changed for packets.
    let x = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(junit_counts(&x), (4, 0));
    assert!(
        x.contains(
            "<system-out>expected FAIL, predicted drop filter-output, observed timeout</system-out>"
        ),
        "{x}"
    );
    let case = x
        .split("<testcase ")
        .find(|c| c.contains("client-b133-worker expects FAIL"))
        .unwrap();
    assert!(
        case.contains("WARNING: expected vs predicted (most likely a wrong expectation): client-b133-worker on b133: expected FAIL, the rules say dnat (decided by b133-worker line 179"),
        "{case}"
    );
    assert!(
        x.contains("    <system-out>Packets of ns2/svc2 on worker (b133-worker vs p134-worker):\npackets: 2 of 12 classes differ"),
        "{x}"
    );
}

/// The same Service on both sides: no class differs, and every report says so (no lines).
#[test]
fn equal_rules_say_no_class_differs() {
    let mut rec = common::predicting::recording();
    for r in &mut rec.records {
        if let Event::RuleDump { text, .. } = &mut r.event {
            *text = common::predicting::dump(1);
        }
    }
    let d = tempfile::tempdir().unwrap();
    let md = d.path().join("r.md");
    let (code, out, err, v) = check_replay(&rec, &["--report-md", md.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("packets: no class differs (12 classes traced, 1 Service)"),
        "{out}"
    );
    assert_eq!(v["packets"][0]["changes"], serde_json::json!([]));
    assert_eq!(v["packets"][0]["classes"], 12);
    let m = std::fs::read_to_string(&md).unwrap();
    assert!(m.contains("no class differs (12 classes traced)"), "{m}");
    assert!(!m.contains("| class | base | PR |"), "{m}");
}

/// `check --record` writes the run's events up to its verdict: checking that recording again
/// gives the same report, predictions included; a recording over the one replayed is refused.
#[test]
fn check_records_what_it_judged() {
    let rec = common::predicting::recording();
    let d = tempfile::tempdir().unwrap();
    let again = d.path().join("again.jsonl");
    let (code, out, err, first) = check_replay(&rec, &["--record", again.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let text = std::fs::read_to_string(&again).unwrap();
    let (code, out, err, second) = check_replay(&recording::parse(&text, "again").unwrap(), &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(first, second);
    assert!(
        first["disagreements"]
            .as_array()
            .is_some_and(|d| d.len() == 2)
    );

    let f = d.path().join("rec.jsonl");
    std::fs::write(&f, rec.to_jsonl()).unwrap();
    let o = kindred(&[
        "check",
        "--replay",
        f.to_str().unwrap(),
        "--record",
        f.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the recording being replayed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_to_string(&f).unwrap(), rec.to_jsonl());
}

/// A replay of two 100-node sides with 3 rule sets each (and one PR node with rules of its
/// own): the reports list each side's groups with the groups they are compared with, and
/// compare the Service's rules once per group pair, not per node; the JSON report matches its
/// schema.
#[test]
fn reports_list_each_sides_groups_and_compare_group_to_group() {
    // What `check` waits for before its verdict: a running pod and the LoadBalancer IP.
    let ready = |side: &str| -> [Event; 2] {
        let ev = |v: serde_json::Value| serde_json::from_value::<Event>(v).unwrap();
        [
            ev(serde_json::json!({"type": "pod", "side": side, "pod": {
                "name": format!("echo-{side}-node-099"), "node": format!("{side}-node-099"),
                "host_network": false, "ip": "10.244.3.2", "phase": "Running", "restarts": 0}})),
            ev(
                serde_json::json!({"type": "service", "side": side, "service": {
                "name": "default/echo", "lb_ip": "172.18.255.200", "port": 8080,
                "external_traffic_policy": "Local", "warning": null}}),
            ),
        ]
    };
    let demo = demo();
    let rec = recording::Recording {
        header: demo.header.clone(),
        records: common::groups::events(100, true)
            .into_iter()
            .chain(["base", "pr"].into_iter().flat_map(ready))
            .enumerate()
            .map(|(t, event)| recording::Record { t: t as u64, event })
            .collect(),
        skipped: 0,
        complete: true,
    };
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("groups.jsonl");
    std::fs::write(&f, rec.to_jsonl()).unwrap();
    let (md, js) = (d.path().join("r.md"), d.path().join("r.json"));
    let o = kindred(&[
        "check",
        "--replay",
        f.to_str().unwrap(),
        "--report-only",
        "--report-md",
        md.to_str().unwrap(),
        "--report-json",
        js.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(
            "  base worker group A: 60 nodes, same rules ↔ PR worker group A  [base-node-000, \
             base-node-001, base-node-002, base-node-003, base-node-004, … 55 more]"
        ),
        "{text}"
    );
    assert!(
        text.contains("  PR node-099 ↔ base worker group C  [pr-node-099]"),
        "{text}"
    );
    assert_eq!(
        text.matches("\nRules of default/echo on ").count(),
        4,
        "{text}"
    );
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(
        md.contains("| base | `worker group B: 30 nodes, same rules` | `worker group B` |"),
        "{md}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    schema_check(&report);
    let groups = report["groups"].as_array().unwrap();
    let summary: Vec<(String, String, usize, String)> = groups
        .iter()
        .map(|g| {
            (
                g["side"].as_str().unwrap().to_string(),
                g["label"].as_str().unwrap().to_string(),
                g["nodes"].as_array().unwrap().len(),
                g["same_as"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l.as_str().unwrap())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
        .collect();
    let s = |a: &str, b: &str, n: usize, c: &str| (a.to_string(), b.to_string(), n, c.to_string());
    assert_eq!(
        summary,
        [
            s("base", "worker group A", 60, "worker group A"),
            s("base", "worker group B", 30, "worker group B"),
            s("base", "worker group C", 10, "worker group C, node-099"),
            s("pr", "worker group A", 60, "worker group A"),
            s("pr", "worker group B", 30, "worker group B"),
            s("pr", "worker group C", 9, "worker group C"),
            s("pr", "node-099", 1, "worker group C"),
        ]
    );
    assert_eq!(groups[0]["role"], "worker");
    let rules: Vec<&str> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["node"].as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "worker group A",
            "worker group B",
            "worker group C",
            "worker group C ↔ node-099"
        ]
    );
}

/// A recording with repeated tries (tests/fixtures/tries/flaky.jsonl: the PR's netshoot on
/// worker2 answers 20 of 30 tries from 2 of 3 endpoints, about three times slower than the
/// base's): every report says FLAKY with passes/N, the endpoint spread, p50/p99 per row and
/// per side and the PR row flagged slower; the JSON matches its schema; a larger
/// `--latency-factor` flags nothing, and one of 1 or less is refused.
#[test]
fn repeated_tries_in_every_report() {
    let d = tempfile::tempdir().unwrap();
    let (md, js, xml) = (
        d.path().join("r.md"),
        d.path().join("r.json"),
        d.path().join("r.xml"),
    );
    let fixture = common::fixture("tries/flaky.jsonl");
    let run = |factor: &str| {
        kindred(&[
            "check",
            "--replay",
            fixture.to_str().unwrap(),
            "--report-md",
            md.to_str().unwrap(),
            "--report-json",
            js.to_str().unwrap(),
            "--junit",
            xml.to_str().unwrap(),
            "--latency-factor",
            factor,
        ])
    };
    let o = run("2");
    assert!(matches!(o.status.code(), Some(1) | Some(3)), "{o:?}");
    let text = stdout(&o);
    let spread = "netshoot-*-worker2 on 77523: 20/30 answered, 10 timed out; 2/3 endpoints \
                  answered in 30 tries: echo-77523-worker 10, echo-77523-worker2 10";
    for want in [
        "OK 200 30/30 FLAKY 20/30",
        "OK ◐",
        "77523: connect 3.7/7.8ms, total 14/31ms ▲",
        "77523: connect 3.2/7.8ms, total 12/31ms",
        spread,
        "FLAKY: 1 of 4 expectations flaky (tries disagree)",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    let m = std::fs::read_to_string(&md).unwrap();
    for want in [
        "| **OK 200 30/30** | **FLAKY 20/30** | OK ✓ | OK ◐ |",
        "| `netshoot-*-worker2` | 1.2/1.5ms | 4.5/5.4ms | 3.7/7.8ms | 14/31ms ▲ |",
        spread,
    ] {
        assert!(m.contains(want), "{want}\n{m}");
    }
    let x = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(junit_counts(&x), (4, 1), "{x}");
    assert!(
        x.contains(
            "<failure type=\"flaky\" message=\"expected OK, got FLAKY (20 of 30 tries answered)\"/>"
        ),
        "{x}"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    schema_check(&j);
    assert_eq!(j["flaky"], 1);
    assert_eq!(j["latency"]["factor"], 2.0);
    let row = j["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "netshoot-*-worker2")
        .unwrap();
    assert_eq!(row["pr_slower"], true);
    assert_eq!(row["pr_summary"]["passes"], 20);
    assert_eq!(row["pr_summary"]["endpoints"]["echo-77523-worker"], 10);
    let e = j["expectations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["source"] == "netshoot-77523-worker2")
        .unwrap();
    assert_eq!(
        (&e["judged"], &e["passes"], &e["tries"]),
        (&"flaky".into(), &20.into(), &30.into())
    );
    // A factor the PR stays under: nothing flagged.
    let o = run("6");
    assert!(
        !stdout(&o).contains("ms ▲") && stdout(&o).contains("14/31ms\n"),
        "{}",
        stdout(&o)
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&js).unwrap()).unwrap();
    assert_eq!(j["latency"]["factor"], 6.0);
    for bad in ["1", "0.5", "x", "inf"] {
        let o = run(bad);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains("a factor above 1"), "{}", stderr(&o));
    }
}
