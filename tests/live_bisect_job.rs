//! The bisect job on the live backend, beside tests/live_bisect.rs: what a cancel leaves (the
//! log, the steps done) and that a bisect again takes them from the cache; a bad ref that is
//! good stops the bisect; `--probe` for a source the scenario expects nothing of is judged
//! against what the good end showed. The Kubernetes-like repository, the stand-in kind and the
//! API server stand-in of tests/common/kuberepo.rs. Ignored by plain `cargo test` (needs Docker).

mod common;
use common::kuberepo::*;
use common::*;

use std::time::Duration;

use kindred::backend::bisect::cache::Cache;
use kindred::backend::bisect::{BisectEnd, BisectEvent, SkipReason, StepRole, StepVerdict};
use kindred::backend::event::Event;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Side};

/// One bisect at a time in this binary: its tests share a state dir, and the log is the last
/// bisect's.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Events until the first `Step`, and then for `quiet` after sending Cancel.
async fn cancel_after_first_step(
    backend: &mut kindred::backend::live::LiveBackend,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    quiet: Duration,
) -> Vec<Event> {
    let mut ev = Vec::new();
    loop {
        let e = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("a step")
            .expect("backend alive");
        let step = matches!(e, Event::Bisect(BisectEvent::Step(_)));
        ev.push(e);
        if step {
            break;
        }
    }
    backend.send(Command::Cancel);
    let end = tokio::time::Instant::now() + quiet;
    while let Ok(Some(e)) = tokio::time::timeout_at(end, rx.recv()).await {
        ev.push(e);
    }
    ev
}

/// Cancelled after its first step, the bisect sends nothing more of itself (no step, no end,
/// no Finished) and its log holds the request and that one step, no end. Asked again, the
/// step done comes from the cache and the bisect runs to its end.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_cancelled_bisect_keeps_its_log_and_a_bisect_again_reuses_its_steps() {
    let _one = one_at_a_time();
    let s = bisect_setup("c", 21);
    let kind = standin(&s.kind_dir, &s._cleanup.network);
    let r = &s.repo;
    runtime().block_on(async {
        let _server = serve_pr(&s).await;
        let (mut backend, mut rx) = attached(s.sc.clone(), kind).await;
        let req = request(r.m(UNBUILDABLE + 1), r.m(SWAP_LAST), 1);
        backend.send(Command::Bisect(Box::new(req.clone())));
        let ev = cancel_after_first_step(&mut backend, &mut rx, Duration::from_secs(15)).await;
        let steps: Vec<_> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Bisect(BisectEvent::Step(st)) => Some(st.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(steps.len(), 1, "{ev:#?}");
        assert_eq!(steps[0].role, StepRole::GoodEnd);
        assert!(
            !ev.iter().any(|e| matches!(e, Event::Bisect(BisectEvent::Done(_))
                | Event::Finished { job: Job::Bisect, .. })),
            "{ev:#?}"
        );
        let log = Cache::open(&Cache::default_dir())
            .unwrap()
            .read_log()
            .unwrap()
            .expect("the log stays");
        assert_eq!(log.request, req);
        assert_eq!(log.steps, steps);
        assert_eq!(log.end, None);

        let again = bisect(&mut backend, &mut rx, req).await;
        assert_eq!(again.error, None, "{again:#?}");
        let first = &again.steps[0];
        assert_eq!((first.role, first.cached, first.millis), (StepRole::GoodEnd, true, 0), "{again:#?}");
        assert!(again.steps[1..].iter().all(|st| !st.cached), "{again:#?}");
        assert!(
            matches!(&again.end, Some(BisectEnd::Found { first_bad, .. }) if first_bad.sha == r.m(BREAK)),
            "{again:#?}"
        );
        let log = Cache::open(&Cache::default_dir()).unwrap().read_log().unwrap().unwrap();
        assert_eq!(log.steps, again.steps);
        assert_eq!(log.end, again.end);
        backend.shutdown();
    });
}

