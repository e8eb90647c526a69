//! insta snapshots of every pane and the whole screen at two terminal sizes, on the state the
//! demo recording leads to.

use std::time::Duration;

mod common;
use common::headless::apply_sync;
use common::{POD_NAMES, is_name};
use kindred::app::State;
use kindred::app::update::Msg;
use kindred::backend::recording;
use kindred::model::Pane;
use kindred::ui::{self, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

const SIZES: [(u16, u16); 2] = [(100, 30), (200, 60)];

fn demo_state(until_ms: u64) -> State {
    let rec = recording::parse(kindred::cli::DEMO_RECORDING, "demo").unwrap();
    let mut st = State::new();
    for r in rec.records.into_iter().filter(|r| r.t <= until_ms) {
        apply_sync(&mut st, Msg::Tick(Duration::from_millis(r.t)));
        apply_sync(&mut st, Msg::Backend(r.event));
    }
    st
}

fn screen(st: &mut State, w: u16, h: u16) -> Terminal<TestBackend> {
    st.size = (w, h);
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::render(f, st, &Theme::new(true))).unwrap();
    t
}

#[test]
fn whole_screen_at_six_sizes() {
    let mut st = demo_state(u64::MAX);
    for (w, h) in [
        (100, 30),
        (120, 40),
        (160, 48),
        (180, 50),
        (200, 60),
        (240, 60),
    ] {
        let t = screen(&mut st, w, h);
        insta::assert_snapshot!(format!("screen_{w}x{h}"), t.backend());
    }
}

#[test]
fn whole_screen_while_building() {
    let mut st = demo_state(3000);
    let t = screen(&mut st, 100, 30);
    insta::assert_snapshot!("screen_building_100x30", t.backend());
}

#[test]
fn each_pane_at_two_sizes() {
    let st = demo_state(u64::MAX);
    for pane in Pane::ALL {
        for (w, h) in SIZES {
            let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
            t.draw(|f| ui::render_pane(f, pane, f.area(), &st, &Theme::new(true)))
                .unwrap();
            insta::assert_snapshot!(
                format!("pane_{}_{w}x{h}", pane.title().to_lowercase()),
                t.backend()
            );
        }
    }
}

#[test]
fn diff_side_by_side_and_raw() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let key = |c| Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    let mut st = demo_state(u64::MAX);
    apply_sync(&mut st, key('s'));
    let mut t = Terminal::new(TestBackend::new(200, 30)).unwrap();
    t.draw(|f| ui::render_pane(f, Pane::Diff, f.area(), &st, &Theme::new(true)))
        .unwrap();
    insta::assert_snapshot!("pane_diff_side_by_side_200x30", t.backend());
    apply_sync(&mut st, key('s'));
    apply_sync(&mut st, key('n'));
    assert!(st.diff.raw);
    let mut t = Terminal::new(TestBackend::new(200, 30)).unwrap();
    t.draw(|f| ui::render_pane(f, Pane::Diff, f.area(), &st, &Theme::new(true)))
        .unwrap();
    insta::assert_snapshot!("pane_diff_raw_200x30", t.backend());
}

#[test]
fn overlays_and_small_terminal() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let key = |c| Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
    let mut st = demo_state(u64::MAX);
    apply_sync(&mut st, key('?'));
    insta::assert_snapshot!("help_100x30", screen(&mut st, 100, 30).backend());
    // The smallest terminal kindred draws in: the help is taller than the screen and scrolls
    // (its title says so); `G` shows its end.
    insta::assert_snapshot!("help_80x24", screen(&mut st, 80, 24).backend());
    apply_sync(&mut st, key('G'));
    insta::assert_snapshot!("help_80x24_end", screen(&mut st, 80, 24).backend());
    apply_sync(&mut st, key('?'));
    apply_sync(&mut st, key('?'));
    insta::assert_snapshot!("help_100x30", screen(&mut st, 100, 30).backend());
    apply_sync(&mut st, key('?'));
    apply_sync(&mut st, key('x'));
    insta::assert_snapshot!("confirm_delete_100x30", screen(&mut st, 100, 30).backend());
    apply_sync(&mut st, key('n'));
    apply_sync(&mut st, key('e'));
    insta::assert_snapshot!("edit_target_100x30", screen(&mut st, 100, 30).backend());
    insta::assert_snapshot!("too_small_60x20", screen(&mut st, 60, 20).backend());
}

#[test]
fn a_node_without_kube_proxy_rules_is_a_visible_note_not_an_error() {
    use kindred::backend::event::Event;
    use kindred::model::Side;
    let mut st = demo_state(u64::MAX);
    // kube-proxy has not started on the PR's worker yet: its dump holds nothing of kube-proxy's.
    let empty = "*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n".to_string();
    apply_sync(
        &mut st,
        Msg::Backend(Event::RuleDump {
            side: Side::Pr,
            node: "77523-worker".into(),
            text: empty,
            at_ms: None,
        }),
    );
    assert!(st.sides.pr.no_rules.contains("77523-worker"));
    let mut t = Terminal::new(TestBackend::new(200, 30)).unwrap();
    t.draw(|f| ui::render_pane(f, Pane::Diff, f.area(), &st, &Theme::new(true)))
        .unwrap();
    let screen = format!("{}", t.backend());
    assert!(
        screen.contains("⚠ no kube-proxy rules on 77523-worker (is kube-proxy running?)"),
        "{screen}"
    );
    assert!(st.sides.pr.errors.is_empty(), "a note, not an error");
}

/// Nodes whose kube-proxy runs in another mode than the scenario's: the Diff pane says so, and
/// a pair in two different modes is compared Service by Service as it is (no error).
#[test]
fn a_mode_other_than_the_scenarios_is_pointed_out_and_compared() {
    use kindred::backend::event::Event;
    use kindred::model::{ProxyMode, Side};
    let mut st = demo_state(u64::MAX);
    st.session.as_mut().unwrap().proxy_mode = Some(ProxyMode::Nftables);
    let draw = |st: &State| {
        let mut t = Terminal::new(TestBackend::new(240, 30)).unwrap();
        t.draw(|f| ui::render_pane(f, Pane::Diff, f.area(), st, &Theme::new(true)))
            .unwrap();
        format!("{}", t.backend())
    };
    let screen = draw(&st);
    assert!(
        screen
            .contains("⚠ kube-proxy mode: base iptables, PR iptables; the scenario says nftables"),
        "{screen}"
    );
    let nft = std::fs::read_to_string(common::fixture(
        "nftables/k3s-real-nft-list-table-ip-kube-proxy.txt",
    ))
    .unwrap();
    let pair = st.diff.pair().unwrap().clone();
    apply_sync(
        &mut st,
        Msg::Backend(Event::RuleDump {
            side: Side::Pr,
            node: pair.pr.clone(),
            text: nft,
            at_ms: None,
        }),
    );
    let screen = draw(&st);
    assert!(
        screen.contains("⚠ kube-proxy mode: base iptables, PR nftables; the scenario says nftables (the modes differ"),
        "{screen}"
    );
    assert_eq!(st.diff.error, None);
    assert!(screen.contains("=== default/echo: (changed"), "{screen}");
}

