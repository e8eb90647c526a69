//! The kernel is the judge of the packet tracer. Each test loads a kube-proxy dump into a
//! network namespace that plays a node (with veth pairs to a pod's namespace, an endpoints'
//! namespace and an outside client's), makes real TCP connections to a Service from the pod,
//! from the node itself and from outside, and observes where each lands: which endpoint
//! answered (the listener replies with the address it was reached on and the peer it saw, so
//! masquerade shows), refused (REJECT: an ICMP port unreachable) or timed out (DROP). The
//! observation must be what the case expects, and what `kindred::rules::trace` says.
//!
//! Dumps: tests/fixtures/trace/kernel/ (each names its source). Needs root, iproute2, Debian's
//! iptables and nftables; ignored by plain `cargo test`, run by CI (--include-ignored).

mod common;
use common::netns::Netns;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use kindred::rules::mixed::OneDump;
use kindred::rules::trace::{Origin, Packet, Proto, Trace, Tracer, Verdict};

/// The node's address on its pod-side veths (as Calico does: one link-local gateway for all).
const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// How long a connection may take before it counts as dropped.
const TIMEOUT: Duration = Duration::from_millis(1500);

/// The addresses a dump was written for.
struct World {
    node: Ipv4Addr,
    /// An outside client, also the node's default gateway.
    outside: Ipv4Addr,
    pod: Ipv4Addr,
    /// Every endpoint's address (all live in one namespace, routed from the node).
    endpoints: &'static [Ipv4Addr],
    /// The ports the endpoints listen on.
    ports: &'static [u16],
}

/// The world of kube-proxy's TestOverall*Rules and TestExternalTrafficPolicyLocal.
const OVERALL: World = World {
    node: Ipv4Addr::new(192, 168, 0, 2),
    // Inside ns5/svc5's loadBalancerSourceRanges (203.0.113.0/25).
    outside: Ipv4Addr::new(203, 0, 113, 1),
    pod: Ipv4Addr::new(10, 0, 1, 5),
    endpoints: &[
        Ipv4Addr::new(10, 180, 0, 1),
        Ipv4Addr::new(10, 180, 0, 2),
        Ipv4Addr::new(10, 180, 0, 3),
        Ipv4Addr::new(10, 180, 0, 4),
        Ipv4Addr::new(10, 180, 0, 5),
        Ipv4Addr::new(10, 180, 2, 1),
    ],
    ports: &[80],
};

/// The world of the 2019 walkthrough of PR 77523 (kind on Docker's default bridge).
const BLOG_2019: World = World {
    node: Ipv4Addr::new(172, 17, 0, 3),
    outside: Ipv4Addr::new(172, 17, 0, 1),
    pod: Ipv4Addr::new(10, 244, 2, 5),
    endpoints: &[Ipv4Addr::new(10, 244, 1, 2)],
    ports: &[8080],
};

/// Where a connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    Pod,
    /// The node itself (a hostNetwork pod).
    Host,
    /// A client outside the cluster, through the node's uplink.
    Outside,
}

/// What the kernel did with a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// An endpoint answered: the address it was reached on, and the source it saw.
    Reached {
        endpoint: SocketAddrV4,
        peer: Ipv4Addr,
    },
    Refused,
    TimedOut,
}

/// What a case expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Reaches these endpoints (all of them, over enough tries); masqueraded or not.
    Dnat(&'static [&'static str], bool),
    Drop,
    Reject,
}

/// How a dump is loaded.
#[derive(Debug, Clone, Copy)]
enum Loader {
    IptablesNft,
    IptablesLegacy,
    Nft,
    /// knftables' transaction format (`add chain ...`, `add rule ...`), as kube-proxy's unit
    /// tests write it: declarations first, since one `nft -f` wants a chain before a rule that
    /// goes to it.
    NftTransaction,
}

/// A node's namespace with a pod, the endpoints and an outside client wired to it.
struct Lab {
    node: Netns,
    pod: Netns,
    ep: Netns,
    out: Netns,
    world: &'static World,
    stop: Arc<AtomicBool>,
    listeners: Vec<JoinHandle<()>>,
}

