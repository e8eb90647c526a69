//! What each probe's rules predict: the probe as the first packet of a connection, traced
//! through the kube-proxy rules of the node its source pod runs on ([`crate::rules::trace`]).
//!
//! A probe is made a packet from what the backend reported (all of it events, so a recording
//! replays the same predictions): the source pod's node and whether it is hostNetwork (`host`:
//! locally originated, from the node's address; `pod`: from the pod's IP, through prerouting),
//! the address the probe curls, the node's address (its `local` addresses) and that node's
//! latest rule dump. Computed off the UI loop by the driver ([`super::Effect::Predict`]);
//! `check` computes the same synchronously for its reports.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use super::state::SideState;
use crate::model::{Outcome as Observed, Side};
use crate::rules::mixed::OneDump;
use crate::rules::packets::Outcome;
use crate::rules::trace::{Origin, Packet, Proto, Step, Trace, Tracer, Verdict};

/// A probe: (source pod, target as probed, e.g. `172.18.255.200:8080`).
pub type ProbeKey = (String, String);

/// One probe as a packet on its source pod's node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInput {
    pub key: ProbeKey,
    pub node: String,
    pub packet: Packet,
}

/// What the rules say of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    pub outcome: Outcome,
    /// The whole trace (its path is what Enter on a probe row shows).
    pub trace: Arc<Trace>,
    /// The node whose rules were traced.
    pub node: String,
}

/// A prediction, or why there is none (no rules read from the node yet, no pod IP, a target
/// that is not an IPv4 address, a dump that does not parse).
pub type Predicted = Result<Prediction, String>;

impl Prediction {
    pub fn new(trace: Trace, node: &str) -> Prediction {
        Prediction {
            outcome: Outcome::of(&trace),
            trace: Arc::new(trace),
            node: node.to_string(),
        }
    }

    /// The PREDICT column: the verdict and, for a drop or reject, the base chain that decided it
    /// (`dnat`, `drop filter-output`, `drop filter/OUTPUT`, `accept`, `unknown`).
    pub fn label(&self) -> String {
        let v = self.outcome.verdict.name();
        match (self.outcome.verdict, &self.outcome.hook_chain) {
            (Verdict::Drop | Verdict::Reject, Some(h)) => format!("{v} {h}"),
            _ => v.to_string(),
        }
    }

    /// Whether the rules say the probe gets through: a DNAT does, a drop or reject does not.
    /// `None` for accept (no rule of kube-proxy's changed the packet: where it goes is the
    /// network's business) and unknown (a rule the tracer cannot evaluate).
    pub fn reaches(&self) -> Option<bool> {
        match self.outcome.verdict {
            Verdict::Dnat => Some(true),
            Verdict::Drop | Verdict::Reject => Some(false),
            Verdict::Accept | Verdict::Unknown => None,
        }
    }

    /// Whether an outcome (observed or expected) contradicts this prediction.
    pub fn contradicts(&self, o: Observed) -> bool {
        match self.reaches() {
            Some(true) => o != Observed::Ok,
            Some(false) => o == Observed::Ok,
            None => false,
        }
    }

    /// The rule that decided the verdict (the DNAT, or the drop), when a rule did.
    pub fn deciding_step(&self) -> Option<&Step> {
        let line = self.outcome.line?;
        let chain = self.outcome.chain.as_deref()?;
        self.trace
            .path
            .iter()
            .rev()
            .find(|s| s.line == line && s.chain == chain)
    }

    /// The deciding rule in words: `NODE line N, CHAIN: RULE`.
    pub fn deciding_rule(&self) -> Option<String> {
        self.deciding_step().map(|s| {
            format!(
                "{} line {}, {}: {}",
                self.node,
                s.line,
                s.chain,
                crate::rules::render::visible(&s.rule)
            )
        })
    }
}

/// What one side's predictions are computed from: each probe's input (or why it has none) and
/// the dumps of the nodes they run on.
#[derive(Debug, Clone)]
pub struct PredictRequest {
    pub side: Side,
    /// Which request this is: an answer to an older one is dropped.
    pub id: u64,
    pub inputs: Vec<Result<ProbeInput, (ProbeKey, String)>>,
    pub dumps: BTreeMap<String, Arc<str>>,
}

impl PredictRequest {
    /// The same probes from the same dumps (dumps compared by identity: a new dump is a new
    /// `Arc`).
    pub fn same_inputs(&self, o: &PredictRequest) -> bool {
        self.side == o.side
            && self.inputs == o.inputs
            && self.dumps.len() == o.dumps.len()
            && self
                .dumps
                .iter()
                .zip(&o.dumps)
                .all(|((n, a), (m, b))| n == m && Arc::ptr_eq(a, b))
    }
}

impl PartialEq for PredictRequest {
    fn eq(&self, o: &PredictRequest) -> bool {
        self.id == o.id && self.same_inputs(o)
    }
}