/// At every usual terminal size, each test pod's name shows whole (or middle-shortened with both
/// ends) on both sides, in the Pods pane and, for the probing pods, in the Probes pane.
#[test]
fn pod_names_are_never_cut_at_their_end() {
    // The demo as recorded, and with whole rule dumps (every PREDICT label at its longest).
    let mut full = demo_state(u64::MAX);
    whole_dumps(&mut full);
    for mut st in [demo_state(u64::MAX), full] {
        names_whole_at_six_sizes(&mut st);
    }
}

fn names_whole_at_six_sizes(st: &mut State) {
    for (w, h) in [
        (100, 30),
        (120, 40),
        (160, 48),
        (180, 50),
        (200, 60),
        (240, 60),
    ] {
        let t = screen(st, w, h);
        let text: String = t
            .backend()
            .buffer()
            .content()
            .chunks(w as usize)
            .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
            .collect();
        let tokens: Vec<&str> = text
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|t| !t.is_empty())
            .collect();
        for n in POD_NAMES {
            let seen = tokens.iter().filter(|t| is_name(t, n)).count();
            // Pods on both sides, and Probes on both sides.
            assert!(
                seen >= 4,
                "{w}x{h}: {n} shown {seen} times whole or middle-cut\n{text}"
            );
        }
    }
}

/// The Build pane during a kube-proxy swap of the PR side (steps with their times, the phase's
/// running time), then after it: the image it runs and what it was built from.
#[test]
fn build_pane_during_and_after_a_swap() {
    use kindred::backend::event::Event;
    use kindred::model::{Phase, PhaseState, Side};
    let mut st = demo_state(u64::MAX);
    let ev = |st: &mut State, e: Event| {
        apply_sync(st, Msg::Backend(e));
    };
    let t0 = st.now;
    ev(
        &mut st,
        Event::Phase {
            side: Side::Pr,
            phase: Phase::Swap,
            state: PhaseState::Running,
        },
    );
    for line in [
        "▸ source",
        "✓ source (0.1s)",
        "  compiling with make on the host (go1.24.4)",
        "▸ compile kube-proxy",
        "✓ compile kube-proxy (41.3s)",
        "▸ load (image archive) into 3 nodes",
    ] {
        ev(
            &mut st,
            Event::Output {
                side: Side::Pr,
                phase: Phase::Swap,
                line: line.into(),
            },
        );
    }
    apply_sync(&mut st, Msg::Tick(t0 + Duration::from_secs(47)));
    let draw = |st: &State| {
        let mut t = Terminal::new(TestBackend::new(100, 14)).unwrap();
        t.draw(|f| ui::render_pane(f, Pane::Build, f.area(), st, &Theme::new(true)))
            .unwrap();
        t
    };
    insta::assert_snapshot!("pane_build_swapping_100x14", draw(&st).backend());
    ev(
        &mut st,
        Event::ProxySwapped {
            side: Side::Pr,
            image: "kindred/kube-proxy:0123456789ab-1a2b3c4d".into(),
            commit: "0123456789abcdef".into(),
            snapshot: Some("HEAD 89abcde + 2 changed files".into()),
        },
    );
    ev(
        &mut st,
        Event::Phase {
            side: Side::Pr,
            phase: Phase::Swap,
            state: PhaseState::Done,
        },
    );
    insta::assert_snapshot!("pane_build_swapped_100x14", draw(&st).backend());
}

/// Watching: the Build pane says which nodes `nft monitor` follows and which are polled, and
/// why; turning watch off forgets it.
#[test]
fn build_pane_says_which_nodes_are_monitored_and_which_polled() {
    use kindred::backend::event::{Event, PollReason, WatchPath};
    use kindred::model::Side;
    let mut st = demo_state(u64::MAX);
    apply_sync(&mut st, key('w'));
    let polled = |why| WatchPath::Polled {
        every_ms: 30_000,
        why,
    };
    let base = st.side(Side::Base).name().to_string();
    let pr = st.side(Side::Pr).name().to_string();
    for (side, cluster, node, path) in [
        (Side::Base, &base, "control-plane", WatchPath::Monitor),
        (Side::Base, &base, "worker", polled(PollReason::Legacy)),
        (Side::Base, &base, "worker2", polled(PollReason::Legacy)),
        (Side::Pr, &pr, "control-plane", WatchPath::Monitor),
        (Side::Pr, &pr, "worker", WatchPath::Monitor),
        (
            Side::Pr,
            &pr,
            "worker2",
            polled(PollReason::NoMonitor {
                error: "`nft monitor` ended: sh: nft: not found".into(),
            }),
        ),
    ] {
        let node = format!("{cluster}-{node}");
        apply_sync(&mut st, Msg::Backend(Event::Watching { side, node, path }));
    }
    let draw = |st: &State| {
        let mut t = Terminal::new(TestBackend::new(120, 14)).unwrap();
        t.draw(|f| ui::render_pane(f, Pane::Build, f.area(), st, &Theme::new(true)))
            .unwrap();
        t
    };
    let t = draw(&st);
    let text = format!("{}", t.backend());
    assert!(
        text.contains("  watch: nft monitor on control-plane, worker ")
            && text.contains("! watch: worker, worker2 polled every 30s (rules in")
            && text.contains("iptables-legacy, which nft monitor cannot see)")
            && text.contains("! watch: worker2 polled every 30s (no nft monitor:")
            && text.contains("sh: nft: not found"),
        "{text}"
    );
    insta::assert_snapshot!("pane_build_watching_120x14", t.backend());
    apply_sync(&mut st, key('w'));
    let text = format!("{}", draw(&st).backend());
    assert!(!text.contains("watch:"), "{text}");
}

/// Watching context sides: nodes in nftables mode followed by `nft monitor` through exec are
/// said so; a node whose monitor could not run, or is over the bound, is marked and says it
/// follows the API server's events only, and why.
#[test]
fn build_pane_says_which_context_nodes_have_nft_monitor_by_exec() {
    use kindred::backend::event::{Event, NoExecMonitor, WatchPath};
    use kindred::model::Side;
    let mut st = demo_state(u64::MAX);
    apply_sync(&mut st, key('w'));
    let only = |why| WatchPath::ApiEventsOnly { why };
    let base = st.side(Side::Base).name().to_string();
    let pr = st.side(Side::Pr).name().to_string();
    let refused = "exec in kube-system/kube-proxy-x: pods/exec is forbidden (403)";
    for (side, cluster, node, path) in [
        (Side::Base, &base, "control-plane", WatchPath::ApiEvents),
        (Side::Base, &base, "worker", WatchPath::ApiEvents),
        (Side::Pr, &pr, "control-plane", WatchPath::ExecMonitor),
        (
            Side::Pr,
            &pr,
            "worker",
            only(NoExecMonitor::Failed {
                error: refused.into(),
            }),
        ),
        (
            Side::Pr,
            &pr,
            "worker2",
            only(NoExecMonitor::OverCap { cap: 2 }),
        ),
    ] {
        let node = format!("{cluster}-{node}");
        apply_sync(&mut st, Msg::Backend(Event::Watching { side, node, path }));
    }
    let mut t = Terminal::new(TestBackend::new(120, 14)).unwrap();
    t.draw(|f| ui::render_pane(f, Pane::Build, f.area(), &st, &Theme::new(true)))
        .unwrap();
    let text = format!("{}", t.backend());
    assert!(
        text.contains("  watch: nft monitor by exec in kube-proxy pods on")
            && text.contains("! watch: worker re-read on API server events only (no")
            && text.contains("pods/exec is forbidden (403))")
            && text.contains("! watch: worker2 re-read on API server events only (no")
            && text.contains("nft monitor: more nodes than 2 monitors)"),
        "{text}"
    );
    insta::assert_snapshot!("pane_build_watching_context_120x14", t.backend());
}