impl Lab {
    fn new(tag: &str, world: &'static World) -> Lab {
        let lab = Lab {
            node: Netns::new(&format!("{tag}-node")),
            pod: Netns::new(&format!("{tag}-pod")),
            ep: Netns::new(&format!("{tag}-ep")),
            out: Netns::new(&format!("{tag}-out")),
            world,
            stop: Arc::new(AtomicBool::new(false)),
            listeners: Vec::new(),
        };
        lab.wire();
        lab
    }

    fn wire(&self) {
        let (w, node) = (self.world, &self.node);
        for ns in [&self.node, &self.pod, &self.ep, &self.out] {
            ns.ip(&["link", "set", "lo", "up"]);
        }
        node.sysctl("net.ipv4.ip_forward", "1");
        for k in ["all", "default"] {
            node.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0");
        }
        let gw = GATEWAY.to_string();
        // Pod and endpoints: a /32 each, the node's link-local gateway as default route.
        let sides: [(&Netns, &str, Vec<Ipv4Addr>); 2] = [
            (&self.pod, "pod0", vec![w.pod]),
            (&self.ep, "ep0", w.endpoints.to_vec()),
        ];
        for (ns, dev, ips) in sides {
            node.ip(&[
                "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", &ns.0,
            ]);
            node.ip(&["addr", "add", &format!("{gw}/32"), "dev", dev]);
            node.ip(&["link", "set", dev, "up"]);
            ns.ip(&["link", "set", "eth0", "up"]);
            for ip in ips {
                ns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
                node.ip(&["route", "add", &format!("{ip}/32"), "dev", dev]);
            }
            ns.ip(&["route", "add", &gw, "dev", "eth0"]);
            ns.ip(&["route", "add", "default", "via", &gw, "dev", "eth0"]);
        }
        // The uplink: the node's IP, the outside client as its default gateway.
        let (nip, oip) = (w.node.to_string(), w.outside.to_string());
        node.ip(&[
            "link",
            "add",
            "ext0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &self.out.0,
        ]);
        node.ip(&["addr", "add", &format!("{nip}/24"), "dev", "ext0"]);
        node.ip(&["link", "set", "ext0", "up"]);
        self.out.ip(&["link", "set", "eth0", "up"]);
        self.out
            .ip(&["addr", "add", &format!("{oip}/32"), "dev", "eth0"]);
        self.out.ip(&["route", "add", &nip, "dev", "eth0"]);
        self.out
            .ip(&["route", "add", "default", "via", &nip, "dev", "eth0"]);
        node.ip(&["route", "add", &format!("{oip}/32"), "dev", "ext0"]);
        node.ip(&[
            "route", "add", "default", "via", &oip, "dev", "ext0", "onlink",
        ]);
    }

    /// Load a dump (comment lines left out) into the node.
    fn load(&self, how: Loader, text: &str) {
        let body: String = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        match how {
            Loader::IptablesNft => self.node.restore("iptables-nft-restore", &body),
            Loader::IptablesLegacy => self.node.restore("iptables-legacy-restore", &body),
            Loader::Nft => self.node.feed(&["nft", "-f", "-"], &body),
            Loader::NftTransaction => {
                let decl = |l: &&str| {
                    ["add table ", "add chain ", "add set ", "add map "]
                        .iter()
                        .any(|p| l.starts_with(p))
                };
                let (first, rest): (Vec<&str>, Vec<&str>) = body.lines().partition(decl);
                let text = format!("{}\n{}\n", first.join("\n"), rest.join("\n"));
                self.node.feed(&["nft", "-f", "-"], &text)
            }
        }
    }

