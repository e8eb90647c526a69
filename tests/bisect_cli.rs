//! `kindred bisect --replay`: the bisect a recording holds, shown as a live one would be (the
//! same script over the replay backend): its reports (text, Markdown, JSON against its schema),
//! its exit codes, untrusted text kept visible, and bad flags refused with usage.

mod common;
use common::*;

use kindred::backend::bisect::{BisectEnd, BisectEvent};
use kindred::backend::event::Event;
use kindred::backend::recording;

fn found_path() -> std::path::PathBuf {
    fixture("bisect/found.jsonl")
}

/// The fixture with its end replaced by `end` (or left out), written to a file in `dir`.
fn with_end(dir: &std::path::Path, end: Option<BisectEnd>) -> String {
    let text = std::fs::read_to_string(found_path()).unwrap();
    let rec = recording::parse(&text, "found").unwrap();
    let mut out = vec![serde_json::to_string(&rec.header).unwrap()];
    for mut r in rec.records {
        if let Event::Bisect(BisectEvent::Done(e)) = &mut r.event {
            match &end {
                Some(end) => *e = end.clone(),
                None => continue,
            }
        }
        out.push(serde_json::to_string(&r).unwrap());
    }
    out.push(r#"{"t":99999,"event":{"type":"end"}}"#.into());
    let p = dir.join("bisect.jsonl");
    std::fs::write(&p, out.join("\n") + "\n").unwrap();
    p.to_str().unwrap().to_string()
}

fn bisect(file: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "bisect", "--replay", file, "--good", "v1.33.0", "--bad", "HEAD",
    ];
    args.extend_from_slice(extra);
    kindred(&args)
}

