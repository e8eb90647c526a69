//! The real binary in a real terminal: tmux runs `kindred demo`, keys go in with send-keys,
//! the screen comes back with capture-pane. Needs tmux; ignored by plain `cargo test`, run by CI.

use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
}

impl Tmux {
    fn start(tag: &str, cmd: &str) -> Tmux {
        let session = format!("kindred-{tag}-{}", std::process::id());
        let log = std::env::temp_dir().join(format!("{session}.log"));
        let script = format!(
            "KINDRED_LOG={} {cmd}; echo KINDRED-EXIT=$?; sleep 120",
            log.display()
        );
        let st = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "120",
                "-y",
                "40",
                &script,
            ])
            .env_remove("TMUX")
            .status()
            .expect("tmux must be installed");
        assert!(st.success());
        Tmux { session }
    }

    fn screen(&self) -> String {
        let o = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.session])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }

    fn wait_for(&self, what: &str, secs: u64) -> String {
        self.wait_until(what, secs, |s| s.contains(what))
    }

    fn wait_until(&self, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of kindred inside the pane (a child of the pane's shell).
    fn kindred_pid(&self) -> String {
        let o = Command::new("tmux")
            .args(["list-panes", "-t", &self.session, "-F", "#{pane_pid}"])
            .output()
            .unwrap();
        let shell = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let o = Command::new("pgrep")
            .args(["-P", &shell, "kindred"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
    }
}

fn demo_cmd(extra: &str) -> String {
    format!("{} demo --speed 4 {extra}", env!("CARGO_BIN_EXE_kindred"))
}

#[test]
#[ignore = "needs tmux (CI runs it)"]
fn demo_help_retest_quit() {
    let rec = std::env::temp_dir().join(format!("kindred-e2e-{}.jsonl", std::process::id()));
    let t = Tmux::start("e2e", &demo_cmd(&format!("--record {}", rec.display())));
    let s = t.wait_for("route LOCAL traffic for default/echo: LB IP", 30);
    assert!(s.contains("DEMO"), "{s}");
    assert!(
        s.contains("master (base)") && s.contains("77523 (PR)"),
        "{s}"
    );
    assert!(s.contains("=== default/echo: (changed, +2 -0)"), "{s}");

    t.keys(&["?"]);
    let s = t.wait_for("Help: keys", 5);
    assert!(s.contains("rebuild node images") && s.contains("quit (asks when work is running)"));
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!t.screen().contains("Help: keys"));

    // Probes finish at recorded speed; then a retest adds a second result to each history.
    let done = |s: &str| s.contains("OK ≠") && !s.contains("probing");
    t.wait_until("the first probes", 30, done);
    t.keys(&["t"]);
    let s = t.wait_for("●●", 20);
    assert!(s.contains("FAIL ✓"), "expectation met on master: {s}");
    t.wait_until("the retest to finish", 20, |s| {
        s.contains("○○") && !s.contains("probing")
    });
    t.keys(&["q"]);
    let mut s = t.wait_for("KINDRED-EXIT=", 10);
    if s.contains("Quit and cancel it?") {
        t.keys(&["y"]);
        s = t.wait_for("KINDRED-EXIT=", 10);
    }
    assert!(s.contains("KINDRED-EXIT=0"), "{s}");
    // Back on the normal screen: the dashboard is gone.
    assert!(!s.contains("Diff normalized"), "terminal not restored: {s}");

    // The session was recorded; the recording replays to the same verdict.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
        .args(["check", "--replay", rec.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("PASS: 4 of 4 expectations hold"), "{out}");
    let _ = std::fs::remove_file(&rec);
}

#[test]
#[ignore = "needs tmux (CI runs it)"]
fn sigterm_restores_the_terminal() {
    let t = Tmux::start("term", &demo_cmd("--no-mouse"));
    t.wait_for("Build", 20);
    let pid = t.kindred_pid();
    assert!(!pid.is_empty(), "kindred pid");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let s = t.wait_for("KINDRED-EXIT=", 10);
    assert!(s.contains("KINDRED-EXIT=0"), "{s}");
    assert!(!s.contains("Probes target"), "terminal not restored: {s}");
}

#[test]
#[ignore = "needs tmux (CI runs it)"]
fn small_terminal_gets_a_message() {
    let session = format!("kindred-small-{}", std::process::id());
    let st = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "60",
            "-y",
            "20",
            &format!("{}; sleep 60", demo_cmd("")),
        ])
        .env_remove("TMUX")
        .status()
        .unwrap();
    assert!(st.success());
    let t = Tmux { session };
    let s = t.wait_for("Terminal too small", 10);
    assert!(s.contains("60x20"), "{s}");
    t.keys(&["q"]);
}
