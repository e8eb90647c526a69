//! A cluster of many nodes with few distinct rule sets, for the grouped Diff pane and reports
//! (dev-only): each side's nodes read the kind fixtures' nftables rules of the built-in scenario
//! with their own node address.

use kindred::app::State;
use kindred::app::update::Msg;
use kindred::backend::event::{Event, SessionInfo};
use kindred::model::Side;

use super::headless::apply_sync;

/// The rule sets of one side: (without a local endpoint, with one, with another one).
fn rule_sets(side: &str) -> [String; 3] {
    let read = |f: &str| {
        std::fs::read_to_string(super::fixture(&format!("predict/builtin-{side}-{f}.nft"))).unwrap()
    };
    let (w, w2) = (read("worker"), read("worker2"));
    // The same Service with its endpoint on another pod: other rules.
    let moved = w2.replace("10.244.2.2", "10.244.3.2");
    [w, w2, moved]
}

/// A node's own copy of a rule set: its address in `nodeport-ips` (the fixtures' workers are
/// 172.18.0.3 and .4).
fn on_node(rules: &str, i: usize) -> String {
    let ip = format!("10.1.{}.{}", i / 250, i % 250 + 1);
    rules
        .replace(
            "elements = { 172.18.0.3 }",
            &format!("elements = {{ {ip} }}"),
        )
        .replace(
            "elements = { 172.18.0.4 }",
            &format!("elements = {{ {ip} }}"),
        )
}

/// Which rule set node `i` of `n` has: the first 60% the first, the next 30% the second, the
/// rest the third.
pub fn set_of(i: usize, n: usize) -> usize {
    if i < n * 6 / 10 {
        0
    } else if i < n * 9 / 10 {
        1
    } else {
        2
    }
}

pub fn session() -> Event {
    let info: SessionInfo = serde_json::from_value(serde_json::json!({
        "base": {"name": "base"},
        "pr": {"name": "pr"},
        "service": "default/echo",
        "probe_target": "lb",
    }))
    .unwrap();
    Event::Session(Box::new(info))
}

/// The session, then each side's `n` worker nodes' rule dumps (`base-node-000`,
/// `pr-node-000`, ...), in 3 rule sets; with `outlier`, the PR's last node has rules of its own.
pub fn events(n: usize, outlier: bool) -> Vec<Event> {
    let mut out = vec![session()];
    for (side, name) in [(Side::Base, "base"), (Side::Pr, "pr")] {
        let sets = rule_sets(name);
        for i in 0..n {
            let mut text = on_node(&sets[set_of(i, n)], i);
            if outlier && side == Side::Pr && i == n - 1 {
                text = text.replace("masquerade fully-random", "masquerade");
            }
            out.push(Event::RuleDump {
                side,
                node: format!("{name}-node-{i:03}"),
                text,
                at_ms: None,
            });
        }
    }
    out
}

/// The state [`events`] lead to.
pub fn state(n: usize, outlier: bool) -> State {
    let mut st = State::new();
    for ev in events(n, outlier) {
        apply_sync(&mut st, Msg::Backend(ev));
    }
    st
}