fn schema_check(report: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/bisect-report.schema.json"
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

fn no_escape(o: &std::process::Output) {
    for (what, bytes) in [("stdout", &o.stdout), ("stderr", &o.stderr)] {
        assert!(
            !bytes.contains(&0x1b),
            "a raw ESC on {what}: {}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn a_found_bisect_reports_the_first_bad_commit_with_its_pr_and_exits_0() {
    let o = bisect(found_path().to_str().unwrap(), &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    no_escape(&o);
    let out = stdout(&o);
    assert!(
        out.contains("FOUND: first bad commit 101010101010 #132416 Merge pull request #132416 from evil/\\x1b[31mred"),
        "{out}"
    );
    assert!(
        out.contains("last good commit 0f0f0f0f0f0f #132415"),
        "{out}"
    );
    assert!(
        out.contains("skip (unbuildable)") && out.contains("skip (flaky)"),
        "{out}"
    );
    assert!(
        out.contains("path: swap (every file the range changes is kube-proxy's"),
        "{out}"
    );
    // The cached step says so, with no time of its own.
    let cached = out.lines().find(|l| l.contains("0c0c0c0c0c0c")).unwrap();
    assert!(
        cached.contains(" - ") && cached.trim_end().ends_with("yes"),
        "{cached}"
    );
    // The rules diff, its tab indents as spaces.
    assert!(
        out.contains("+    chain filter-output { type filter hook output priority -90;"),
        "{out}"
    );
    // Progress on stderr: each step as it is tested and judged.
    let err = stderr(&o);
    assert!(
        err.contains("bisect: testing 101010101010 (#132416) (inside)"),
        "{err}"
    );
    assert!(
        err.contains("bisect: 111111111111 (#132417) skip (unbuildable) (0/3 rounds good"),
        "{err}"
    );
    assert!(err.contains("bisect: 4 candidates left"), "{err}");
}

#[test]
fn json_report_matches_its_schema_for_every_end() {
    let o = bisect(found_path().to_str().unwrap(), &["--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    schema_check(&v);
    assert_eq!(v["schema"], "kindred.bisect/v1");
    assert_eq!(v["end"]["result"], "found");
    assert_eq!(v["end"]["first_bad"]["pr"], 132416);
    assert_eq!(v["steps"].as_array().unwrap().len(), 7);
    assert_eq!(v["steps"][3]["skip"], "unbuildable");
    assert_eq!(v["steps"][2]["cached"], true);
    assert_eq!(v["request"]["good"], "v1.33.0");
    assert_eq!(v["range"]["path"], "swap");
    assert_eq!(v["exit"], 0);

    let d = tempfile::tempdir().unwrap();
    let commit = |n: u8| kindred::backend::bisect::CommitInfo {
        sha: format!("{n:02x}").repeat(20),
        subject: format!("Merge pull request #{} from dev/x", 132400 + n as u32),
        pr: Some(132400 + n as u32),
    };
    for (end, code, result) in [
        (
            BisectEnd::NotFound {
                candidates: vec![commit(14), commit(16)],
                last_good: commit(13),
            },
            1,
            "not_found",
        ),
        (
            BisectEnd::Stopped {
                why: "the good end v1.33.0 is bad: netshoot-77523-worker → lb: expected ok, got timeout"
                    .into(),
            },
            2,
            "stopped",
        ),
    ] {
        let f = with_end(d.path(), Some(end));
        let o = bisect(&f, &["--format", "json"]);
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        schema_check(&v);
        assert_eq!(v["end"]["result"], result);
        assert_eq!(v["exit"], code);
    }
}

#[test]
fn not_found_and_stopped_say_so_in_text() {
    let d = tempfile::tempdir().unwrap();
    let c = |n: u8| kindred::backend::bisect::CommitInfo {
        sha: format!("{n:02x}").repeat(20),
        subject: format!("Merge pull request #{} from dev/x", 132400 + n as u32),
        pr: Some(132400 + n as u32),
    };
    let f = with_end(
        d.path(),
        Some(BisectEnd::NotFound {
            candidates: vec![c(14), c(16)],
            last_good: c(13),
        }),
    );
    let o = bisect(&f, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("NOT FOUND: skipped commits hide the first bad; it is one of 2:")
            && out.contains("  0e0e0e0e0e0e #132414")
            && out.contains("  101010101010 #132416"),
        "{out}"
    );
    let f = with_end(
        d.path(),
        Some(BisectEnd::Stopped {
            why: "the bad end HEAD is good".into(),
        }),
    );
    let o = bisect(&f, &["--format", "markdown"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("**Stopped:** the bad end HEAD is good"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_recording_without_a_bisect_end_is_trouble() {
    let d = tempfile::tempdir().unwrap();
    let f = with_end(d.path(), None);
    let o = bisect(&f, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("kindred: the bisect finished without a result"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

#[test]
fn markdown_report_is_fit_for_an_issue() {
    let o = bisect(found_path().to_str().unwrap(), &["--format", "markdown"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    no_escape(&o);
    let md = stdout(&o);
    assert!(
        md.starts_with("### kindred bisect: 🔎 first bad commit `101010101010` ([#132416](https://github.com/kubernetes/kubernetes/pull/132416))"),
        "{md}"
    );
    assert!(md.contains("| # | commit | PR | role | verdict | rounds | time | cached | why |"));
    // The subject's markup stays text: its pipe does not split the line into cells.
    assert!(
        md.contains("evil/\\\\x1b\\[31mred \\| \\`x\\` &lt;b&gt;"),
        "{md}"
    );
    assert!(
        md.contains("```diff\n--- 0f0f0f0f0f0f worker (last good)\n"),
        "{md}"
    );
    insta::assert_snapshot!("bisect_found_markdown", md);
}

#[test]
fn bad_flags_exit_2_with_usage() {
    let f = found_path();
    let f = f.to_str().unwrap();
    for (args, says) in [
        (
            vec!["bisect", "--replay", f, "--bad", "HEAD"],
            "--good <REF>",
        ),
        (
            vec!["bisect", "--good", "a", "--bad", "b", "--swap", "--rebuild"],
            "cannot be used with",
        ),
        (
            vec!["bisect", "--good=--upload-pack=x", "--bad", "b"],
            "starts with '-'",
        ),
        (
            vec!["bisect", "--good", "pr/x1", "--bad", "b"],
            "expected pr/NUMBER",
        ),
        (
            vec!["bisect", "--good", "a..b", "--bad", "c"],
            "one ref, not a range",
        ),
        (
            vec!["bisect", "--good", "a", "--bad", "b", "--repeat", "0"],
            "--repeat",
        ),
        (
            vec!["bisect", "--resume", "--good", "a"],
            "cannot be used with",
        ),
        (
            vec!["bisect", "--resume", "--repeat", "3"],
            "cannot be used with",
        ),
        (
            vec!["bisect", "--good", "a", "--bad", "b", "--format", "html"],
            "--format",
        ),
        (
            vec![
                "bisect",
                "--good",
                "a",
                "--bad",
                "b",
                "--probe",
                "two words",
            ],
            "a probe source is a pod name",
        ),
    ] {
        let o = kindred(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        // clap's usage (or its pointer to --help, for a value it refused).
        assert!(
            err.starts_with("error:") && err.contains("try '--help'"),
            "{args:?}: {err}"
        );
    }
    // Two scenarios: one is meant.
    let o = kindred(&[
        "-f", "a.yaml", "bisect", "b.yaml", "--replay", f, "--good", "a", "--bad", "b",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("two scenarios"), "{}", stderr(&o));
}

/// The dashboard on a recording holding a bisect: the Build pane shows its steps and the first
/// bad commit; `f` asks GOOD..BAD (the sides' refs filled in) and Enter bisects again (the
/// replay plays the recorded bisect: its steps start over, the one tested shown, then the end).
#[test]
#[ignore = "needs tmux (CI runs it)"]
fn the_dashboard_shows_a_bisect_and_f_starts_one() {
    let cmd = format!(
        "{} replay --speed 4 {}",
        env!("CARGO_BIN_EXE_kindred"),
        found_path().display()
    );
    let t = Tmux::start_sized("bisect", &cmd, 140, 40);
    let s = t.wait_until("the recorded bisect's end", 30, |s| {
        s.contains(
            "✗ first bad  101010101010  #132416  Merge pull request #132416 from evil/\\x1b[31mred",
        ) && s.contains("7 done")
    });
    assert!(s.contains("f bisect"), "{s}");
    t.keys(&["f"]);
    t.wait_until("the prompt", 5, |s| {
        s.contains("Bisect the PR side: GOOD..BAD") && s.contains("master..pr/77523")
    });
    t.keys(&["Enter"]);
    t.wait_until("the bisect again, under way", 10, |s| {
        s.contains("testing…") && !s.contains("first bad") && !s.contains("GOOD..BAD")
    });
    t.wait_until("its end again", 20, |s| {
        s.contains("first bad  101010101010") && s.contains("7 done")
    });
    t.keys(&["q"]);
    let mut s = t.wait_for("KINDRED-EXIT=", 10);
    if s.contains("Quit and cancel it?") {
        t.keys(&["y"]);
        s = t.wait_for("KINDRED-EXIT=", 10);
    }
    assert!(s.contains("KINDRED-EXIT=0"), "{s}");
}

/// `--resume` with no bisect to resume (a state directory without its log) is trouble, said.
#[test]
fn resume_without_a_log_says_so() {
    let o = kindred(&["bisect", "--resume"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("--resume: no bisect to resume (no log in"),
        "{}",
        stderr(&o)
    );
}

/// `--record FILE` writes the run's events: the recording holds the bisect, and shows the same
/// one again; it never replaces the recording it replays.
#[test]
fn a_recorded_bisect_replays_the_same() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("again.jsonl");
    let rec = rec.to_str().unwrap();
    let first = bisect(
        found_path().to_str().unwrap(),
        &["--format", "json", "--record", rec],
    );
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let text = std::fs::read_to_string(rec).unwrap();
    let parsed = recording::parse(&text, "again").unwrap();
    assert!(parsed.complete, "end marker written");
    let again = bisect(rec, &["--format", "json"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&first));
    let o = bisect(rec, &["--record", rec]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("the recording would replace it"),
        "{}",
        stderr(&o)
    );
}