    /// Listeners on every endpoint port: each answers "REACHED-AT PEER\n".
    fn listen(&mut self) {
        for &port in self.world.ports {
            let stop = self.stop.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            self.listeners.push(self.ep.spawn(move || {
                let l = TcpListener::bind(("0.0.0.0", port)).expect("bind in the endpoints' netns");
                l.set_nonblocking(true).unwrap();
                tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, peer)) => {
                            let at = s.local_addr().unwrap();
                            let _ = s.set_nonblocking(false);
                            let _ = writeln!(s, "{at} {}", peer.ip());
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }));
            rx.recv_timeout(Duration::from_secs(5))
                .expect("listener bound");
        }
    }

    fn ns(&self, from: Start) -> &Netns {
        match from {
            Start::Pod => &self.pod,
            Start::Host => &self.node,
            Start::Outside => &self.out,
        }
    }

    /// One TCP connection from `from` to `dst`, and what came of it.
    fn connect(&self, from: Start, dst: SocketAddrV4) -> Seen {
        self.ns(from).run(
            move || match TcpStream::connect_timeout(&dst.into(), TIMEOUT) {
                Ok(mut s) => {
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    let mut line = String::new();
                    s.read_to_string(&mut line).expect("the listener's answer");
                    let mut w = line.split_whitespace();
                    let endpoint = w.next().and_then(|a| a.parse().ok());
                    let peer = w.next().and_then(|a| a.parse().ok());
                    match (endpoint, peer) {
                        (Some(endpoint), Some(peer)) => Seen::Reached { endpoint, peer },
                        _ => panic!("{dst}: connected, but the answer was {line:?}"),
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Seen::Refused,
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => Seen::TimedOut,
                Err(e) => panic!("{dst}: connect failed otherwise: {e}"),
            },
        )
    }

    /// The source address a connection from `from` carries.
    fn source(&self, from: Start) -> Ipv4Addr {
        match from {
            Start::Pod => self.world.pod,
            Start::Host => self.world.node,
            Start::Outside => self.world.outside,
        }
    }

    /// The packet the tracer is asked about for a connection from `from` to `dst`.
    fn packet(&self, from: Start, dst: SocketAddrV4) -> Packet {
        Packet {
            src: self.source(from),
            dst: *dst.ip(),
            dport: dst.port(),
            sport: 40000,
            proto: Proto::Tcp,
            from: if from == Start::Host {
                Origin::Host
            } else {
                Origin::Pod
            },
            local_ips: vec![self.world.node, GATEWAY],
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for l in self.listeners.drain(..) {
            let _ = l.join();
        }
    }
}

/// One connection to check.
struct Case {
    name: &'static str,
    from: Start,
    dst: &'static str,
    expect: Expect,
}

const fn case(name: &'static str, from: Start, dst: &'static str, expect: Expect) -> Case {
    Case {
        name,
        from,
        dst,
        expect,
    }
}

/// Connect as often as needed to see `want` endpoints (a random choice among N endpoints: 24
/// tries miss one of two with odds below 1e-6).
fn observe(lab: &Lab, c: &Case, want: usize) -> (Vec<Seen>, BTreeSet<String>) {
    let dst: SocketAddrV4 = c.dst.parse().unwrap();
    let mut seen = vec![lab.connect(c.from, dst)];
    let mut reached = BTreeSet::new();
    for _ in 0..24 {
        match seen.last() {
            Some(Seen::Reached { endpoint, .. }) => reached.insert(endpoint.to_string()),
            _ => break,
        };
        if reached.len() >= want {
            break;
        }
        seen.push(lab.connect(c.from, dst));
    }
    (seen, reached)
}

/// The kernel's outcome against the case's expectation; a description of any mismatch.
fn kernel_mismatch(
    lab: &Lab,
    c: &Case,
    seen: &[Seen],
    reached: &BTreeSet<String>,
) -> Option<String> {
    let src = lab.source(c.from);
    let ok = match c.expect {
        Expect::Drop => seen[0] == Seen::TimedOut,
        Expect::Reject => seen[0] == Seen::Refused,
        Expect::Dnat(eps, masq) => {
            let want: BTreeSet<String> = eps.iter().map(|e| e.to_string()).collect();
            *reached == want
                && seen
                    .iter()
                    .all(|s| matches!(s, Seen::Reached { peer, .. } if (*peer != src) == masq))
        }
    };
    (!ok).then(|| {
        format!(
            "{}: expected {:?}, the kernel did {seen:?}",
            c.name, c.expect
        )
    })
}

/// The tracer's answer against the kernel's outcome; a description of any mismatch.
fn tracer_mismatch(
    lab: &Lab,
    c: &Case,
    t: &Trace,
    seen: &[Seen],
    reached: &BTreeSet<String>,
) -> Option<String> {
    let src = lab.source(c.from);
    let ok = match (&seen[0], t.verdict) {
        (Seen::TimedOut, Verdict::Drop) | (Seen::Refused, Verdict::Reject) => true,
        (Seen::Reached { peer, .. }, Verdict::Dnat) => {
            let said: BTreeSet<String> = t.endpoints.iter().cloned().collect();
            said == *reached && t.masquerade == (*peer != src)
        }
        _ => false,
    };
    (!ok).then(|| {
        let path: Vec<String> = t
            .path
            .iter()
            .map(|s| {
                format!(
                    "  {} {} {} line {}: {}",
                    s.hook.name(),
                    s.table,
                    s.chain,
                    s.line,
                    s.rule
                )
            })
            .collect();
        format!(
            "{}: the kernel did {seen:?}; the tracer says {} {:?} masquerade={} notes={:?}\n{}",
            c.name,
            t.verdict.name(),
            t.endpoints,
            t.masquerade,
            t.notes,
            path.join("\n")
        )
    })
}

/// Load `fixture` into a fresh lab, run every case, and check kernel against expectation and
/// tracer against kernel; all mismatches are reported together.
fn judge(tag: &str, world: &'static World, how: Loader, fixture: &str, cases: &[Case]) {
    let text = std::fs::read_to_string(common::fixture(&format!("trace/{fixture}")))
        .unwrap_or_else(|e| panic!("{fixture}: {e}"));
    let mut lab = Lab::new(tag, world);
    lab.load(how, &text);
    lab.listen();
    let dump =
        OneDump::parse(text).unwrap_or_else(|e| panic!("{fixture}:{}: {}", e.line, e.reason));
    let tracer = Tracer::new(&dump);
    let mut wrong = Vec::new();
    for c in cases {
        let dst: SocketAddrV4 = c.dst.parse().unwrap();
        let t = tracer.trace(&lab.packet(c.from, dst));
        let expected = match c.expect {
            Expect::Dnat(eps, _) => eps.len(),
            _ => 1,
        };
        let (seen, reached) = observe(&lab, c, expected.max(t.endpoints.len()));
        wrong.extend(kernel_mismatch(&lab, c, &seen, &reached));
        wrong.extend(tracer_mismatch(&lab, c, &t, &seen, &reached));
    }
    assert!(wrong.is_empty(), "{fixture}:\n{}", wrong.join("\n"));
}

use Expect::{Dnat, Drop as Dropped, Reject};
use Start::{Host, Outside, Pod};

/// TestOverall*Rules' Services, the same in both modes (v1.34's nftables base chains).
const OVERALL_CASES: &[Case] = &[
    case(
        "ClusterIP from a pod",
        Pod,
        "172.30.0.41:80",
        Dnat(&["10.180.0.1:80"], false),
    ),
    case(
        "ClusterIP from the node",
        Host,
        "172.30.0.41:80",
        Dnat(&["10.180.0.1:80"], true),
    ),
    case(
        "LB eTP=Local, no local endpoint, from a pod",
        Pod,
        "1.2.3.4:80",
        Dnat(&["10.180.0.2:80"], false),
    ),
    case(
        "LB eTP=Local, no local endpoint, from the node",
        Host,
        "1.2.3.4:80",
        Dnat(&["10.180.0.2:80"], true),
    ),
    case(
        "LB eTP=Local, no local endpoint, from outside",
        Outside,
        "1.2.3.4:80",
        Dropped,
    ),
    case(
        "NodePort eTP=Local, no local endpoint, from outside",
        Outside,
        "192.168.0.2:3001",
        Dropped,
    ),
    case(
        "NodePort from outside",
        Outside,
        "192.168.0.2:3003",
        Dnat(&["10.180.0.3:80"], true),
    ),
    case(
        "NodePort from a pod",
        Pod,
        "192.168.0.2:3003",
        Dnat(&["10.180.0.3:80"], true),
    ),
    case(
        "LB eTP=Cluster from an allowed source",
        Outside,
        "5.6.7.8:80",
        Dnat(&["10.180.0.3:80"], true),
    ),
    case(
        "LB eTP=Cluster from a source outside loadBalancerSourceRanges",
        Pod,
        "5.6.7.8:80",
        Dropped,
    ),
    case(
        "externalIP with two endpoints, from outside",
        Outside,
        "192.168.99.33:80",
        Dnat(&["10.180.0.4:80", "10.180.0.5:80"], true),
    ),
    case("no endpoints, from a pod", Pod, "172.30.0.46:80", Reject),
    case(
        "no endpoints, from the node",
        Host,
        "172.30.0.46:80",
        Reject,
    ),
];

/// TestExternalTrafficPolicyLocal's Service: one endpoint on this node, one elsewhere.
const ETP_LOCAL_CASES: &[Case] = &[
    case(
        "LB eTP=Local from outside: the local endpoint only",
        Outside,
        "1.2.3.4:80",
        Dnat(&["10.180.2.1:80"], false),
    ),
    case(
        "NodePort eTP=Local from outside: the local endpoint only",
        Outside,
        "192.168.0.2:3001",
        Dnat(&["10.180.2.1:80"], false),
    ),
    case(
        "LB eTP=Local from a pod: every endpoint",
        Pod,
        "1.2.3.4:80",
        Dnat(&["10.180.0.1:80", "10.180.2.1:80"], false),
    ),
    case(
        "LB eTP=Local from the node: every endpoint",
        Host,
        "1.2.3.4:80",
        Dnat(&["10.180.0.1:80", "10.180.2.1:80"], true),
    ),
];

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn iptables_kube_proxy_rules_agree_with_the_kernel() {
    judge(
        "tki",
        &OVERALL,
        Loader::IptablesNft,
        "kernel/iptables-overall.txt",
        OVERALL_CASES,
    );
}

#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn iptables_etp_local_with_a_local_endpoint_agrees_with_the_kernel() {
    judge(
        "tkil",
        &OVERALL,
        Loader::IptablesNft,
        "kernel/iptables-etp-local.txt",
        ETP_LOCAL_CASES,
    );
}

#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn nftables_kube_proxy_rules_agree_with_the_kernel() {
    judge(
        "tkn",
        &OVERALL,
        Loader::Nft,
        "kernel/nftables-overall-v1.34.txt",
        OVERALL_CASES,
    );
}