fn key(c: char) -> Msg {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn diff_pane(st: &State, w: u16, h: u16, theme: &Theme) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::render_pane(f, Pane::Diff, f.area(), st, theme))
        .unwrap();
    t
}

/// Long rules: cut with `→` where more follows, `←` once scrolled right; `W` wraps them with
/// `↳` on the continuation rows; `o` hides each changed rule's dump line.
#[test]
fn diff_long_rules_scroll_wrap_and_dump_lines_hide() {
    let mut st = demo_state(u64::MAX);
    let scrolled = |st: &mut State| {
        for _ in 0..3 {
            apply_sync(st, key('l'));
        }
    };
    scrolled(&mut st);
    insta::assert_snapshot!(
        "pane_diff_scrolled_right_100x20",
        diff_pane(&st, 100, 20, &Theme::new(true)).backend()
    );
    apply_sync(&mut st, key('W'));
    assert!(st.diff.wrap && st.diff.hscroll == 0);
    insta::assert_snapshot!(
        "pane_diff_wrapped_100x20",
        diff_pane(&st, 100, 20, &Theme::new(true)).backend()
    );
    apply_sync(&mut st, key('o'));
    let t = diff_pane(&st, 100, 20, &Theme::new(true));
    let text = format!("{:?}", t.backend());
    assert!(!text.contains("PR line 5"), "{text}");
    insta::assert_snapshot!("pane_diff_wrapped_no_dump_lines_100x20", t.backend());
}

/// What text snapshots cannot see: the colours and modifiers of a few cells, and that without
/// colour (NO_COLOR) every status still has its symbol and emphasis.
#[test]
fn styles_of_added_lines_differing_results_and_the_focused_pane() {
    use ratatui::style::{Color, Modifier};
    let mut st = demo_state(u64::MAX);
    let find = |t: &Terminal<TestBackend>, what: &str| -> (u16, u16) {
        let b = t.backend().buffer();
        let w = b.area.width;
        for y in 0..b.area.height {
            let row: String = (0..w).map(|x| b[(x, y)].symbol().to_string()).collect();
            if let Some(i) = row.find(what) {
                let x = row[..i].chars().count() as u16;
                return (x, y);
            }
        }
        panic!("{what} not on screen");
    };
    for color in [true, false] {
        let theme = Theme::new(color);
        apply_sync(&mut st, Msg::Resize(200, 60));
        let mut t = Terminal::new(TestBackend::new(200, 60)).unwrap();
        t.draw(|f| ui::render(f, &st, &theme)).unwrap();
        let b = t.backend().buffer().clone();
        // An added rule: green, and its `+`; the changed words underlined and bold.
        let (x, y) = find(&t, "+ -A KUBE-XLB");
        let added = &b[(x, y)];
        assert_eq!(added.symbol(), "+");
        assert_eq!(added.fg, if color { Color::Green } else { Color::Reset });
        // The result that differs between base and PR: `≠` and reversed (colour or not).
        let (x, y) = find(&t, "timeout ≠");
        let differs = &b[(x, y)];
        assert!(
            differs.modifier.contains(Modifier::REVERSED) || differs.fg != Color::Reset,
            "{differs:?}"
        );
        // Expectations met and missed keep their marks.
        find(&t, "FAIL ✓");
        // Focus: the focused pane's border is bold (and cyan with colour).
        apply_sync(
            &mut st,
            Msg::Key(crossterm::event::KeyEvent::new(
                crossterm::event::KeyCode::Tab,
                crossterm::event::KeyModifiers::NONE,
            )),
        );
        let mut t = Terminal::new(TestBackend::new(200, 60)).unwrap();
        t.draw(|f| ui::render(f, &st, &theme)).unwrap();
        let focused = st.focus.unwrap();
        let (x, y) = find(&t, &format!(" {} ", focused.title()));
        let corner = &t.backend().buffer()[(x - 1, y)];
        assert!(
            corner.modifier.contains(Modifier::BOLD),
            "{focused:?} {corner:?}"
        );
        assert_eq!(corner.fg, if color { Color::Cyan } else { Color::Reset });
        st.focus = None;
    }
    let mut t = Terminal::new(TestBackend::new(100, 30)).unwrap();
    st.size = (100, 30);
    t.draw(|f| ui::render(f, &st, &Theme::new(false))).unwrap();
    insta::assert_snapshot!("screen_no_color_100x30", t.backend());
}

/// A node-image build in progress: kind's stage, and against the last build's time a bar,
/// "elapsed/~last"; past it, how long the last one took.
#[test]
fn build_pane_shows_stage_elapsed_and_the_last_builds_time() {
    use kindred::backend::event::Event;
    use kindred::model::{Phase, Side};
    let mut st = demo_state(3000);
    let t0 = st.now;
    apply_sync(
        &mut st,
        Msg::Backend(Event::Estimate {
            side: Side::Base,
            phase: Phase::Build,
            seconds: 1200,
        }),
    );
    apply_sync(&mut st, Msg::Tick(t0 + Duration::from_secs(600)));
    let draw = |st: &State| {
        let mut t = Terminal::new(TestBackend::new(120, 12)).unwrap();
        t.draw(|f| ui::render_pane(f, Pane::Build, f.area(), st, &Theme::new(true)))
            .unwrap();
        t
    };
    let t = draw(&st);
    let text = format!("{:?}", t.backend());
    assert!(
        text.contains("████░░░░ 10m02s/~20m00s"),
        "half of the last build: {text}"
    );
    assert!(text.contains("compiling Kubernetes 1/4"), "{text}");
    insta::assert_snapshot!("pane_build_gauge_120x12", t.backend());
    apply_sync(&mut st, Msg::Tick(t0 + Duration::from_secs(1500)));
    let text = format!("{:?}", draw(&st).backend());
    assert!(text.contains("████████ 25m02s (last 20m00s)"), "{text}");
}