/// The request for a side's probes as the state knows them now (`id` 0: the caller numbers it).
pub fn request(s: &SideState, side: Side) -> PredictRequest {
    let mut dumps = BTreeMap::new();
    let inputs = s
        .probes
        .keys()
        .map(|key| {
            let input = input(s, key).map_err(|why| (key.clone(), why))?;
            if let Some(d) = s.dumps.get(&input.node) {
                dumps.insert(input.node.clone(), d.clone());
            }
            Ok(input)
        })
        .collect();
    PredictRequest {
        side,
        id: 0,
        inputs,
        dumps,
    }
}

/// One probe as a packet: from its source pod, on that pod's node, to the target's address.
fn input(s: &SideState, key: &ProbeKey) -> Result<ProbeInput, String> {
    let (source, target) = key;
    let pod = s
        .pods
        .get(source)
        .ok_or_else(|| format!("pod {source} is not known"))?;
    let node_ip = s
        .nodes
        .iter()
        .find(|n| n.name == pod.node)
        .and_then(|n| n.ip.as_deref())
        .ok_or_else(|| format!("node {} has no address yet", pod.node))?;
    let node_ip: Ipv4Addr = node_ip
        .parse()
        .map_err(|_| format!("node {}'s address {node_ip} is not IPv4", pod.node))?;
    let (dst, dport) = target_addr(target)?;
    let (src, from) = if pod.host_network {
        (node_ip, Origin::Host)
    } else {
        let ip = pod
            .ip
            .as_deref()
            .ok_or_else(|| format!("pod {source} has no IP yet"))?;
        let ip = ip
            .parse()
            .map_err(|_| format!("pod {source}'s IP {ip} is not IPv4"))?;
        (ip, Origin::Pod)
    };
    Ok(ProbeInput {
        key: key.clone(),
        node: pod.node.clone(),
        packet: Packet {
            src,
            dst,
            dport,
            sport: 40000,
            proto: Proto::Tcp,
            from,
            local_ips: vec![node_ip],
        },
    })
}

/// The IPv4 address and port a probe target curls: `IP:PORT`, or a URL (`http://IP[:PORT]/…`,
/// port 80 or 443 by scheme).
pub fn target_addr(target: &str) -> Result<(Ipv4Addr, u16), String> {
    let (rest, default_port) = if let Some(r) = target.strip_prefix("http://") {
        (r, Some(80))
    } else if let Some(r) = target.strip_prefix("https://") {
        (r, Some(443))
    } else {
        (target, None)
    };
    let hostport = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    };
    let ip: Ipv4Addr = host
        .parse()
        .map_err(|_| format!("target {target}: {host} is not an IPv4 address"))?;
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| format!("target {target}: {p} is not a port"))?,
        None => default_port.ok_or_else(|| format!("target {target} names no port"))?,
    };
    Ok((ip, port))
}

