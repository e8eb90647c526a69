//! `kindred init`, scenario errors through the CLI, and the dashboard refusing a non-terminal.

mod common;
use common::synth;
use common::*;

#[test]
fn init_writes_the_builtin_scenario_and_never_overwrites() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("k.yaml");
    let o = kindred(&["init", "-f", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.starts_with("# kindred scenario"));
    assert!(text.contains("ref: pr/132456") && text.contains("ref: merge-base"));
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

#[test]
fn absurd_speeds_are_refused_with_a_readable_message() {
    for s in [
        "--speed=1e-300",
        "--speed=-1",
        "--speed=inf",
        "--speed=fast",
    ] {
        let o = kindred(&["demo", s]);
        assert_eq!(o.status.code(), Some(2), "{s}");
        let e = stderr(&o);
        assert!(e.contains("--speed"), "{s}: {e}");
        assert!(!e.contains("panicked"), "{s}: {e}");
    }
    let o = kindred(&["demo", "--speed", "-1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("-1 is out of range"), "{}", stderr(&o));
}

fn demo_path() -> String {
    format!("{}/assets/demo.jsonl", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_full_disk_is_trouble_and_a_closed_pipe_is_quiet() {
    time_limit();
    use std::process::{Command, Stdio};
    // Standard output on a full disk: check's table, and diff's JSON (streamed).
    let f = fixture("iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt");
    let f = f.to_str().unwrap();
    let demo = demo_path();
    for args in [
        &["check", "--replay", &demo][..],
        &["diff", f, f, "--format", "json"][..],
    ] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_kindred"))
            .env("XDG_STATE_HOME", common::test_state())
            .args(args)
            .stdout(full)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(
            stderr(&o).contains("writing to standard output"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // A reader that goes away at once: a big diff meets a closed pipe.
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let spec = |seed, change| synth::Spec {
        services: 3000,
        seed,
        change,
        ..Default::default()
    };
    std::fs::write(&a, synth::dump(&spec(1, false))).unwrap();
    std::fs::write(&b, synth::dump(&spec(2, true))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kindred"))
        .env("XDG_STATE_HOME", common::test_state())
        .args(["diff", a.to_str().unwrap(), b.to_str().unwrap(), "--raw"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "quiet: {}", stderr(&o));
}

#[test]
fn control_characters_from_a_dump_never_reach_the_terminal() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    let head = "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -m comment --comment \"default/echo: lb\" -j KUBE-XLB-AAAA\n";
    std::fs::write(&a, format!("{head}-A KUBE-XLB-AAAA -m comment --comment \"default/echo: evil\x1b[2J\x1b]0;pwned\x07\" -j KUBE-MARK-DROP\nCOMMIT\n")).unwrap();
    std::fs::write(&b, format!("{head}COMMIT\n")).unwrap();
    for color in ["never", "always"] {
        let o = kindred(&[
            "diff",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--color",
            color,
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("evil\\x1b[2J\\x1b]0;pwned\\x07"), "{out}");
        assert!(!out.contains('\x07'), "{out:?}");
        // Only kindred's own colour sequences ("ESC[" + digits + "m") remain.
        for (i, _) in out.match_indices('\x1b') {
            let rest = &out[i + 1..];
            let code: String = rest.chars().skip(1).take_while(|c| *c != 'm').collect();
            assert!(
                rest.starts_with('[') && code.chars().all(|c| c.is_ascii_digit() || c == ';'),
                "a foreign escape sequence: {rest:?}"
            );
        }
    }
    // Error messages quote the input: escaped too.
    let bad = d.path().join("bad");
    std::fs::write(&bad, "*nat\nbad\x1b[2Jline\n").unwrap();
    let o = kindred(&["diff", bad.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad:2:") && stderr(&o).contains("bad\\x1b[2Jline"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains('\x1b'), "{:?}", stderr(&o));
    // JSON stays exact.
    let o = kindred(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let removed = v["services"][0]["chains"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["lines"].as_array().unwrap())
        .find(|l| l["op"] == "removed")
        .unwrap();
    let rule = removed["rule"].as_str().unwrap();
    assert!(rule.contains("evil\x1b[2J"), "{rule:?}");
}

#[test]
fn doctor_names_what_would_stop_a_live_run() {
    time_limit();
    use std::process::Command;
    let d = tempfile::tempdir().unwrap();
    // A Docker endpoint that accepts connections and never answers.
    let sock = d.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let f = d.path().join("k.yaml");
    let text = kindred::scenario::DEFAULT.replace("~/go/src/k8s.io/kubernetes", "/nonexistent/k8s");
    std::fs::write(&f, text).unwrap();
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_kindred"))
        .env("XDG_STATE_HOME", common::test_state())
        .args([
            "-f",
            f.to_str().unwrap(),
            "doctor",
            "--quick",
            "--format",
            "json",
        ])
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("PATH", "/usr/bin:/bin")
        .env("KINDRED_LOG", d.path().join("log"))
        .output()
        .unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "bounded"
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let check = |name: &str| {
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {v}"))
            .clone()
    };
    let docker = check("docker");
    assert_eq!(docker["status"], "fail");
    let m = docker["message"].as_str().unwrap();
    assert!(
        m.contains("silent.sock") && m.contains("(DOCKER_HOST)") && m.contains("did not answer"),
        "{m}"
    );
    assert!(docker["fix"].as_str().unwrap().contains("DOCKER_HOST"));
    assert_eq!(check("kind")["status"], "fail");
    let source = check("source");
    assert_eq!(source["status"], "fail");
    assert!(
        source["message"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/k8s")
    );
    // This box's inotify limits, against kind's recommended values.
    let proc = |n: &str| -> u64 {
        std::fs::read_to_string(format!("/proc/sys/fs/inotify/{n}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (w, i) = (proc("max_user_watches"), proc("max_user_instances"));
    let inotify = check("inotify");
    let m = inotify["message"].as_str().unwrap();
    assert!(
        m.contains(&format!("max_user_watches {w}, max_user_instances {i}")),
        "{m}"
    );
    let low = w < 524_288 || i < 512;
    assert_eq!(
        inotify["status"],
        if low { "warn" } else { "ok" },
        "{inotify}"
    );
    for c in v["checks"].as_array().unwrap() {
        assert!(
            ["ok", "warn", "fail"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
    }
    // The text table says the same, one line a check, the fix under it.
    let o = Command::new(env!("CARGO_BIN_EXE_kindred"))
        .env("XDG_STATE_HOME", common::test_state())
        .args(["-f", f.to_str().unwrap(), "doctor", "--quick"])
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("PATH", "/usr/bin:/bin")
        .env("KINDRED_LOG", d.path().join("log"))
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(out.lines().any(|l| l.starts_with("FAIL  docker")), "{out}");
    assert!(out.contains("fix: install kind"), "{out}");
    // check stops before doing anything: exit 2.
    let o = Command::new(env!("CARGO_BIN_EXE_kindred"))
        .env("XDG_STATE_HOME", common::test_state())
        .args(["-f", f.to_str().unwrap(), "check"])
        .env("DOCKER_HOST", format!("unix://{}", sock.display()))
        .env("PATH", "/usr/bin:/bin")
        .env("KINDRED_LOG", d.path().join("log"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("preflight check"), "{}", stderr(&o));
}

#[test]
fn dumps_with_nothing_of_kube_proxy_or_malformed_are_trouble() {
    let d = tempfile::tempdir().unwrap();
    let real = fixture("iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt");
    let real = real.to_str().unwrap();
    let write = |name: &str, text: &str| {
        let p = d.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let empty = write("empty.txt", "");
    let other = write(
        "other.txt",
        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n",
    );
    for f in [empty.as_str(), "/dev/null", other.as_str()] {
        let o = kindred(&["diff", f, real]);
        assert_eq!(o.status.code(), Some(2), "{f}");
        assert!(
            stderr(&o).contains(&format!(
                "{f}: no kube-proxy rules found (is kube-proxy running on that node?)"
            )),
            "{}",
            stderr(&o)
        );
    }
    let cases = [
        (
            "nul.txt",
            "*nat\n-A KUBE-SVC-X -j DROP\u{0}\nCOMMIT\n",
            ":2: a NUL byte",
        ),
        (
            "quote.nft",
            "table ip kube-proxy {\n\tchain services {\n\t\tjump \"x\n\t}\n}\n",
            ":3: unterminated quoted string",
        ),
        (
            "brace.nft",
            "add table ip kube-proxy\nadd rule ip kube-proxy services vmap { 0 : goto x\n",
            ":2: unbalanced '{' and '}'",
        ),
        (
            "cut.nft",
            "table ip kube-proxy {\n\tchain services {\n",
            ":2: unterminated block",
        ),
    ];
    for (name, text, want) in cases {
        let f = write(name, text);
        let o = kindred(&["diff", &f, &f]);
        assert_eq!(o.status.code(), Some(2), "{name}");
        assert!(
            stderr(&o).contains(&format!("{f}{want}")),
            "{name}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn a_scenario_nested_100k_deep_is_refused_at_once() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("deep.yaml");
    let mut text = String::from("service: default/echo\nexpect: ");
    text.push_str(&"[".repeat(100_000));
    text.push_str(&"]".repeat(100_000));
    std::fs::write(&f, text).unwrap();
    let started = std::time::Instant::now();
    let o = kindred(&["-f", f.to_str().unwrap(), "doctor", "--quick"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("deep.yaml:2:"), "{}", stderr(&o));
}

#[test]
fn a_silent_docker_endpoint_is_named_within_seconds() {
    time_limit();
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    for args in [&["clusters"][..], &["diff", "node:a", "node:b"][..]] {
        let started = std::time::Instant::now();
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
            .env("XDG_STATE_HOME", common::test_state())
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", sock.display()))
            .env("KINDRED_LOG", d.path().join("log"))
            .output()
            .unwrap();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "{args:?}"
        );
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains("silent.sock") && e.contains("did not answer"),
            "{args:?}: {e}"
        );
    }
}

/// kindred with a clean environment of this test's own: no HOME, no XDG_STATE_HOME, TMPDIR set
/// (the state dir falls back to `TMPDIR/kindred`, as on a box with neither variable).
fn kindred_in_tmp(tmp: &std::path::Path, args: &[&str]) -> std::process::Output {
    time_limit();
    std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TMPDIR", tmp)
        .env("NO_COLOR", "1")
        .output()
        .expect("run kindred")
}

/// The state dir in a shared temp dir: kindred makes it private, refuses one others may write
/// or that is not its user's, and never appends its log through a planted symbolic link.
#[test]
fn a_planted_log_link_or_shared_state_dir_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("kindred");
    // Missing: made, mode 0700, and the log (this command's error) lands in it.
    let o = kindred_in_tmp(tmp.path(), &["replay", "/nonexistent/r.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("not logging"), "{}", stderr(&o));
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    let log = std::fs::read_to_string(state.join("kindred.log")).unwrap();
    assert!(log.contains("r.jsonl"), "{log}");
    std::fs::remove_file(state.join("kindred.log")).unwrap();

    // A planted link: its target is never written, and kindred says why it does not log.
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::os::unix::fs::symlink(&victim, state.join("kindred.log")).unwrap();
    let o = kindred_in_tmp(tmp.path(), &["replay", "/nonexistent/r.jsonl"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("not logging") && err.contains("kindred.log") && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_file(state.join("kindred.log")).unwrap();

    // Writable by anyone (made so by someone else first): refused with the path and the fix,
    // and nothing is written in it.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let o = kindred_in_tmp(tmp.path(), &["replay", "/nonexistent/r.jsonl"]);
    let err = stderr(&o);
    assert!(
        err.contains(&state.display().to_string()) && err.contains("chmod 700"),
        "{err}"
    );
    assert!(!state.join("kindred.log").exists());
    // Another user's: refused (root gives it away).
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    if unsafe { libc::geteuid() } == 0 {
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        let o = kindred_in_tmp(tmp.path(), &["replay", "/nonexistent/r.jsonl"]);
        let err = stderr(&o);
        assert!(err.contains("belongs to user 65534"), "{err}");
        assert!(!state.join("kindred.log").exists());
    }
}

/// A state dir that cannot be made: the doctor's `state` check names it, and a live run
/// stops before any work.
#[test]
fn a_state_dir_that_cannot_be_made_is_named() {
    time_limit();
    let d = tempfile::tempdir().unwrap();
    let plain = d.path().join("plain");
    std::fs::write(&plain, "").unwrap();
    let f = d.path().join("k.yaml");
    let text = kindred::scenario::DEFAULT.replace("~/go/src/k8s.io/kubernetes", "/nonexistent/k8s");
    std::fs::write(&f, text).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
        .args([
            "-f",
            f.to_str().unwrap(),
            "doctor",
            "--quick",
            "--format",
            "json",
        ])
        .env("XDG_STATE_HOME", &plain)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("KINDRED_LOG", d.path().join("log"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let state = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "state")
        .unwrap_or_else(|| panic!("no state check: {v}"));
    assert_eq!(state["status"], "fail");
    let m = state["message"].as_str().unwrap();
    assert!(
        m.contains(&plain.join("kindred").display().to_string()) && m.contains("XDG_STATE_HOME"),
        "{m}"
    );
}

/// `replay X --record X`, by any name for X: refused before anything is written, X unchanged.
#[test]
fn a_replay_never_records_over_its_own_input() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("mine.jsonl");
    std::fs::write(&rec, kindred::cli::DEMO_RECORDING).unwrap();
    let hard = d.path().join("hard.jsonl");
    std::fs::hard_link(&rec, &hard).unwrap();
    let soft = d.path().join("soft.jsonl");
    std::os::unix::fs::symlink(&rec, &soft).unwrap();
    std::fs::create_dir(d.path().join("sub")).unwrap();
    let dotted = d.path().join("sub/../mine.jsonl");
    for out in [&rec, &hard, &soft, &dotted] {
        let o = kindred(&[
            "replay",
            rec.to_str().unwrap(),
            "--record",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("the recording being replayed") && err.contains("another file"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(&rec).unwrap(),
            kindred::cli::DEMO_RECORDING
        );
    }
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert_eq!(left.len(), 4, "no partial recording left: {left:?}");
    // Another file is fine (here: refused only for want of a terminal).
    let o = kindred(&[
        "replay",
        rec.to_str().unwrap(),
        "--record",
        d.path().join("new.jsonl").to_str().unwrap(),
    ]);
    assert!(stderr(&o).contains("needs a terminal"), "{}", stderr(&o));
}

/// A `kind` (and a `git`) that print a version line with an escape and a forged line after
/// it, then without end: the doctor reads a few KiB, shows the first line escaped, and is done
/// within seconds (it used to abort on a failed allocation).
#[test]
fn a_flooding_tool_in_the_doctor_is_cut_and_escaped() {
    time_limit();
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    // 10 MB after the line (it was shown whole), and output without end (it ran out of memory
    // or of time).
    for (tool, version, rest) in [
        (
            "kind",
            "kind v0.27.0 go1.23.4 linux/amd64",
            "head -c 10000000 /dev/zero | tr '\\0' x",
        ),
        ("git", "git version 2.45.0", "exec yes 'ok  flood'"),
    ] {
        let p = bin.join(tool);
        std::fs::write(
            &p,
            format!("#!/bin/sh\nprintf '{version}\\033[2J\\r\\nFORGED  {tool} line\\n'\n{rest}\n"),
        )
        .unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let f = d.path().join("k.yaml");
    let text = kindred::scenario::DEFAULT.replace("~/go/src/k8s.io/kubernetes", "/nonexistent/k8s");
    std::fs::write(&f, text).unwrap();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let started = std::time::Instant::now();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
        .args(["-f", f.to_str().unwrap(), "doctor", "--quick"])
        .env("XDG_STATE_HOME", common::test_state())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("PATH", &path)
        .env("KINDRED_LOG", d.path().join("log"))
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.len() < 8192, "{} bytes", out.len());
    assert!(
        out.lines()
            .any(|l| l == "ok    kind       kind v0.27.0 go1.23.4 linux/amd64\\x1b[2J"),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l == "ok    git        git version 2.45.0\\x1b[2J"),
        "{out}"
    );
    assert!(!out.contains("FORGED") && !out.contains('\x1b'), "{out}");
}

/// A recording over an existing file: killed, the file keeps its old content (the partial
/// recording beside it); ended cleanly (a key, or a signal), it is replaced by the whole new
/// recording.
#[test]
#[ignore = "needs tmux (CI runs it)"]
fn an_interrupted_recording_leaves_the_old_file() {
    let d = tempfile::tempdir().unwrap();
    let rec = d.path().join("mine.jsonl");
    let old = "# the old recording\n{\"format\":\"kindred-recording\",\"version\":1}\n";
    let cmd = format!(
        "{} demo --speed 4 --record {}",
        env!("CARGO_BIN_EXE_kindred"),
        rec.display()
    );
    let partials = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".partial"))
            .collect()
    };
    for (how, clean) in [("KILL", false), ("TERM", true), ("q", true)] {
        std::fs::write(&rec, old).unwrap();
        let t = Tmux::start_sized(&format!("rec{}", how.to_lowercase()), &cmd, 120, 40);
        t.wait_for("=== default/echo: (changed, +2 -0)", 30);
        if how == "q" {
            t.keys(&["q"]);
            let s = t.wait_until("the quit", 10, |s| {
                s.contains("KINDRED-EXIT=") || s.contains("Quit and cancel it?")
            });
            if s.contains("Quit and cancel it?") {
                t.keys(&["y"]);
            }
        } else {
            let pid = t.kindred_pid();
            let st = std::process::Command::new("kill")
                .args([&format!("-{how}"), &pid])
                .status()
                .unwrap();
            assert!(st.success());
        }
        let s = t.wait_for("KINDRED-EXIT=", 10);
        let now = std::fs::read_to_string(&rec).unwrap();
        if clean {
            assert!(partials().is_empty(), "{s}");
            let r = kindred::backend::recording::load(&rec).unwrap();
            assert!(r.complete && !r.records.is_empty(), "{how}: {now}");
        } else {
            assert!(
                now == old,
                "killed: the old recording stays ({} bytes now)",
                now.len()
            );
            let p = partials();
            assert_eq!(p.len(), 1, "{p:?}");
            let r = kindred::backend::recording::load(&p[0]).unwrap();
            assert!(!r.complete && !r.records.is_empty());
            std::fs::remove_file(&p[0]).unwrap();
        }
    }
}

/// The doctor names the real engine's image store: the classic store on this overlay2 engine
/// (containerd's store would be a warning about `kind load docker-image`).
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn doctor_reports_the_engines_image_store() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("k.yaml");
    let text = kindred::scenario::DEFAULT.replace("~/go/src/k8s.io/kubernetes", "/nonexistent/k8s");
    std::fs::write(&f, text).unwrap();
    let o = kindred(&[
        "-f",
        f.to_str().unwrap(),
        "doctor",
        "--quick",
        "--format",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let store = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "image-store")
        .unwrap_or_else(|| panic!("no image-store check: {v}"))
        .clone();
    let driver = docker(&["info", "--format", "{{.Driver}}"]);
    let status = docker(&["info", "--format", "{{json .DriverStatus}}"]);
    let m = store["message"].as_str().unwrap();
    if status.contains("io.containerd.snapshotter.v1") {
        assert_eq!(store["status"], "ok", "{store}");
        assert!(m.contains("kind load docker-image` fails"), "{m}");
    } else {
        assert_eq!(store["status"], "ok", "{store}");
        assert!(
            m.starts_with(&format!("classic image store ({driver})")),
            "{m}"
        );
    }
}

/// A dump or a recording larger than kindred reads is refused by name before it is read (exit
/// 2), never an allocation that could abort with the terminal raw.
#[test]
fn inputs_larger_than_kindred_reads_are_refused_by_name() {
    let d = tempfile::tempdir().unwrap();
    let big = d.path().join("big.txt");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(kindred::backend::input::MAX_INPUT + 1)
        .unwrap();
    let small = fixture("iptables/mauilion-blog-2019-master-cluster-KUBE-XLB.txt");
    let big_s = big.to_str().unwrap();
    for args in [
        vec!["diff", big_s, small.to_str().unwrap()],
        vec!["replay", big_s],
    ] {
        let o = kindred(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("big.txt: 1024 MiB, larger than kindred reads (1024 MiB)"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}