/// A failed phase (its reason in full, and which key runs it again) and errors the backend
/// reported (in the pane concerned, on the side concerned), as the screen shows them.
#[test]
fn a_failed_phase_and_reported_errors() {
    use kindred::backend::event::Event;
    use kindred::model::{Phase, PhaseState, Side};
    let mut st = demo_state(3000);
    for e in [
        Event::Phase {
            side: Side::Pr,
            phase: Phase::Build,
            state: PhaseState::Failed {
                reason: "kind build node-image: failed to build images: exit status 2 (exit 1)"
                    .into(),
            },
        },
        Event::Error {
            side: Some(Side::Base),
            pane: Pane::Pods,
            message: "kind get kubeconfig --name master: no answer in 30s".into(),
        },
        Event::Error {
            side: None,
            pane: Pane::Diff,
            message: "master-worker: `iptables-save` did not finish within 30s".into(),
        },
    ] {
        apply_sync(&mut st, Msg::Backend(e));
    }
    let t = screen(&mut st, 120, 40);
    let text = format!("{:?}", t.backend());
    assert!(
        text.contains("✗ image build") && text.contains("failed to build images"),
        "{text}"
    );
    assert!(text.contains("b, c, d or p runs the phase again"), "{text}");
    insta::assert_snapshot!("screen_failed_and_errors_120x40", t.backend());
}

/// With two probe targets the Probes pane has a row per source and target, each naming its
/// target, with the expectation of that target (the demo's, for every target).
#[test]
fn probes_pane_names_each_target() {
    let rec = recording::parse(kindred::cli::DEMO_RECORDING, "demo").unwrap();
    let rec = common::two_targets(rec, "192.0.2.10:80");
    let mut st = State::new();
    for r in rec.records {
        apply_sync(&mut st, Msg::Tick(Duration::from_millis(r.t)));
        apply_sync(&mut st, Msg::Backend(r.event));
    }
    let (w, h) = (200, 60);
    st.size = (w, h);
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    let area = ratatui::layout::Rect::new(0, 0, w, 30);
    t.draw(|f| ui::render_pane(f, Pane::Probes, area, &st, &Theme::new(true)))
        .unwrap();
    let text = format!("{}", t.backend());
    assert!(
        text.contains("worker2 → 192.0.2.10:80") && text.contains("worker2 → lb"),
        "{text}"
    );
    insta::assert_snapshot!("pane_probes_two_targets_200x30", t.backend());
}

/// A diff that left out a table only one side listed (the other listing one table) says so
/// above the rules.
#[test]
fn diff_names_tables_only_one_side_listed() {
    use kindred::rules::diff::{ListedBy, OneSidedTable};
    let mut st = demo_state(u64::MAX);
    let r = st.diff.result.as_mut().expect("a diff");
    let mut c = (*r.comparison).clone();
    c.one_sided_tables = vec![OneSidedTable {
        table: "ip6 kube-proxy".into(),
        listed_by: ListedBy::Pr,
    }];
    r.comparison = std::sync::Arc::new(c);
    let t = diff_pane(&st, 100, 12, &Theme::new(true));
    let text = format!("{:?}", t.backend());
    assert!(
        text.contains(
            "note: table ip6 kube-proxy listed only by PR (base lists one table): not compared"
        ),
        "{text}"
    );
    insta::assert_snapshot!("pane_diff_one_sided_tables_100x12", t.backend());
}

/// The worker nodes' whole rule dumps of the 2019 walkthrough (the demo's are the blog's
/// fragments): each probe from a worker gets a path through kube-proxy's rules.
fn whole_dumps(st: &mut State) {
    use kindred::backend::event::Event;
    use kindred::model::Side;
    for (side, node, f) in [
        (Side::Base, "master-worker", "master"),
        (Side::Pr, "77523-worker", "pr77523"),
    ] {
        let path = common::fixture(&format!("trace/kernel/iptables-2019-{f}.txt"));
        let text = std::fs::read_to_string(path).unwrap();
        let node = node.into();
        let ev = Event::RuleDump {
            side,
            node,
            text,
            at_ms: None,
        };
        apply_sync(st, Msg::Backend(ev));
    }
}

/// The worker2 nodes without an address: their pods' probes have no prediction, whatever
/// rules were read from them.
fn worker2_without_address(st: &mut State) {
    use kindred::backend::event::Event;
    use kindred::model::{NodeRole, Side};
    for (side, node) in [(Side::Base, "master-worker2"), (Side::Pr, "77523-worker2")] {
        let name = node.into();
        let role = NodeRole::Worker;
        let ev = Event::Node {
            side,
            name,
            role,
            ip: None,
        };
        apply_sync(st, Msg::Backend(ev));
    }
}

