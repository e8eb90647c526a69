//! The real binary in a real terminal: tmux runs `kindred demo`, keys go in with send-keys,
//! the screen comes back with capture-pane. Needs tmux; ignored by plain `cargo test`, run by CI.

mod common;
use common::{POD_NAMES, Tmux, is_name};

use std::process::Command;

fn demo_cmd(extra: &str) -> String {
    format!("{} demo --speed 4 {extra}", env!("CARGO_BIN_EXE_kindred"))
}

#[test]
#[ignore = "needs tmux (CI runs it)"]
fn demo_help_retest_quit() {
    let rec = std::env::temp_dir().join(format!("kindred-e2e-{}.jsonl", std::process::id()));
    // Wide enough, with the Probes pane zoomed, for its HISTORY next to PREDICT, TRIES and
    // TOTAL (the demo's probes are repeated; below this, history goes first).
    let t = Tmux::start_sized(
        "e2e",
        &demo_cmd(&format!("--record {}", rec.display())),
        180,
        40,
    );
    // Both workers' rules are compared (worker2's dumps come last): the worker's pair shows
    // first.
    let s = t.wait_until("the diff of both workers", 30, |s| {
        s.contains("=== default/echo: (changed, +2 -0)")
            && s.contains("master-worker ↔ 77523-worker  (1/2)")
    });
    assert!(s.contains("DEMO"), "{s}");
    assert!(
        s.contains("master (base)") && s.contains("77523 (PR)"),
        "{s}"
    );

    t.keys(&["?"]);
    // The overlay is drawn in one frame, but tmux may be read between two: wait for it whole.
    t.wait_until("the whole help", 5, |s| {
        s.contains("Help: keys")
            && s.contains("rebuild PR image")
            && s.contains("swap in kube-proxy built from the PR source")
            && s.contains("quit (asks when work is running)")
    });
    t.keys(&["Escape"]);
    t.wait_until("the help closed", 5, |s| !s.contains("Help: keys"));

    // Probes finish at recorded speed; then a retest adds a second result to each history.
    let done = |s: &str| s.contains("OK ≠") && !s.contains("probing");
    t.wait_until("the first probes", 30, done);
    // Probes zoomed (focus Diff -> Build -> Pods -> Probes).
    t.keys(&["Tab", "Tab", "Tab", "z"]);
    t.wait_until("the Probes pane zoomed", 5, |s| s.contains("HISTORY"));
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

    // The session was recorded, and closed cleanly (its end marker last); it replays to the
    // same verdict.
    let text = std::fs::read_to_string(&rec).unwrap();
    let parsed = kindred::backend::recording::parse(&text, "rec").unwrap();
    assert!(
        parsed.complete,
        "end marker written: {:?}",
        text.lines().last()
    );
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kindred"))
        .env("XDG_STATE_HOME", common::test_state())
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
fn signals_restore_the_terminal_and_exit_128_plus_the_signal() {
    for (sig, code) in [("TERM", 143), ("HUP", 129), ("QUIT", 131), ("USR1", 138)] {
        let t = Tmux::start_sized(
            &format!("sig{}", sig.to_lowercase()),
            &demo_cmd("--no-mouse"),
            120,
            40,
        );
        t.wait_for("Build", 20);
        let pid = t.kindred_pid();
        assert!(!pid.is_empty(), "kindred pid");
        let killed = Command::new("kill")
            .args([&format!("-{sig}"), &pid])
            .status()
            .unwrap();
        assert!(killed.success());
        let s = t.wait_for("KINDRED-EXIT=", 10);
        assert!(
            s.contains(&format!("KINDRED-EXIT={code}")),
            "128 + SIG{sig}: {s}"
        );
        assert!(
            !s.contains("Probes target"),
            "terminal not restored after SIG{sig}: {s}"
        );
    }
}

#[test]
#[ignore = "needs tmux (CI runs it)"]
fn small_terminal_gets_a_message() {
    let t = Tmux::start_sized("small", &demo_cmd(""), 60, 20);
    let s = t.wait_for("Terminal too small", 10);
    assert!(s.contains("60x20"), "{s}");
    t.keys(&["q"]);
}

#[test]
#[ignore = "needs tmux (CI runs it)"]
fn the_last_key_of_a_burst_takes_effect_at_once() {
    let t = Tmux::start_sized("burst", &demo_cmd("--no-mouse"), 120, 40);
    t.wait_for("=== default/echo: (changed, +2 -0)", 30);
    // 2000 scroll keys then `n`: the raw view shows at once, with no key after it.
    t.keys(&[&"j".repeat(2000), "n"]);
    // (8 s: a loaded CI box; a loop that drew after every key would take far longer.)
    t.wait_for("Diff raw", 8);
    // A filter typed 3000 characters long, Enter, then `n` again: every key was a key.
    t.keys(&["/", &"x".repeat(3000), "Enter", "n"]);
    let s = t.wait_for("Diff normalized", 8);
    assert!(s.contains("/xxxx"), "the filter is set: {s}");
    t.keys(&["q"]);
    let s = t.wait_until("quit", 10, |s| {
        s.contains("KINDRED-EXIT=") || s.contains("Quit and cancel it?")
    });
    if s.contains("Quit and cancel it?") {
        t.keys(&["y"]);
    }
    t.wait_for("KINDRED-EXIT=0", 10);
}

#[test]
#[ignore = "needs tmux (CI runs it)"]
fn a_panic_in_any_task_ends_the_program_with_the_terminal_restored() {
    // The example program beside the test binaries (cargo builds examples for `cargo test`).
    let deps = std::env::current_exe().unwrap();
    let bin = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/panic_in_task");
    assert!(bin.exists(), "{} (cargo test builds it)", bin.display());
    let t = Tmux::start_sized("panic", &bin.display().to_string(), 100, 30);
    let s = t.wait_for("KINDRED-EXIT=", 15);
    assert!(s.contains("KINDRED-EXIT=101"), "{s}");
    assert!(
        s.contains("kindred: internal error: index out of bounds"),
        "one line naming the error: {s}"
    );
    assert!(
        s.contains("kindred-panic-test.log"),
        "and the log file: {s}"
    );
    assert!(
        !s.contains("Probes target"),
        "terminal restored (alternate screen left): {s}"
    );
}

/// The real binary, with the panic hook `main` installs: a task of the dashboard panics
/// (`KINDRED_TEST_PANIC=1`, read only from the environment of whoever starts kindred) and the
/// whole program ends with 101, the alternate screen left and the tty back in cooked mode.
#[test]
#[ignore = "needs tmux (CI runs it)"]
fn the_binarys_own_panic_hook_restores_the_terminal_and_exits_101() {
    // After kindred, the tty's modes as the shell sees them: raw mode clears icanon and echo.
    let cmd = format!(
        "KINDRED_TEST_PANIC=1 {}; s=$?; echo TTY-MODES: $(stty -a | tr ' ;' '\\n\\n' | grep -xE -- '-?(icanon|echo)'); (exit $s)",
        demo_cmd("--no-mouse")
    );
    let t = Tmux::start_sized("binpanic", &cmd, 120, 40);
    t.wait_until("the dashboard", 15, |s| {
        s.contains("DEMO") && t.alternate_on()
    });
    let s = t.wait_for("KINDRED-EXIT=", 15);
    assert!(s.contains("KINDRED-EXIT=101"), "{s}");
    assert!(
        s.contains("kindred: internal error: KINDRED_TEST_PANIC=1 asked for this panic"),
        "one line naming the error: {s}"
    );
    assert!(s.contains("(log: "), "and the log file: {s}");
    assert!(s.contains("TTY-MODES: icanon echo"), "raw mode left: {s}");
    assert!(!t.alternate_on(), "alternate screen left: {s}");
    assert!(!s.contains("DEMO"), "the dashboard is gone: {s}");
}

/// The demo recording with the worker nodes' whole rule dumps (the 2019 walkthrough's, as
/// kube-proxy 1.14 wrote them around the blog's lines), so that each probe from a worker has a
/// path through kube-proxy's rules: written to a file for `kindred replay`.
fn demo_with_whole_dumps() -> std::path::PathBuf {
    let whole = |f: &str| {
        let path = common::fixture(&format!("trace/kernel/iptables-2019-{f}.txt"));
        std::fs::read_to_string(path).unwrap()
    };
    let (master, pr) = (whole("master"), whole("pr77523"));
    let mut out = String::new();
    for line in kindred::cli::DEMO_RECORDING.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ev = &mut v["event"];
        if ev["type"] == "rule_dump" {
            match ev["node"].as_str() {
                Some("master-worker") => ev["text"] = master.clone().into(),
                Some("77523-worker") => ev["text"] = pr.clone().into(),
                _ => {}
            }
        }
        out.push_str(&serde_json::to_string(&v).unwrap());
        out.push('\n');
    }
    let file = std::env::temp_dir().join(format!("kindred-paths-{}.jsonl", std::process::id()));
    std::fs::write(&file, out).unwrap();
    file
}

