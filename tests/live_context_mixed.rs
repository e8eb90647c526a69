//! A mixed pair: a kind base beside a context PR. The context side goes its own way through its
//! API server whatever becomes of the kind side (here no Docker engine answers at DOCKER_HOST).

mod common;

use common::contexts::two_contexts;
use common::{in_process_state, until_finished};
use kindred::backend::Backend;
use kindred::backend::event::Event;
use kindred::backend::kind::Kind;
use kindred::backend::live::LiveBackend;
use kindred::model::{Job, Side};
use kindred::scenario::Scenario;

/// A mixed pair: a kind base and a context PR. The PR side is read through its API server on
/// its own, whatever happens to the kind side (here Docker does not answer: said, naming it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_base_and_a_context_pr_each_go_their_own_way() {
    in_process_state();
    // SAFETY: the only test of this binary, set before its backend starts.
    unsafe {
        std::env::set_var(
            "DOCKER_HOST",
            "unix:///nonexistent/kindred-test/docker.sock",
        )
    };
    let kind = Kind::new(std::path::PathBuf::from("/nonexistent/kind"));
    let t = two_contexts("", "").await;
    let text = std::fs::read_to_string(&t.scenario).unwrap().replace(
        "base:\n  name: staging\n  context: ctx-staging\n  kubeconfig: kc.yaml\n",
        "base:\n  name: kbase\n  source: .\n  ref: HEAD\n  image: kindred/kbase:latest\n",
    );
    assert!(text.contains("kbase"), "{text}");
    std::fs::write(&t.scenario, text).unwrap();
    let sc = Scenario::load(&t.scenario).unwrap();
    assert!(sc.context(Side::Base).is_none() && sc.context(Side::Pr).is_some());
    let mut backend = LiveBackend::new(sc, kind);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    backend.start(tx);
    let (ev, err) = until_finished(&mut rx, Job::Attach).await;
    let err = err.expect("the kind side's Docker does not answer");
    assert!(err.to_lowercase().contains("docker"), "{err}");
    let dumped: Vec<(Side, &str)> = ev
        .iter()
        .filter_map(|e| match e {
            Event::RuleDump { side, node, .. } => Some((*side, node.as_str())),
            _ => None,
        })
        .collect();
    assert!(dumped.contains(&(Side::Pr, "prod-worker")), "{ev:?}");
    assert!(dumped.iter().all(|(s, _)| *s == Side::Pr), "{dumped:?}");
    let session = ev.iter().find_map(|e| match e {
        Event::Session(s) => Some(s.clone()),
        _ => None,
    });
    if let Some(s) = session {
        assert_eq!(s.base.context, None);
        assert_eq!(s.pr.context.as_deref(), Some("ctx-prod"));
    }
    backend.shutdown();
}
