//! A recording whose predictions and packet summary are known: kube-proxy's nftables rules
//! before and after PR 132456 (tests/fixtures/trace/kernel/nftables-overall-v1.3{3,4}.txt, node
//! 192.168.0.2, pod CIDR 10.0.0.0/8), Service ns2/svc2 (eTP=Local, LB 1.2.3.4:80, no local
//! endpoint). Two probing pods on each side's worker:
//! - `netshoot-C-worker`, hostNetwork: base times out (filter-output drops it: predicted
//!   `drop filter-output`), PR gets through (`dnat`); both as expected.
//! - `client-C-worker`, a pod at 10.0.0.7 (short-circuited: `dnat` on both sides): base times
//!   out all the same (a dataplane surprise: observed vs predicted) and the base expectation says
//!   FAIL (a wrong expectation: expected vs predicted); PR gets through, as expected.
//!
//! Every expectation holds (the verdict is expected vs observed).

use kindred::backend::event::Event;
use kindred::backend::recording::{self, Record, Recording};
use serde_json::json;

/// The clusters' names (base, PR).
pub const CLUSTERS: [&str; 2] = ["b133", "p134"];

pub fn dump(side: usize) -> String {
    let f = ["nftables-overall-v1.33.txt", "nftables-overall-v1.34.txt"][side];
    std::fs::read_to_string(super::fixture(&format!("trace/kernel/{f}"))).unwrap()
}

fn ev(v: serde_json::Value) -> Event {
    serde_json::from_value(v).expect("a valid event")
}

/// The recording (see the module's doc).
pub fn recording() -> Recording {
    let [b, p] = CLUSTERS;
    let side = |n: &str| json!({"name": n, "git_ref": n, "image": format!("kindred/node:{n}")});
    let mut events = vec![ev(json!({
        "type": "session",
        "base": side(b),
        "pr": side(p),
        "service": "ns2/svc2",
        "probe_target": "lb",
        "expectations": [
            {"side": "base", "source": format!("netshoot-{b}-worker"), "outcome": "fail"},
            {"side": "pr", "source": format!("netshoot-{p}-worker"), "outcome": "ok"},
            {"side": "base", "source": format!("client-{b}-worker"), "outcome": "fail"},
            {"side": "pr", "source": format!("client-{p}-worker"), "outcome": "ok"},
        ],
    }))];
    for (i, (s, c)) in [("base", b), ("pr", p)].into_iter().enumerate() {
        let worker = format!("{c}-worker");
        events.push(ev(
            json!({"type": "node", "side": s, "name": format!("{c}-control-plane"),
            "role": "control-plane", "ip": "192.168.0.1"}),
        ));
        events.push(ev(
            json!({"type": "node", "side": s, "name": worker, "role": "worker",
            "ip": "192.168.0.2"}),
        ));
        for (pod, host, ip) in [
            (format!("netshoot-{c}-worker"), true, "192.168.0.2"),
            (format!("client-{c}-worker"), false, "10.0.0.7"),
        ] {
            events.push(ev(
                json!({"type": "pod", "side": s, "pod": {"name": pod, "node": worker,
                "host_network": host, "ip": ip, "phase": "Running", "restarts": 0}}),
            ));
        }
        events.push(ev(
            json!({"type": "service", "side": s, "service": {"name": "ns2/svc2",
            "lb_ip": "1.2.3.4", "port": 80, "external_traffic_policy": "Local"}}),
        ));
        events.push(ev(
            json!({"type": "rule_dump", "side": s, "node": worker, "text": dump(i)}),
        ));
        events.push(ev(
            json!({"type": "probes_started", "side": s, "target": "lb 1.2.3.4:80"}),
        ));
        let through = s == "pr";
        for pod in [format!("netshoot-{c}-worker"), format!("client-{c}-worker")] {
            let (outcome, status) = if through {
                ("ok", json!(200))
            } else {
                ("timeout", json!(null))
            };
            events.push(ev(
                json!({"type": "probe", "side": s, "result": {"source": pod,
                "target": "1.2.3.4:80", "outcome": outcome, "http_status": status,
                "latency_ms": 3, "detail": null, "scenario_target": "lb"}}),
            ));
        }
        events.push(ev(json!({"type": "probes_done", "side": s})));
    }
    let records = events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Record {
            t: i as u64 * 10,
            event,
        })
        .collect();
    Recording {
        header: recording::Header {
            format: recording::FORMAT.into(),
            version: recording::VERSION,
            kindred: None,
            note: Some("PR 132456's nftables rules, ns2/svc2".into()),
        },
        records,
        skipped: 0,
        complete: true,
    }
}