#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn nftables_etp_local_with_a_local_endpoint_agrees_with_the_kernel() {
    judge(
        "tknl",
        &OVERALL,
        Loader::Nft,
        "kernel/nftables-etp-local.txt",
        ETP_LOCAL_CASES,
    );
}

/// PR 132456: before it, filter-output ran at dstnat-10 and dropped the node's own traffic to
/// an eTP=Local LB IP without a local endpoint; pod traffic was DNATed all along.
#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn nftables_before_pr_132456_drops_host_traffic_and_after_dnats_it() {
    let before: &[Case] = &[
        case(
            "v1.33: LB eTP=Local, no local endpoint, from the node",
            Host,
            "1.2.3.4:80",
            Dropped,
        ),
        case(
            "v1.33: LB eTP=Local, no local endpoint, from a pod",
            Pod,
            "1.2.3.4:80",
            Dnat(&["10.180.0.2:80"], false),
        ),
        case(
            "v1.33: ClusterIP from the node",
            Host,
            "172.30.0.41:80",
            Dnat(&["10.180.0.1:80"], true),
        ),
        case(
            "v1.33: no endpoints, from the node",
            Host,
            "172.30.0.46:80",
            Reject,
        ),
    ];
    judge(
        "tkb",
        &OVERALL,
        Loader::Nft,
        "kernel/nftables-overall-v1.33.txt",
        before,
    );
    let after: &[Case] = &[
        case(
            "v1.34: LB eTP=Local, no local endpoint, from the node",
            Host,
            "1.2.3.4:80",
            Dnat(&["10.180.0.2:80"], true),
        ),
        case(
            "v1.34: LB eTP=Local, no local endpoint, from a pod",
            Pod,
            "1.2.3.4:80",
            Dnat(&["10.180.0.2:80"], false),
        ),
    ];
    judge(
        "tka",
        &OVERALL,
        Loader::Nft,
        "kernel/nftables-overall-v1.34.txt",
        after,
    );
    // The nftables tracer's own fixtures of the same two versions, in kube-proxy's transaction
    // format: the kernel agrees with them too.
    let base = "nftables/pr132456-base-v1.33.0-TestOverallNFTablesRules.nft";
    judge("tkbt", &OVERALL, Loader::NftTransaction, base, before);
    let pr = "nftables/pr132456-after-v1.34.0-TestOverallNFTablesRules.nft";
    judge("tkat", &OVERALL, Loader::NftTransaction, pr, after);
}

