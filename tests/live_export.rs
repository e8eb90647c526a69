//! Two clusters created at once: both contexts reach the user's kubeconfig although kind's
//! `export kubeconfig` takes the file's lock with no retry (the stand-in holds it a while, as a
//! slow merge would); each cluster's own kubeconfig file, which kind writes at create, holds its
//! API server's TLS data. Ignored by plain `cargo test`.

mod common;
use common::*;

use kindred::backend::event::Event;
use kindred::backend::live::LiveBackend;
use kindred::backend::{Backend, Command};
use kindred::model::{Job, Phase, PhaseState, ProxyMode, Side};
use kindred::scenario::Scenario;

#[test]
#[ignore = "needs a Docker engine (CI starts one)"]
fn two_clusters_created_at_once_both_export_their_context() {
    image();
    let pid = std::process::id();
    let (base, pr) = (format!("xb{pid}"), format!("xp{pid}"));
    let network = format!("kindred-export-{pid}");
    network_create(&network, &[]);
    let _cleanup = Cleanup {
        clusters: vec![base.clone(), pr.clone()],
        network: network.clone(),
    };
    let tmp = tempfile::tempdir().unwrap();
    let user_kc = tmp.path().join("user-kubeconfig");
    // SAFETY: single test in this binary; the state dir and kubeconfig come from the environment.
    unsafe {
        std::env::set_var("XDG_STATE_HOME", tmp.path().join("state"));
        std::env::set_var("KUBECONFIG", &user_kc);
    }
    let user_text = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://work.example:6443\n  name: work\ncontexts:\n- context:\n    cluster: work\n    user: me\n  name: work\ncurrent-context: work\nkind: Config\npreferences: {}\nusers:\n- name: me\n  user:\n    token: t\n";
    std::fs::write(&user_kc, user_text).unwrap();
    let kind = standin(tmp.path(), &network);
    // The two creates end together and each export holds the lock for 2 s: two exports at
    // once would collide.
    std::fs::write(tmp.path().join("create-together"), "2").unwrap();
    std::fs::write(tmp.path().join("export-hold"), "2").unwrap();

    let mut sc = Scenario::builtin();
    sc.base.name = base.clone();
    sc.pr.name = pr.clone();
    sc.cluster.proxy_mode = ProxyMode::Iptables;
    let mut backend = LiveBackend::new(sc, kind);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let servers = rt.block_on(async {
        let mut servers = Vec::new();
        for name in [&base, &pr] {
            let (server, _) = common::apiserver::Cluster {
                name: name.clone(),
                ..Default::default()
            }
            .serve()
            .await;
            tie(tmp.path(), name, &server);
            servers.push(server);
        }
        backend.start(tx);
        let (_, err) = until_finished(&mut rx, Job::Attach).await;
        assert_eq!(err, None);
        backend.send(Command::CreateClusters);
        let (ev, err) = until_finished(&mut rx, Job::Create).await;
        assert_eq!(err, None, "{ev:?}");
        for (side, name) in [(Side::Base, &base), (Side::Pr, &pr)] {
            let kept = format!("kubectl's current context still work; kind-{name} added");
            let said = |e: &Event| matches!(e, Event::Output { side: s, line, .. } if *s == side && *line == kept);
            assert!(ev.iter().any(said), "{side:?}: {ev:?}");
            assert!(ev.iter().any(|e| matches!(e, Event::Phase { side: s, phase: Phase::Create, state: PhaseState::Done } if *s == side)));
        }
        servers
    });
    // kind's create wrote each cluster's kubeconfig into the file kindred gave it: its API
    // server's address, CA, client certificate and key (kindred's client reads these).
    for (name, server) in [&base, &pr].into_iter().zip(&servers) {
        let path = kindred::backend::kubeconfig_path(name);
        let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
        assert_eq!(kc.current_context, Some(format!("kind-{name}")));
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server, Some(format!("https://{}", server.addr)));
        let ca = Some(common::apiserver::data(&server.pki.ca));
        assert_eq!(cluster.certificate_authority_data, ca);
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        let cert = Some(common::apiserver::data(&server.pki.client_cert));
        assert_eq!(user.client_certificate_data, cert);
    }
    // The two creates ran at once (both started before either exported), and both contexts are in.
    let argv = std::fs::read_to_string(tmp.path().join("argv.log")).unwrap();
    let lines: Vec<&str> = argv.lines().collect();
    let first_export = lines.iter().position(|l| l.starts_with("export|")).unwrap();
    let creates = lines
        .iter()
        .take(first_export)
        .filter(|l| l.starts_with("create|cluster|"))
        .count();
    assert_eq!(creates, 2, "{argv}");
    let after = std::fs::read_to_string(&user_kc).unwrap();
    let kc = kube::config::Kubeconfig::from_yaml(&after).unwrap();
    let mut contexts: Vec<&str> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
    contexts.sort();
    let (kb, kp) = (format!("kind-{base}"), format!("kind-{pr}"));
    assert_eq!(contexts, [kb.as_str(), kp.as_str(), "work"], "{after}");
    assert_eq!(kc.current_context.as_deref(), Some("work"));
    assert!(!tmp.path().join("user-kubeconfig.lock").exists());
    backend.shutdown();
}