/// Trace every probe of a request through its node's rules (each dump parsed once).
pub fn compute(req: &PredictRequest) -> BTreeMap<ProbeKey, Predicted> {
    let mut out = BTreeMap::new();
    let mut by_node: BTreeMap<&str, Vec<&ProbeInput>> = BTreeMap::new();
    for i in &req.inputs {
        match i {
            Ok(i) => by_node.entry(i.node.as_str()).or_default().push(i),
            Err((k, why)) => {
                out.insert(k.clone(), Err(why.clone()));
            }
        }
    }
    for (node, inputs) in by_node {
        let Some(text) = req.dumps.get(node) else {
            for i in inputs {
                out.insert(i.key.clone(), Err(format!("no rules read from {node} yet")));
            }
            continue;
        };
        match OneDump::parse(text.to_string()) {
            Ok(dump) => {
                let tracer = Tracer::new(&dump);
                for i in inputs {
                    let p = Prediction::new(tracer.trace(&i.packet), node);
                    out.insert(i.key.clone(), Ok(p));
                }
            }
            Err(e) => {
                for i in inputs {
                    out.insert(i.key.clone(), Err(format!("rules of {node}: {e}")));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::State;
    use crate::app::update::{Effect, Msg, update};
    use crate::backend::event::{Event, PodInfo, ProbeResult};
    use crate::model::{NodeRole, PodPhase};

    const MASTER: &str = include_str!("../../tests/fixtures/trace/kernel/iptables-2019-master.txt");

    fn pod(name: &str, host: bool, ip: &str) -> PodInfo {
        PodInfo {
            name: name.into(),
            node: "master-worker".into(),
            host_network: host,
            ip: Some(ip.into()),
            phase: PodPhase::Running,
            restarts: 0,
        }
    }

    /// The walkthrough's worker: its node address, a hostNetwork and an overlay pod, its rules
    /// and a probe from each to the LB.
    fn events() -> Vec<Event> {
        let side = Side::Base;
        let probe = |src: &str| Event::Probe {
            side,
            result: ProbeResult::bare(src, "172.17.255.1:8080", Observed::Timeout),
        };
        vec![
            Event::Node {
                side,
                name: "master-worker".into(),
                role: NodeRole::Worker,
                ip: Some("172.17.0.3".into()),
            },
            Event::Pod {
                side,
                pod: pod("netshoot-master-worker", true, "172.17.0.3"),
            },
            Event::Pod {
                side,
                pod: pod("overlay-master-worker", false, "10.244.1.3"),
            },
            probe("netshoot-master-worker"),
            probe("overlay-master-worker"),
            Event::RuleDump {
                side,
                node: "master-worker".into(),
                text: MASTER.into(),
                at_ms: None,
            },
        ]
    }

    fn predicts(effects: &[Effect]) -> Vec<PredictRequest> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Predict(r) => Some((**r).clone()),
                _ => None,
            })
            .collect()
    }

    /// The host's probe is dropped in filter OUTPUT (KUBE-FIREWALL after KUBE-MARK-DROP); the
    /// overlay pod's is marked in prerouting but forwarded (1.14 had no drop in FORWARD).
    #[test]
    fn a_probe_is_traced_from_its_pods_node_as_host_or_pod() {
        let mut st = State::new();
        let mut sent = Vec::new();
        for e in events() {
            sent.extend(predicts(&update(&mut st, Msg::Backend(e)).effects));
        }
        let last = sent.last().expect("a prediction request").clone();
        assert_eq!(last.dumps.len(), 1);
        let got = compute(&last);
        let host = got[&("netshoot-master-worker".into(), "172.17.255.1:8080".into())]
            .as_ref()
            .unwrap();
        assert_eq!(host.label(), "drop filter/OUTPUT");
        assert!(host.deciding_rule().unwrap().contains("KUBE-FIREWALL"));
        assert_eq!(host.reaches(), Some(false));
        assert!(!host.contradicts(Observed::Timeout));
        assert!(host.contradicts(Observed::Ok));
        let pod = got[&("overlay-master-worker".into(), "172.17.255.1:8080".into())]
            .as_ref()
            .unwrap();
        assert_eq!(
            pod.trace.path[0].hook,
            crate::rules::trace::Hook::Prerouting
        );
        // The answer is kept; an older request's is not.
        update(
            &mut st,
            Msg::Predicted {
                side: Side::Base,
                id: last.id - 1,
                result: BTreeMap::new(),
            },
        );
        assert!(st.side(Side::Base).predictions.is_empty());
        let r = update(
            &mut st,
            Msg::Predicted {
                side: Side::Base,
                id: last.id,
                result: got,
            },
        );
        assert!(r.redraw);
        assert_eq!(st.side(Side::Base).predictions.len(), 2);
    }

    /// A repeated probe result or the same dump again asks for nothing; a new pod IP does.
    #[test]
    fn predictions_are_asked_for_only_when_their_inputs_change() {
        let mut st = State::new();
        for e in events() {
            update(&mut st, Msg::Backend(e));
        }
        for e in events() {
            let r = update(&mut st, Msg::Backend(e));
            assert!(predicts(&r.effects).is_empty());
        }
        let moved = Event::Pod {
            side: Side::Base,
            pod: pod("overlay-master-worker", false, "10.244.1.9"),
        };
        let sent = predicts(&update(&mut st, Msg::Backend(moved)).effects);
        assert_eq!(sent.len(), 1);
    }

    /// Without the node's rules, a pod IP or an IPv4 target, a probe says why it has no
    /// prediction.
    #[test]
    fn a_probe_without_what_it_needs_says_what_is_missing() {
        let mut st = State::new();
        let evs = events();
        for e in &evs[..5] {
            update(&mut st, Msg::Backend(e.clone()));
        }
        let got = compute(&request(st.side(Side::Base), Side::Base));
        let why = got[&("netshoot-master-worker".into(), "172.17.255.1:8080".into())]
            .as_ref()
            .unwrap_err();
        assert_eq!(why, "no rules read from master-worker yet");
    }

    #[test]
    fn targets_are_addresses_or_urls() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert_eq!(
            target_addr("172.18.255.200:8080"),
            Ok((ip("172.18.255.200"), 8080))
        );
        assert_eq!(target_addr("http://10.0.0.1/x"), Ok((ip("10.0.0.1"), 80)));
        assert_eq!(
            target_addr("https://10.0.0.1:8443/x?y"),
            Ok((ip("10.0.0.1"), 8443))
        );
        assert!(target_addr("echo.default:80").unwrap_err().contains("IPv4"));
        assert!(target_addr("10.0.0.1").unwrap_err().contains("no port"));
    }
}