/// A bad ref that is good stops the bisect after the two ends, saying so. With `--probe` for
/// a test pod the scenario expects nothing of, each step is judged against the good end's
/// outcome: merge 10 makes that pod's probe time out, and is found.
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_good_bad_end_stops_and_probe_judges_against_the_good_end() {
    let _one = one_at_a_time();
    let mut s = bisect_setup("p", 22);
    let host = format!("netshoot-{}-worker", s.sc.pr.name);
    // Nothing expected of the hostNetwork pod on worker of the PR side.
    s.sc.expect
        .retain(|e| !(e.side == Side::Pr && e.source == "netshoot-{{cluster}}-worker"));
    let kind = standin(&s.kind_dir, &s._cleanup.network);
    let r = &s.repo;
    runtime().block_on(async {
        let _server = serve_pr(&s).await;
        let (mut backend, mut rx) = attached(s.sc.clone(), kind).await;

        let run = bisect(&mut backend, &mut rx, request(r.m(1), r.m(3), 1)).await;
        assert_eq!(run.error, None, "{run:#?}");
        let verdicts: Vec<_> = run.steps.iter().map(|st| (st.role, st.verdict)).collect();
        assert_eq!(verdicts, [(StepRole::GoodEnd, StepVerdict::Good), (StepRole::BadEnd, StepVerdict::Good)]);
        match &run.end {
            Some(BisectEnd::Stopped { why }) => {
                assert!(why.starts_with(&format!("the bad ref {} (", r.m(3))) && why.ends_with("is good: nothing to bisect"), "{why}")
            }
            e => panic!("not stopped: {e:?}"),
        }

        let mut req = request(r.m(UNBUILDABLE + 1), r.m(SWAP_LAST), 1);
        req.probe = Some(host.clone());
        let run = bisect(&mut backend, &mut rx, req).await;
        assert_eq!(run.error, None, "{run:#?}");
        let Some(BisectEvent::Started { judge, .. }) = &run.started else { panic!("{run:#?}") };
        assert!(judge.contains(&host) && judge.contains("good end"), "{judge}");
        // The flaky merge troubles another pod: judged by this one, it is good.
        let picked: Vec<_> = run.steps.iter().map(|st| (r.which(&st.commit.sha).unwrap(), st.verdict)).collect();
        use StepVerdict::*;
        assert_eq!(picked, [(UNBUILDABLE + 1, Good), (SWAP_LAST, Bad), (BREAK, Bad), (FLAKY_AT, Good), (FLAKY_AT + 1, Good)], "{run:#?}");
        let broken = &run.steps[2];
        assert!(broken.why.as_deref().is_some_and(|w| w.starts_with(&format!("{host} → "))), "{broken:?}");
        assert!(matches!(&run.end, Some(BisectEnd::Found { first_bad, .. }) if first_bad.sha == r.m(BREAK)), "{run:#?}");
        backend.shutdown();
    });
}

/// A kube-proxy whose rollout does not finish is set back, and its step skipped, not blamed:
/// its cluster did not come up. At the good end that stops the bisect, saying so; such a step
/// is never cached (the next bisect tries it again).
#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn a_rollout_that_does_not_finish_skips_the_step_as_not_up() {
    let _one = one_at_a_time();
    let mut s = bisect_setup("n", 20);
    s.sc.build.rollout_timeout = 2.0;
    let proxy = format!("kindred-test-kube-proxy:bisectn{}", std::process::id());
    s.ds = std::sync::Arc::new(common::apiserver::ProxyDs::new(&proxy, false));
    let kind = standin(&s.kind_dir, &s._cleanup.network);
    let r = &s.repo;
    runtime().block_on(async {
        let _server = serve_pr(&s).await;
        let (mut backend, mut rx) = attached(s.sc.clone(), kind).await;
        for _ in 0..2 {
            let run = bisect(&mut backend, &mut rx, request(r.m(1), r.m(3), 1)).await;
            assert_eq!(run.error, None, "{run:#?}");
            let [st] = &run.steps[..] else {
                panic!("{run:#?}")
            };
            assert_eq!(
                (st.role, st.verdict, st.skip, st.cached),
                (
                    StepRole::GoodEnd,
                    StepVerdict::Skip,
                    Some(SkipReason::NotUp),
                    false
                )
            );
            let why = st.why.as_deref().unwrap_or("");
            assert!(
                why.contains(&format!("kube-proxy set back to {proxy}")),
                "{why}"
            );
            match &run.end {
                Some(BisectEnd::Stopped { why }) => assert!(
                    why.contains("cannot be judged (its cluster did not come up)"),
                    "{why}"
                ),
                e => panic!("not stopped: {e:?}"),
            }
        }
        backend.shutdown();
    });
}
