//! The dashboard's UI loop: a full frame of a busy state at 200x60 (goal: under 1 ms), and
//! update + render when a 140k-line rule dump arrives (goal: the UI loop never blocks longer than
//! 16 ms; parsing and diffing run on a blocking thread, timed here separately).

use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use kindred::app::State;
use kindred::app::update::{Effect, Msg, update};
use kindred::backend::event::*;
use kindred::backend::recording;
use kindred::model::*;
#[allow(dead_code)] // the nftables generator is the rules bench's
#[path = "../tests/common/synth.rs"]
mod synth;
use synth::{Spec, dump};
#[path = "../tests/common/headless.rs"]
#[allow(dead_code)]
mod headless;
use headless::apply_sync;
use kindred::app::diffs::compute;
use kindred::ui::{self, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn busy_state() -> State {
    let rec = recording::parse(kindred::cli::DEMO_RECORDING, "demo").unwrap();
    let mut st = State::new();
    for r in rec.records {
        apply_sync(&mut st, Msg::Tick(Duration::from_millis(r.t)));
        apply_sync(&mut st, Msg::Backend(r.event));
    }
    // Work running on both sides: spinners, build output, probes in flight, many results.
    for side in Side::BOTH {
        update(
            &mut st,
            Msg::Backend(Event::Phase {
                side,
                phase: Phase::Build,
                state: PhaseState::Running,
            }),
        );
        for i in 0..200 {
            update(
                &mut st,
                Msg::Backend(Event::Output {
                    side,
                    phase: Phase::Build,
                    line: format!(
                        "+++ [1126 10:02:{:02}] Building go targets for linux/amd64 step {i}",
                        i % 60
                    ),
                }),
            );
        }
        update(
            &mut st,
            Msg::Backend(Event::ProbesStarted {
                side,
                target: "lb".into(),
            }),
        );
        for i in 0..40 {
            update(
                &mut st,
                Msg::Backend(Event::Probe {
                    side,
                    result: ProbeResult {
                        source: format!("pod-{i}"),
                        target: "lb".into(),
                        outcome: if i % 3 == 0 {
                            Outcome::Timeout
                        } else {
                            Outcome::Ok
                        },
                        http_status: Some(200),
                        latency_ms: Some(3),
                        detail: None,
                        scenario_target: None,
                        tries: Vec::new(),
                        ready_endpoints: None,
                    },
                }),
            );
        }
    }
    st.size = (200, 60);
    st
}

fn bench(c: &mut Criterion) {
    let theme = Theme::new(true);
    let st = busy_state();
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    c.bench_function("render full frame, busy state, 200x60", |b| {
        b.iter(|| {
            term.draw(|f| ui::render(f, &st, &theme)).unwrap();
        })
    });

    // A new 140k-line dump for the PR side's worker arrives.
    let big = dump(&Spec {
        services: 10_000,
        seed: 5,
        change: true,
        ..Spec::default()
    });
    let base_big = dump(&Spec {
        services: 10_000,
        seed: 4,
        ..Spec::default()
    });
    let mut st2 = busy_state();
    // Both sides have big dumps for "worker"; the diff is for ns0/svc0.
    if let Some(s) = st2.session.as_mut() {
        s.service = "ns0/svc0".parse().unwrap();
    }
    apply_sync(
        &mut st2,
        Msg::Backend(Event::RuleDump {
            side: Side::Base,
            node: "master-worker".into(),
            text: base_big.clone(),
            at_ms: None,
        }),
    );
    let mut g = c.benchmark_group("rule dump arrives (140k lines)");
    g.sample_size(20);
    let mut n = 0u64;
    g.bench_function("UI loop: update + render", |b| {
        b.iter_batched(
            || {
                n += 1;
                // A different dump each time (one more line), so the update really changes state.
                let mut t = big.clone();
                t.push_str(&format!("# refresh {n}\n"));
                t
            },
            |text| {
                st2.diff.pending = None;
                let out = update(
                    &mut st2,
                    Msg::Backend(Event::RuleDump {
                        side: Side::Pr,
                        node: "77523-worker".into(),
                        text,
                        at_ms: None,
                    }),
                );
                assert!(
                    out.effects
                        .iter()
                        .any(|e| matches!(e, Effect::ComputeDiff(_)))
                );
                term.draw(|f| ui::render(f, &st2, &theme)).unwrap();
                out
            },
            BatchSize::LargeInput,
        )
    });
    let req = {
        st2.diff.pending = None;
        st2.diff.result_for = None;
        match kindred::app::update::diff_request(&mut st2) {
            Some(r) => r,
            None => panic!("no diff request"),
        }
    };
    g.bench_function("off the UI loop: parse both + compare one service", |b| {
        b.iter(|| compute(&req).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