/// The 2019 pair: without PR 77523 the node's own connection to its eTP=Local LB IP (no local
/// endpoint) is marked for drop and dropped; with it, it is routed to the Service.
#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn the_2019_pair_master_drops_host_traffic_and_pr_77523_dnats_it() {
    let master: &[Case] = &[
        case(
            "master: LB from the node",
            Host,
            "172.17.255.1:8080",
            Dropped,
        ),
        case(
            "master: ClusterIP from a pod",
            Pod,
            "10.96.84.42:8080",
            Dnat(&["10.244.1.2:8080"], false),
        ),
    ];
    judge(
        "tk19m",
        &BLOG_2019,
        Loader::IptablesLegacy,
        "kernel/iptables-2019-master.txt",
        master,
    );
    let pr: &[Case] = &[
        case(
            "PR 77523: LB from the node",
            Host,
            "172.17.254.1:8080",
            Dnat(&["10.244.1.2:8080"], true),
        ),
        case(
            "PR 77523: ClusterIP from a pod",
            Pod,
            "10.96.84.42:8080",
            Dnat(&["10.244.1.2:8080"], false),
        ),
    ];
    judge(
        "tk19p",
        &BLOG_2019,
        Loader::IptablesLegacy,
        "kernel/iptables-2019-pr77523.txt",
        pr,
    );
}