/// Enter on a probe row shows its two paths in the Diff pane's place (each side's verdict on
/// top, the step where they part marked), `z` shows every rule whole, Esc brings the Diff pane
/// back with the focus on the Probes pane (Enter there opens the paths again).
#[test]
#[ignore = "needs tmux (CI runs it)"]
fn enter_on_a_probe_row_shows_its_two_paths_and_esc_returns() {
    let rec = demo_with_whole_dumps();
    let cmd = format!(
        "{} replay --speed 4 --no-mouse {}",
        env!("CARGO_BIN_EXE_kindred"),
        rec.display()
    );
    let t = Tmux::start_sized("paths", &cmd, 200, 60);
    t.wait_until("the probes and their predictions", 30, |s| {
        s.contains("probes done")
            && !s.contains("probing")
            && s.contains("PREDICT")
            && s.contains(" dnat ")
    });
    // Shift-Tab: from the Diff pane to the Probes pane; ↓ to netshoot-worker (the host probe).
    t.keys(&["BTab", "Down", "Enter"]);
    let s = t.wait_until("the two paths", 10, |s| {
        s.contains("Diff paths of one probe · Esc back")
            && s.contains("probe netshoot-worker → lb · the paths part at step 4 (▶)")
            && s.contains("▶ output nat/KUBE-XLB-U52O5CQH2XXNVZ54")
    });
    assert!(s.contains("master (base): drop filter/OUTPUT"), "{s}");
    assert!(s.contains("77523 (PR): dnat to 10.244.1.2:8080"), "{s}");
    assert!(
        !s.contains("Diff normalized"),
        "in the Diff pane's place: {s}"
    );
    t.keys(&["z"]);
    t.wait_until("every rule whole", 10, |s| {
        s.contains("↳ stination 10.244.1.2:8080 (line 52)") && !s.contains("┌ Probes")
    });
    t.keys(&["Escape"]);
    let s = t.wait_until("the Diff pane again", 10, |s| {
        s.contains("Diff normalized") && !s.contains("paths of one probe")
    });
    assert!(s.contains("=== default/echo: (changed"), "{s}");
    // The focus is back on the Probes pane, the same row selected: Enter opens it again.
    t.keys(&["Enter"]);
    t.wait_for("probe netshoot-worker → lb", 10);
    t.keys(&["Escape"]);
    t.wait_until("closed again", 10, |s| !s.contains("paths of one probe"));
    t.keys(&["q"]);
    let s = t.wait_until("quit", 10, |s| {
        s.contains("KINDRED-EXIT=") || s.contains("Quit and cancel it?")
    });
    if s.contains("Quit and cancel it?") {
        t.keys(&["y"]);
    }
    t.wait_for("KINDRED-EXIT=0", 10);
    let _ = std::fs::remove_file(&rec);
}