fn press(st: &mut State, code: crossterm::event::KeyCode) {
    use crossterm::event::{KeyEvent, KeyModifiers};
    apply_sync(st, Msg::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn text_of(t: &Terminal<TestBackend>) -> String {
    let b = t.backend().buffer();
    let w = b.area.width as usize;
    b.content()
        .chunks(w)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect()
}

/// Enter on a probe row: its two paths in the Diff pane's place, the verdict on top of each
/// column, the first step where they part marked (the LB IPs the clusters gave the Service
/// differ, and are not where they part); zoomed, every rule whole; Esc returns.
#[test]
fn a_probes_two_paths_normal_and_zoomed() {
    use crossterm::event::KeyCode;
    let mut st = demo_state(u64::MAX);
    whole_dumps(&mut st);
    press(&mut st, KeyCode::BackTab);
    press(&mut st, KeyCode::Down);
    press(&mut st, KeyCode::Enter);
    let t = screen(&mut st, 200, 60);
    let text = text_of(&t);
    for want in [
        "Diff paths of one probe · Esc back",
        "probe netshoot-worker → lb · the paths part at step 4 (▶)",
        "master (base): drop filter/OUTPUT",
        "77523 (PR): dnat to 10.244.1.2:8080, masquerade",
        "172.17.255.1:8080 · observed timeout · expected→",
        "  output nat/OUTPUT: -A OUTPUT -m comment --com→",
        "▶ output nat/KUBE-XLB-U52O5CQH2XXNVZ54: -A KUBE→",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    // The probe shown is the selected row of the Probes pane.
    let y = text
        .lines()
        .position(|l| l.contains("│netshoot-worker  timeout"))
        .unwrap();
    let selected = &t.backend().buffer()[(2, y as u16)];
    assert_eq!(selected.bg, ratatui::style::Color::Blue, "{selected:?}");
    insta::assert_snapshot!("screen_paths_200x60", t.backend());
    insta::assert_snapshot!("screen_paths_100x30", screen(&mut st, 100, 30).backend());
    apply_sync(&mut st, key('z'));
    let t = screen(&mut st, 200, 60);
    let text = text_of(&t);
    for want in [
        // Each rule whole, wrapped; the one that decides each side's verdict among them.
        "-j KUBE-MARK-DROP (line 57)",
        "▶ output nat/KUBE-XLB-U52O5CQH2XXNVZ54: -A KUBE-XLB-U52O5CQH2XXNVZ54 -m comment --comment \"masquer",
        "-j DNAT --to-de",
        "↳ stination 10.244.1.2:8080 (line 52)",
        "output filter/KUBE-FIREWALL: -A KUBE-FIREWALL -m comment",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    insta::assert_snapshot!("screen_paths_zoomed_200x60", t.backend());
    press(&mut st, KeyCode::Esc);
    let text = text_of(&screen(&mut st, 200, 60));
    assert!(
        text.contains("Diff normalized · unified") && !text.contains("paths of one probe"),
        "{text}"
    );
    // A probe without a prediction: each column says why (here: its node lost its address).
    worker2_without_address(&mut st);
    press(&mut st, KeyCode::Up);
    press(&mut st, KeyCode::Enter);
    let text = text_of(&screen(&mut st, 200, 60));
    for want in [
        "probe echo-worker2 → lb · a side has no prediction",
        "master (base): no prediction",
        "why: node master-worker2 has no address yet",
        "why: node 77523-worker2 has no address yet",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}

/// PREDICT: the rules' verdict per probe, `?` without one; `!` where the observed outcome
/// contradicts it, `✎` where the expectation does, each in a style of its own (without colour
/// too: the marks are characters).
#[test]
fn predictions_and_their_marks_in_the_probes_pane() {
    use kindred::backend::event::Event;
    use kindred::model::{Outcome, Side};
    use ratatui::style::Modifier;
    let mut st = demo_state(u64::MAX);
    whole_dumps(&mut st);
    worker2_without_address(&mut st);
    // The PR's host probe times out although its rules DNAT it; base's expectation says OK
    // although its rules drop it.
    let key = (
        "netshoot-77523-worker".to_string(),
        "172.17.254.1:8080".to_string(),
    );
    let mut result = st.sides.pr.probes[&key].last.clone();
    result.outcome = Outcome::Timeout;
    let side = Side::Pr;
    apply_sync(&mut st, Msg::Backend(Event::Probe { side, result }));
    let exp = &mut st.session.as_mut().unwrap().expectations;
    let e = exp
        .iter_mut()
        .find(|e| e.source == "netshoot-master-worker");
    e.unwrap().outcome = Outcome::Ok;
    for (w, color) in [(200, true), (100, false)] {
        let mut t = Terminal::new(TestBackend::new(w, 9)).unwrap();
        let theme = Theme::new(color);
        t.draw(|f| ui::render_pane(f, Pane::Probes, f.area(), &st, &theme))
            .unwrap();
        let text = text_of(&t);
        // Wide enough for the chain that decided a drop; else the verdict alone.
        let drop = if w == 200 {
            "drop filter/OUTPUT ✎"
        } else {
            "drop ✎"
        };
        for marked in [drop, "dnat !"] {
            let y = text.lines().position(|l| l.contains(marked)).expect(marked);
            let row = text.lines().nth(y).unwrap();
            let x = row.split(marked).next().unwrap().chars().count() as u16;
            let c = &t.backend().buffer()[(x, y as u16)];
            assert!(
                c.modifier.contains(Modifier::BOLD),
                "{marked}: {c:?}\n{text}"
            );
        }
        assert!(text.contains(" accept ") && text.contains(" ? "), "{text}");
        insta::assert_snapshot!(format!("pane_probes_marks_{w}x9"), t.backend());
    }
    // The chain that decided a drop costs no other column: where it would, the verdict alone.
    let mut t = Terminal::new(TestBackend::new(182, 9)).unwrap();
    t.draw(|f| ui::render_pane(f, Pane::Probes, f.area(), &st, &Theme::new(true)))
        .unwrap();
    let text = text_of(&t);
    let header = text.lines().nth(2).unwrap();
    assert_eq!(header.matches("HISTORY").count(), 2, "{text}");
    assert_eq!(header.matches("HTTP").count(), 2, "{text}");
    assert!(
        text.contains("drop ✎") && !text.contains("filter/OUTPUT"),
        "{text}"
    );
    // The legend says what the marks mean.
    let help: String = kindred::app::keymap::BINDINGS
        .iter()
        .map(|b| b.help)
        .collect();
    assert!(
        help.contains("! observed disagrees, ✎ expected does"),
        "{help}"
    );
}

/// A Probes pane shorter than its rows scrolls to keep the cursor's row in sight.
#[test]
fn the_probes_pane_scrolls_to_its_cursor() {
    use crossterm::event::KeyCode;
    let mut st = demo_state(u64::MAX);
    press(&mut st, KeyCode::BackTab);
    let draw = |st: &State| {
        let mut t = Terminal::new(TestBackend::new(100, 6)).unwrap();
        t.draw(|f| ui::render_pane(f, Pane::Probes, f.area(), st, &Theme::new(true)))
            .unwrap();
        text_of(&t)
    };
    // Two rows in sight: echo-worker2 and netshoot-worker.
    assert!(draw(&st).contains("│echo-worker2 "), "{}", draw(&st));
    for _ in 0..3 {
        press(&mut st, KeyCode::Down);
    }
    let text = draw(&st);
    assert!(
        text.contains("│netshoot-worker2 ")
            && text.contains("│overlay-worker ")
            && !text.contains("echo-worker2"),
        "{text}"
    );
    // Back up: the first row shown follows the cursor up.
    for _ in 0..3 {
        press(&mut st, KeyCode::Up);
    }
    assert!(draw(&st).contains("│echo-worker2 "), "{}", draw(&st));
}

/// What changed for the Service's packets heads the Diff pane: each class whose outcome differs
/// between base and PR (PR 132456's nftables rules: the host's traffic to the LoadBalancer,
/// dropped by base's filter-output, DNATed by the PR's), aligned, above the rules.
#[test]
fn diff_pane_is_headed_by_what_changed_for_packets() {
    let st = common::headless::state_from(&common::predicting::recording());
    let t = diff_pane(&st, 160, 14, &Theme::new(true));
    let lines: Vec<String> = format!("{}", t.backend())
        .lines()
        .map(str::to_string)
        .collect();
    let at = |what: &str| {
        lines
            .iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("{what} not in {lines:#?}"))
    };
    let head = &lines[at("packets: host → LB 1.2.3.4:80 ")];
    assert!(
        head.contains(
            "base drop (filter-output, service-endpoints-check)   PR dnat 1 endpoint masqueraded"
        ),
        "{head}"
    );
    assert_eq!(
        at("         host → LB/externalIP 192.168.99.22:80"),
        at("packets: ") + 1
    );
    assert!(at("packets: ") < at("=== ns2/svc2:p80"), "{lines:#?}");
    insta::assert_snapshot!("pane_diff_packets_160x14", t.backend());
}

/// The same rules on both sides: the heading says no class differs, and how many were traced.
#[test]
fn diff_pane_heading_says_when_no_class_differs() {
    use kindred::backend::event::Event;
    let mut rec = common::predicting::recording();
    for r in &mut rec.records {
        if let Event::RuleDump { text, .. } = &mut r.event {
            *text = common::predicting::dump(1);
        }
    }
    let st = common::headless::state_from(&rec);
    let t = diff_pane(&st, 100, 8, &Theme::new(true));
    let text = format!("{}", t.backend());
    assert!(
        text.contains("│packets: no class differs (12 classes)"),
        "{text}"
    );
    insta::assert_snapshot!("pane_diff_packets_equal_100x8", t.backend());
}

/// The summary's node addresses are the cluster's (the Node events'), not the dump's: a node
/// address reported after the rules were read is traced from again.
#[test]
fn the_packet_summary_traces_from_the_nodes_reported_addresses() {
    use kindred::backend::event::Event;
    use kindred::model::{NodeRole, Side};
    let mut st = common::headless::state_from(&common::predicting::recording());
    let ips = |st: &State| {
        let p = st.diff.result.as_ref().unwrap().packets.clone().unwrap();
        (p.base.node_ips.clone(), p.pr.node_ips.clone())
    };
    let two: std::net::Ipv4Addr = "192.168.0.2".parse().unwrap();
    assert_eq!(ips(&st), (vec![two], vec![two]));
    for (side, name) in [(Side::Base, "b133-worker"), (Side::Pr, "p134-worker")] {
        apply_sync(
            &mut st,
            Msg::Backend(Event::Node {
                side,
                name: name.into(),
                role: NodeRole::Worker,
                ip: Some("192.168.0.9".into()),
            }),
        );
    }
    let nine: std::net::Ipv4Addr = "192.168.0.9".parse().unwrap();
    assert_eq!(ips(&st), (vec![nine], vec![nine]));
}

/// Two sides that are clusters kindred did not create: the Build pane names each side's
/// context, a node without kube-proxy is said in the Diff pane, the footer says why b, p and
/// c do nothing, and `x` asks about kindred's namespace in the context that has one.
#[test]
fn two_context_sides_say_what_they_are_and_why_keys_do_nothing() {
    use kindred::backend::event::{Event, SessionInfo, SideInfo};
    use kindred::model::{NodeRole, Side};
    let side = |name: &str, context: &str, namespace: Option<&str>| SideInfo {
        name: name.into(),
        git_ref: None,
        image: None,
        context: Some(context.into()),
        namespace: namespace.map(String::from),
    };
    let mut st = State::new();
    let session = SessionInfo {
        base: side("staging", "ctx-staging", None),
        pr: side("prod", "ctx-prod", Some("kindred")),
        service: "default/echo".parse().unwrap(),
        probe_target: kindred::model::Target::Lb,
        probe_targets: vec![],
        expectations: vec![],
        banner: None,
        proxy_mode: None,
    };
    apply_sync(&mut st, Msg::Backend(Event::Session(Box::new(session))));
    for (side, prefix, dump) in [
        (
            Side::Base,
            "staging",
            "tests/fixtures/trace/kernel/iptables-2019-master.txt",
        ),
        (
            Side::Pr,
            "prod",
            "tests/fixtures/trace/kernel/iptables-2019-pr77523.txt",
        ),
    ] {
        for (i, n) in ["control-plane", "worker", "worker2"].iter().enumerate() {
            let role = if i == 0 {
                NodeRole::ControlPlane
            } else {
                NodeRole::Worker
            };
            let name = format!("{prefix}-{n}");
            let ip = Some(format!("10.1.0.{}", i + 2));
            apply_sync(
                &mut st,
                Msg::Backend(Event::Node {
                    side,
                    name,
                    role,
                    ip,
                }),
            );
        }
        let text = std::fs::read_to_string(dump).unwrap();
        for n in ["control-plane", "worker"] {
            let node = format!("{prefix}-{n}");
            let text = text.clone();
            apply_sync(
                &mut st,
                Msg::Backend(Event::RuleDump {
                    side,
                    node,
                    text,
                    at_ms: None,
                }),
            );
        }
    }
    let why = "no kube-proxy pod on node staging-worker2".to_string();
    apply_sync(
        &mut st,
        Msg::Backend(Event::NoRules {
            side: Side::Base,
            node: "staging-worker2".into(),
            why,
        }),
    );
    let t = screen(&mut st, 160, 48);
    let text = text_of(&t);
    for want in [
        "b p f c: base is context ctx-staging, PR is context ctx-prod (read only)",
        "context ctx-staging",
        "context ctx-prod",
        "⚠ no kube-proxy rules, not compared: staging-worker2",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
    insta::assert_snapshot!("screen_two_contexts_160x48", t.backend());
    apply_sync(&mut st, key('c'));
    assert!(
        st.activity
            .starts_with("c does nothing: base is context ctx-staging")
    );
    apply_sync(&mut st, key('x'));
    let t = screen(&mut st, 160, 48);
    assert!(
        text_of(&t).contains("Delete namespace kindred in context ctx-prod (only what kindred created; never a context's cluster)?"),
        "{}",
        text_of(&t)
    );
    insta::assert_snapshot!("screen_two_contexts_delete_160x48", t.backend());
}

/// A 500-node side with 3 distinct rule sets is 3 groups, each compared once with its PR group
/// (matched by the node names they share), not 500 node pairs; the PR's outlier (a node whose
/// rules no other node has) is listed, and compared with the group holding its name on base.
#[test]
fn diff_pane_compares_groups_of_a_500_node_side() {
    let st = common::groups::state(500, true);
    assert_eq!(st.diff.pairs.len(), 4, "{:?}", st.diff.pairs);
    assert_eq!(st.diff.groups.base.len(), 3);
    assert_eq!(st.diff.groups.pr.len(), 4);
    let t = diff_pane(&st, 120, 16, &Theme::new(true));
    let text = text_of(&t);
    assert!(
        text.contains(
            "base worker group A: 300 nodes, same rules ↔ PR worker group A: 300 nodes, same rules  (1/4)"
        ),
        "{text}"
    );
    assert!(
        text.contains("outliers: base none, PR 1 (node-499)"),
        "{text}"
    );
    insta::assert_snapshot!("pane_diff_groups_500_nodes_120x16", t.backend());
    // `N` goes on to the next group pair; the last compares the outlier.
    let mut st = st;
    for _ in 0..3 {
        apply_sync(&mut st, key('N'));
    }
    let text = text_of(&diff_pane(&st, 120, 16, &Theme::new(true)));
    assert!(
        text.contains("base worker group C: 50 nodes, same rules ↔ PR node-499  (4/4)"),
        "{text}"
    );
    assert!(
        text.contains("compared: base-node-450 ↔ pr-node-499"),
        "{text}"
    );
}

/// The bisect of tests/fixtures/bisect/found.jsonl, applied to the demo's end state up to (not
/// including) its `n`th bisect event; the clock 47 s past the last one applied.
fn bisecting(n: usize) -> State {
    use kindred::backend::event::Event;
    let mut st = demo_state(u64::MAX);
    let text = std::fs::read_to_string(common::fixture("bisect/found.jsonl")).unwrap();
    let rec = recording::parse(&text, "found").unwrap();
    let t0 = st.now;
    let events = rec
        .records
        .into_iter()
        .filter(|r| matches!(r.event, Event::Bisect(_)))
        .take(n);
    let mut last = t0;
    for r in events {
        last = t0 + Duration::from_millis(r.t);
        apply_sync(&mut st, Msg::Tick(last));
        apply_sync(&mut st, Msg::Backend(r.event));
    }
    apply_sync(&mut st, Msg::Tick(last + Duration::from_secs(47)));
    st
}

fn build_pane(st: &State, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::render_pane(f, Pane::Build, f.area(), st, &Theme::new(true)))
        .unwrap();
    t
}

/// While a bisect runs, the Build pane shows its range, path and judge, the steps so far (short
/// SHA, PR, role, verdict, rounds, time or cached, why), the commit being tested with its
/// time, and what is left; at the end the first bad commit, the last good one and the rules
/// diff. A subject's escape sequence is shown, not obeyed.
#[test]
fn build_pane_during_and_after_a_bisect() {
    // Up to the flaky commit's Testing (its step not in yet).
    let st = bisecting(16);
    assert!(st.bisect.running && st.bisect.testing.is_some());
    for (w, h) in SIZES {
        let t = build_pane(&st, w, h);
        let text = text_of(&t);
        for want in [
            "Bisect PR side 010101010101..161616161616 · 21 commits · at most 7 steps · 5 done",
            "– 111111111111  #132417   inside    skip (unbuildable)     0/3   18.2s  compile kube-proxy",
            "0c0c0c0c0c0c  #132412   inside    good                   3/3  cached",
            "0e0e0e0e0e0e  #132414   inside    testing…  47s",
            "left: 4 candidates 0d0d0d0d0d0d..101010101010",
        ] {
            assert!(text.contains(want), "{w}x{h}: {want}:\n{text}");
        }
        insta::assert_snapshot!(format!("pane_build_bisecting_{w}x{h}"), t.backend());
    }
    let st = bisecting(usize::MAX);
    assert!(st.bisect.end.is_some() && st.bisect.testing.is_none());
    for (w, h) in SIZES {
        let t = build_pane(&st, w, h);
        let text = text_of(&t);
        assert!(
            text.contains("✗ first bad  101010101010  #132416  Merge pull request #132416 from evil/\\x1b[31mred"),
            "{text}"
        );
        insta::assert_snapshot!(format!("pane_build_bisect_found_{w}x{h}"), t.backend());
    }
    insta::assert_snapshot!(
        "screen_bisect_found_100x30",
        screen(&mut bisecting(usize::MAX), 100, 30).backend()
    );
    // The smallest terminal kindred draws in still shows how it ended.
    let text = text_of(&screen(&mut bisecting(usize::MAX), 80, 24));
    assert!(text.contains("✗ first bad  101010101010"), "{text}");
}

/// `f` opens the bisect prompt, filled with the sides' refs (base good, PR bad); a malformed
/// range is refused with a message and the prompt stays; a well-formed one starts the bisect.
#[test]
fn the_bisect_prompt_asks_good_and_bad_refs() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use kindred::backend::event::Command;
    let mut st = demo_state(u64::MAX);
    apply_sync(&mut st, key('f'));
    let t = screen(&mut st, 100, 30);
    assert!(text_of(&t).contains("master..pr/77523"), "{}", text_of(&t));
    insta::assert_snapshot!("bisect_prompt_100x30", t.backend());
    // "master..pr/77523" less its last 10 characters: no range.
    for _ in 0..10 {
        apply_sync(
            &mut st,
            Msg::Key(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE)),
        );
    }
    let sent = apply_sync(
        &mut st,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    assert!(sent.is_empty() && st.editor.is_some());
    assert!(
        st.activity.contains("expected GOOD..BAD"),
        "{}",
        st.activity
    );
    insta::assert_snapshot!(
        "bisect_prompt_refused_100x30",
        screen(&mut st, 100, 30).backend()
    );
    for c in "..v1.34.0".chars() {
        apply_sync(&mut st, key(c));
    }
    let sent = apply_sync(
        &mut st,
        Msg::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    );
    assert!(st.editor.is_none());
    match sent.as_slice() {
        [Command::Bisect(r)] => {
            assert_eq!((r.good.as_str(), r.bad.as_str()), ("master", "v1.34.0"))
        }
        other => panic!("{other:?}"),
    }
    // Until its range is known, the Build pane says it is being resolved.
    let text = text_of(&build_pane(&st, 100, 30));
    assert!(
        text.contains("Bisect PR side master..v1.34.0: resolving the range…"),
        "{text}"
    );
}

/// The connections held across a swap under each side's probe rows: the counts, then each one
/// not kept with why; pod names stay whole at the usual sizes.
#[test]
fn probes_pane_shows_connections_held_across_a_swap() {
    use kindred::backend::event::Event;
    use kindred::backend::held::{Change, Fate, HeldConn, Via};
    use kindred::model::Side;
    let mut st = demo_state(u64::MAX);
    for side in Side::BOTH {
        let pods: Vec<String> = st.side(side).pods.keys().cloned().collect();
        let fates = match side {
            Side::Base => [Fate::Kept, Fate::Kept, Fate::Kept, Fate::Kept],
            Side::Pr => [Fate::Kept, Fate::Reset, Fate::TimedOut, Fate::Kept],
        };
        let detail = |f| match f {
            Fate::Reset => "request 9 needed a new connection (during the change)",
            Fate::TimedOut => "request 31 timed out (after the change)",
            _ => "40 requests on one connection",
        };
        let conns = fates
            .iter()
            .zip(pods.iter().cycle())
            .enumerate()
            .map(|(i, (f, p))| HeldConn {
                source: p.clone(),
                via: if i % 2 == 0 { Via::Lb } else { Via::ClusterIp },
                addr: if i % 2 == 0 {
                    "172.18.255.200:8080"
                } else {
                    "10.96.41.7:8080"
                }
                .into(),
                fate: *f,
                detail: Some(detail(*f).into()),
            })
            .collect();
        apply_sync(
            &mut st,
            Msg::Backend(Event::Held {
                side,
                change: Change::Swap,
                conns,
            }),
        );
    }
    for (w, h) in SIZES {
        let t = screen(&mut st, w, h);
        let text = text_of(&t);
        assert!(text.contains("4 kept"), "{text}");
        assert!(text.contains("2 kept, 1 reset, 1 timed out"), "{text}");
        if h >= 60 {
            // Room under the rows: the section with each connection not kept.
            assert!(
                text.contains("held across swap: 2 kept, 1 reset, 1 timed out"),
                "{text}"
            );
            assert!(text.contains("reset netshoot-worker → ClusterIP"), "{text}");
        }
        insta::assert_snapshot!(format!("screen_held_{w}x{h}"), t.backend());
    }
    names_whole_at_six_sizes(&mut st);
}

/// The state tests/fixtures/tries/flaky.jsonl leads to: the demo (each probe tried 5 times),
/// then 30 tries from netshoot on worker2: the base answers all, the PR 20 of 30 from 2 of its
/// 3 endpoints, about three times slower.
fn flaky_state() -> State {
    let text = std::fs::read_to_string(common::fixture("tries/flaky.jsonl")).unwrap();
    let rec = recording::parse(&text, "flaky.jsonl").unwrap();
    let mut st = State::new();
    for r in rec.records {
        apply_sync(&mut st, Msg::Tick(Duration::from_millis(r.t)));
        apply_sync(&mut st, Msg::Backend(r.event));
    }
    st
}

fn probes_pane(st: &State, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| ui::render_pane(f, Pane::Probes, f.area(), st, &Theme::new(true)))
        .unwrap();
    t
}

/// Repeated probes in the Probes pane: passes/N, FLAKY as its own outcome (its expectation
/// neither met nor missed: ◐), p50/p99 connect and total per row, each side's latency after its
/// heading, the PR row slower than the factor times the base's marked ▲ (not with a larger
/// factor), and under the table the flaky row's endpoint spread; the cursor's row when it was
/// tried more than once. Pod names stay whole at every usual size.
#[test]
fn probes_pane_shows_repeated_tries() {
    let mut st = flaky_state();
    let t = probes_pane(&st, 200, 30);
    let text = text_of(&t);
    for want in [
        "TRIES",
        "CONNECT",
        "TOTAL",
        "20/30",
        "30/30",
        "FLAKY",
        "OK ◐",
        "14/31ms ▲",
        "p50/p99 connect 3.2/7.8ms total 12/31ms",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
    // Under the PR table, wrapped: the flaky row's tries and the endpoints that answered.
    let head = text.lines().nth(1).unwrap();
    let x = head[..head.find("77523 (PR)").unwrap()].chars().count();
    let pr_half: Vec<String> = text
        .lines()
        .map(|l| l.chars().skip(x).collect::<String>())
        .map(|l| l.trim_end_matches('│').to_string())
        .collect();
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let spread = "netshoot-worker2: 20/30 answered, 10 timed out · 2/3 endpoints answered in 30 \
                  tries: echo-worker 10, echo-worker2 10";
    assert!(words(&pr_half.join(" ")).contains(spread), "{text}");
    insta::assert_snapshot!("pane_probes_flaky_200x30", t.backend());
    for (w, h) in SIZES {
        let t = probes_pane(&st, w, h);
        insta::assert_snapshot!(format!("pane_probes_flaky_{w}x{h}"), t.backend());
    }
    names_whole_at_six_sizes(&mut st);
    // The cursor's row, tried 30 times.
    st.focus = Some(Pane::Probes);
    st.probe_cursor = kindred::app::state::ProbeCursor {
        side: kindred::model::Side::Base,
        row: 2,
    };
    let text = text_of(&probes_pane(&st, 200, 30));
    assert!(
        text.contains(
            "netshoot-worker2: 30/30 answered · 1/1 endpoints answered in 30 tries: echo-worker2 30"
        ),
        "{text}"
    );
    // A factor the PR side stays under: nothing marked.
    st.latency_factor = kindred::model::Factor(10.0);
    let text = text_of(&probes_pane(&st, 200, 30));
    assert!(!text.contains('▲') && text.contains("14/31ms "), "{text}");
}

/// An endpoint's name comes from the network: the spread shows its control characters as
/// visible escapes, never raw.
#[test]
fn an_endpoints_name_reaches_the_screen_visible_only() {
    use kindred::backend::event::{Event, ProbeResult};
    use kindred::model::Side;
    let mut st = flaky_state();
    let r: ProbeResult = serde_json::from_value(serde_json::json!({
        "source": "netshoot-77523-worker",
        "target": "172.17.254.1:8080",
        "outcome": "flaky",
        "tries": [
            {"outcome": "ok", "http_status": 200, "connect_us": 100, "total_us": 900,
             "endpoint": "evil\u{1b}[2Jname"},
            {"outcome": "fail"}
        ]
    }))
    .unwrap();
    apply_sync(
        &mut st,
        Msg::Backend(Event::Probe {
            side: Side::Pr,
            result: r,
        }),
    );
    st.focus = Some(Pane::Probes);
    st.probe_cursor = kindred::app::state::ProbeCursor {
        side: Side::Pr,
        row: 1,
    };
    let t = probes_pane(&st, 200, 30);
    let text = text_of(&t);
    assert!(text.contains("evil\\x1b[2Jname 1"), "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");
}

/// The demo's nodes with kube-proxy metrics from the fixtures: the base's workers in iptables
/// mode, the PR's in nftables mode (its sync p99 16.38 s against 102.4 ms, 4 failures against
/// 2), the base's control plane silent.
fn with_metrics(st: &mut State) {
    use kindred::backend::event::{Event, MetricsRead};
    use kindred::backend::metrics::ProxyMetrics;
    use kindred::model::Side;
    let read = |f: &str, now_ms: u64| {
        let text = std::fs::read_to_string(common::fixture(&format!("metrics/{f}"))).unwrap();
        MetricsRead::Read(ProxyMetrics::of(&text, now_ms).unwrap())
    };
    let mut send = |side, node: &str, read| {
        let node = node.to_string();
        apply_sync(st, Msg::Backend(Event::ProxyMetrics { side, node, read }));
    };
    for n in ["master-worker", "master-worker2"] {
        send(Side::Base, n, read("iptables.txt", 1_765_036_805_123));
    }
    for n in ["77523-control-plane", "77523-worker", "77523-worker2"] {
        send(Side::Pr, n, read("nftables.txt", 1_765_036_800_500));
    }
    let why = "master-control-plane: kube-proxy's metrics at http://127.0.0.1:10249/metrics did \
               not answer (curl exited 7): curl: (7) Failed to connect to 127.0.0.1 port 10249";
    send(
        Side::Base,
        "master-control-plane",
        MetricsRead::Failed(why.into()),
    );
}

/// `m`: kube-proxy's numbers per node side by side, the PR's worse flagged, the silent node
/// named; `m` reads them again; Esc closes; `M` is mouse capture now.
#[test]
fn metrics_overlay_side_by_side() {
    let mut st = demo_state(u64::MAX);
    with_metrics(&mut st);
    let sent = apply_sync(&mut st, key('m'));
    assert_eq!(sent, vec![kindred::backend::Command::RefreshRules]);
    for (w, h) in SIZES {
        let t = screen(&mut st, w, h);
        let text = text_of(&t);
        assert!(
            text.contains("⚠ PR sync p99 > 2x base; PR more sync failures"),
            "{text}"
        );
        assert!(
            text.contains("102.4ms") && text.contains("16.38s"),
            "{text}"
        );
        assert!(text.contains("not read (below)"), "{text}");
        insta::assert_snapshot!(format!("metrics_{w}x{h}"), t.backend());
    }
    press(&mut st, crossterm::event::KeyCode::Esc);
    assert!(!st.metrics.open);
    let capture = st.mouse_capture;
    apply_sync(&mut st, key('M'));
    assert_ne!(st.mouse_capture, capture);
    assert!(!st.metrics.open);
}