/// A world of the built-in scenario's fixtures (tests/fixtures/predict/builtin-*): a worker of
/// a kind cluster on 172.18.0.0/16, a pod of its pod CIDR, the echo pod as the one endpoint.
/// The echo pod, the one endpoint of the built-in scenario and of the demo.
const ECHO: &[Ipv4Addr] = &[Ipv4Addr::new(10, 244, 2, 2)];

const fn builtin(node: [u8; 4], pod: [u8; 4]) -> World {
    World {
        node: Ipv4Addr::new(node[0], node[1], node[2], node[3]),
        outside: Ipv4Addr::new(172, 18, 0, 1),
        pod: Ipv4Addr::new(pod[0], pod[1], pod[2], pod[3]),
        endpoints: ECHO,
        ports: &[8080],
    }
}
const BUILTIN_BASE_WORKER: World = builtin([172, 18, 0, 3], [10, 244, 1, 3]);
const BUILTIN_BASE_WORKER2: World = builtin([172, 18, 0, 4], [10, 244, 2, 3]);
const BUILTIN_PR_WORKER: World = builtin([172, 18, 0, 6], [10, 244, 1, 3]);
const BUILTIN_PR_WORKER2: World = builtin([172, 18, 0, 7], [10, 244, 2, 3]);

/// The built-in scenario's probes of the LB as the kernel takes them, on the fixtures its
/// expectation table is proved on (tests/predict_expectations.rs): before PR 132456 the worker
/// without the endpoint drops the node's own connection (filter-output at dstnat-10) and DNATs
/// the pod's; with it both are DNATed; worker2 DNATs every one. A client outside is dropped by
/// the worker (eTP=Local, no local endpoint) and sent to the local endpoint by worker2.
#[test]
#[ignore = "needs root, ip netns and nft (CI runs it)"]
fn the_builtin_scenarios_rules_agree_with_the_kernel() {
    const EP: &[&str] = &["10.244.2.2:8080"];
    let base_worker: &[Case] = &[
        case(
            "base worker: LB from the node",
            Host,
            "172.18.255.200:8080",
            Dropped,
        ),
        case(
            "base worker: LB from a pod",
            Pod,
            "172.18.255.200:8080",
            Dnat(EP, false),
        ),
        case(
            "base worker: LB from outside",
            Outside,
            "172.18.255.200:8080",
            Dropped,
        ),
        case(
            "base worker: NodePort from outside",
            Outside,
            "172.18.0.3:31508",
            Dropped,
        ),
    ];
    let pr_worker: &[Case] = &[
        case(
            "PR worker: LB from the node",
            Host,
            "172.18.255.210:8080",
            Dnat(EP, true),
        ),
        case(
            "PR worker: LB from a pod",
            Pod,
            "172.18.255.210:8080",
            Dnat(EP, false),
        ),
        case(
            "PR worker: LB from outside",
            Outside,
            "172.18.255.210:8080",
            Dropped,
        ),
    ];
    let worker2 = |lb: &'static str, np: &'static str| -> Vec<Case> {
        vec![
            case("worker2: LB from the node", Host, lb, Dnat(EP, true)),
            case("worker2: LB from a pod", Pod, lb, Dnat(EP, false)),
            case("worker2: LB from outside", Outside, lb, Dnat(EP, false)),
            case(
                "worker2: NodePort from outside",
                Outside,
                np,
                Dnat(EP, false),
            ),
        ]
    };
    let dir = "../predict";
    let w = &BUILTIN_BASE_WORKER;
    judge(
        "tkbw",
        w,
        Loader::Nft,
        &format!("{dir}/builtin-base-worker.nft"),
        base_worker,
    );
    let w = &BUILTIN_PR_WORKER;
    judge(
        "tkpw",
        w,
        Loader::Nft,
        &format!("{dir}/builtin-pr-worker.nft"),
        pr_worker,
    );
    let (w, f) = (
        &BUILTIN_BASE_WORKER2,
        format!("{dir}/builtin-base-worker2.nft"),
    );
    judge(
        "tkbw2",
        w,
        Loader::Nft,
        &f,
        &worker2("172.18.255.200:8080", "172.18.0.4:31508"),
    );
    let (w, f) = (&BUILTIN_PR_WORKER2, format!("{dir}/builtin-pr-worker2.nft"));
    judge(
        "tkpw2",
        w,
        Loader::Nft,
        &f,
        &worker2("172.18.255.210:8080", "172.18.0.7:30857"),
    );
}