/// The demo at the usual terminal sizes, read off the screen tmux shows: every test pod's name
/// whole (or shortened in its middle, both ends kept) on both sides of Pods and of Probes, the
/// changed rules in the Diff pane. (`ui_snapshots` keeps the same screens as snapshots, drawn
/// headless where no clock moves.)
#[test]
#[ignore = "needs tmux (CI runs it)"]
fn the_demo_at_six_sizes_keeps_every_pod_name() {
    for (w, h) in [
        (100, 30),
        (120, 40),
        (160, 48),
        (180, 50),
        (200, 60),
        (240, 60),
    ] {
        let t = Tmux::start_sized(&format!("size{w}x{h}"), &demo_cmd(""), w, h);
        let s = t.wait_until("the probes and the diff", 30, |s| {
            s.contains("=== default/echo: (changed, +2 -0)")
                && s.contains("probes done")
                && !s.contains("probing")
        });
        let tokens: Vec<&str> = s
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|t| !t.is_empty())
            .collect();
        for n in POD_NAMES {
            let seen = tokens.iter().filter(|t| is_name(t, n)).count();
            assert!(seen >= 4, "{w}x{h}: {n} shown {seen} times\n{s}");
        }
        t.keys(&["q"]);
    }
}

/// The time limit every test that can hang gets from tests/common (`time_limit`, armed by the
/// helpers that start something or at the top of the test): a test that runs past it ends the
/// whole run, with its name on stderr, instead of stalling CI. Here a child test run (one
/// thread, as `--test-threads=1` would; its output captured, as CI runs it) sleeps past the
/// limit `KINDRED_TEST_LIMIT` sets to one second, and is aborted.
#[test]
fn a_test_past_its_time_limit_aborts_the_run_naming_itself() {
    use std::os::unix::process::ExitStatusExt;
    common::time_limit();
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "time_limit_child_sleeps_past_its_limit",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env("KINDRED_TIME_LIMIT_CHILD", "1")
        .env("KINDRED_TEST_LIMIT", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.signal(), Some(libc::SIGABRT), "aborted: {err}");
    assert!(
        err.contains("test time_limit_child_sleeps_past_its_limit ran past its time limit of 1 s"),
        "{err}"
    );
}

/// Only the child of the test above: without its variable (a plain or `--include-ignored` run)
/// it returns at once.
#[test]
fn time_limit_child_sleeps_past_its_limit() {
    if std::env::var_os("KINDRED_TIME_LIMIT_CHILD").is_none() {
        return;
    }
    common::time_limit();
    std::thread::sleep(std::time::Duration::from_secs(20));
}