/// The demo's 2019 dumps (tests/fixtures/predict/2019-*): a worker of the walkthrough's
/// clusters, the echo pod 10.244.2.2 as the one endpoint.
const fn demo_2019(node: [u8; 4], pod: [u8; 4]) -> World {
    World {
        node: Ipv4Addr::new(node[0], node[1], node[2], node[3]),
        outside: Ipv4Addr::new(172, 17, 0, 1),
        pod: Ipv4Addr::new(pod[0], pod[1], pod[2], pod[3]),
        endpoints: ECHO,
        ports: &[8080],
    }
}
const DEMO_MASTER_WORKER: World = demo_2019([172, 17, 0, 3], [10, 244, 1, 2]);
const DEMO_MASTER_WORKER2: World = demo_2019([172, 17, 0, 4], [10, 244, 2, 3]);
const DEMO_77523_WORKER: World = demo_2019([172, 17, 0, 6], [10, 244, 1, 2]);
const DEMO_77523_WORKER2: World = demo_2019([172, 17, 0, 7], [10, 244, 2, 3]);

/// The demo's probes from the node and from worker2's pods as the kernel takes them: the node's
/// own connection on the worker is dropped without PR 77523 and DNATed (masqueraded) with it;
/// worker2 DNATs the node's (masqueraded only by PR 77523's LOCAL rule) and the pods'.
#[test]
#[ignore = "needs root, ip netns and iptables (CI runs it)"]
fn the_demos_2019_rules_agree_with_the_kernel() {
    const EP: &[&str] = &["10.244.2.2:8080"];
    let (m, p) = ("172.17.255.1:8080", "172.17.254.1:8080");
    let dir = "../predict";
    let cases: [(&str, &World, &str, Vec<Case>); 4] = [
        (
            "tk19dmw",
            &DEMO_MASTER_WORKER,
            "2019-master-worker.txt",
            vec![case("master worker: LB from the node", Host, m, Dropped)],
        ),
        (
            "tk19dpw",
            &DEMO_77523_WORKER,
            "2019-77523-worker.txt",
            vec![case(
                "77523 worker: LB from the node",
                Host,
                p,
                Dnat(EP, true),
            )],
        ),
        (
            "tk19dmw2",
            &DEMO_MASTER_WORKER2,
            "2019-master-worker2.txt",
            vec![
                case("master worker2: LB from the node", Host, m, Dnat(EP, false)),
                case("master worker2: LB from a pod", Pod, m, Dnat(EP, false)),
            ],
        ),
        (
            "tk19dpw2",
            &DEMO_77523_WORKER2,
            "2019-77523-worker2.txt",
            vec![
                case("77523 worker2: LB from the node", Host, p, Dnat(EP, true)),
                case("77523 worker2: LB from a pod", Pod, p, Dnat(EP, false)),
            ],
        ),
    ];
    for (tag, world, file, cases) in &cases {
        let f = format!("{dir}/{file}");
        judge(tag, world, Loader::IptablesLegacy, &f, cases);
    }
}
