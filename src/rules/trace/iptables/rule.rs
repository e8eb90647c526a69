//! One iptables rule in typed form: its basic matches (`-s -d -i -o -p -f`), its extension
//! matches in the order written, and its target. Parsed once, from the words
//! [`crate::rules::tokens::split`] makes of the rule's body; anything the tracer cannot evaluate
//! becomes [`Match::Unknown`] / [`Target::Unknown`] with a reason, judged only if a packet gets
//! that far.

use std::net::Ipv4Addr;

use crate::rules::tokens;

/// An IPv4 network (`10.0.0.0/8`; a bare address is a /32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: u32,
    pub mask: u32,
}

impl Net {
    pub fn parse(s: &str) -> Option<Net> {
        let (a, m) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a.parse().ok()?;
        let mask = match m.parse::<u32>() {
            Ok(0) => 0,
            Ok(n @ 1..=32) => u32::MAX << (32 - n),
            Ok(_) => return None,
            // `/255.255.255.0`
            Err(_) => u32::from(m.parse::<Ipv4Addr>().ok()?),
        };
        Some(Net {
            addr: u32::from(addr) & mask,
            mask,
        })
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask == self.addr
    }

    /// The address when the network is one address.
    pub fn host(self) -> Option<u32> {
        (self.mask == u32::MAX).then_some(self.addr)
    }
}

/// `-i`/`-o`: an interface name, `+` at its end a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface(pub String);

impl Iface {
    /// Whether the pattern matches interface `name`.
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('+') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }
}

/// `-p`: a protocol by name or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtoMatch {
    All,
    Tcp,
    Udp,
    Sctp,
    /// Any other protocol (icmp, ...): never a traced packet's.
    Other,
}

impl ProtoMatch {
    fn parse(s: &str) -> ProtoMatch {
        match s.to_ascii_lowercase().as_str() {
            "all" | "0" => ProtoMatch::All,
            "tcp" | "6" => ProtoMatch::Tcp,
            "udp" | "17" => ProtoMatch::Udp,
            "sctp" | "132" => ProtoMatch::Sctp,
            _ => ProtoMatch::Other,
        }
    }
}

/// A list of ports and ranges (`80`, `80:90`, `80,443,1000:2000`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(pub Vec<(u16, u16)>);

impl Ports {
    fn parse(s: &str) -> Option<Ports> {
        let mut out = Vec::new();
        for part in s.split(',') {
            let (a, b) = part.split_once(':').unwrap_or((part, part));
            let a: u16 = if a.is_empty() { 0 } else { a.parse().ok()? };
            let b: u16 = if b.is_empty() {
                u16::MAX
            } else {
                b.parse().ok()?
            };
            out.push((a.min(b), a.max(b)));
        }
        Some(Ports(out))
    }

    pub fn contains(&self, p: u16) -> bool {
        self.0.iter().any(|&(a, b)| a <= p && p <= b)
    }

    /// The one port the list is, if it is one.
    pub fn single(&self) -> Option<u16> {
        match self.0.as_slice() {
            [(a, b)] if a == b => Some(*a),
            _ => None,
        }
    }
}

/// `-m addrtype` types the tracer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrType {
    Local,
    Unicast,
    Multicast,
}

/// Connection-tracking states (`--ctstate`, `--state`), as bits.
pub mod ct {
    pub const NEW: u8 = 1;
    pub const ESTABLISHED: u8 = 2;
    pub const RELATED: u8 = 4;
    pub const INVALID: u8 = 8;
    pub const UNTRACKED: u8 = 16;
    pub const SNAT: u8 = 32;
    pub const DNAT: u8 = 64;
}

/// An extension match (or `-f`), in the order written.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// `--dport`/`--sport` (tcp, udp, sctp) or `--dports`/`--sports`/`--ports` (multiport).
    Ports {
        dst: bool,
        src: bool,
        ports: Ports,
        neg: bool,
    },
    /// `--syn`: the first packet of a TCP connection has it.
    Syn { neg: bool },
    /// `-f`: the first packet is no fragment.
    Fragment { neg: bool },
    /// `-m addrtype`: each of source and destination, its types and negation.
    AddrType {
        src: Option<(Vec<AddrType>, bool)>,
        dst: Option<(Vec<AddrType>, bool)>,
        /// `--limit-iface-in`/`--limit-iface-out`: taken as the node's addresses anywhere.
        limited: bool,
    },
    /// `--ctstate` / `--state`.
    CtState { states: u8, neg: bool },
    /// `-m mark --mark VALUE[/MASK]`.
    Mark { value: u32, mask: u32, neg: bool },
    /// `-m statistic`: a random (or every-nth) choice; both outcomes are traced.
    Statistic { neg: bool },
    /// `-m recent --rcheck/--update/--remove`: no prior entry, so it never matches (unless `!`).
    RecentCheck { name: String, neg: bool },
    /// `-m recent --set`: always matches; records the source (session affinity).
    RecentSet { name: String },
    /// Something the tracer cannot evaluate, and why.
    Unknown(String),
}

/// What a rule does when it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// No `-j`: count and continue.
    None,
    /// `-j CHAIN` / `-g CHAIN` (resolved to a chain id when the dump is compiled).
    Jump {
        chain: String,
        goto: bool,
    },
    Accept,
    Drop,
    Reject,
    Return,
    /// `DNAT --to-destination IP[:PORT]`.
    Dnat {
        ip: Ipv4Addr,
        port: Option<u16>,
    },
    /// `SNAT --to-source ...` or `MASQUERADE`.
    Snat {
        masquerade: bool,
    },
    /// `MARK`: `mark = (mark & !clear) ^ xor`.
    Mark {
        clear: u32,
        xor: u32,
    },
    /// `LOG`, `NFLOG`, `TRACE`, `CT` (other than `--notrack`): no effect on where it goes.
    Continue,
    /// `NOTRACK` / `CT --notrack`: the packet is untracked (no NAT from here on).
    NoTrack,
    /// A target the tracer cannot evaluate, and why.
    Unknown(String),
}

/// One rule, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub src: Option<(Net, bool)>,
    pub dst: Option<(Net, bool)>,
    pub iif: Option<(Iface, bool)>,
    pub oif: Option<(Iface, bool)>,
    pub proto: Option<(ProtoMatch, bool)>,
    pub matches: Vec<Match>,
    pub target: Target,
}

/// Targets of netfilter that change a packet in ways the tracer does not follow.
const UNFOLLOWED_TARGETS: &[&str] = &[
    "REDIRECT",
    "NETMAP",
    "TPROXY",
    "CONNMARK",
    "NFQUEUE",
    "QUEUE",
    "CLASSIFY",
    "DSCP",
    "TOS",
    "TTL",
    "HL",
    "TCPMSS",
    "SET",
    "CHECKSUM",
    "CLUSTERIP",
    "ECN",
    "HMARK",
    "IDLETIMER",
    "LED",
    "RATEEST",
    "SECMARK",
    "CONNSECMARK",
    "SYNPROXY",
    "TEE",
    "MIRROR",
    "SAME",
];

/// Targets that log or account and let the packet go on.
const PASSING_TARGETS: &[&str] = &["LOG", "NFLOG", "ULOG", "TRACE", "AUDIT"];

/// A number as iptables writes marks (`0x4000`, `16384`).
fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `VALUE[/MASK]` (mask all ones when absent).
fn value_mask(s: &str) -> Option<(u32, u32)> {
    match s.split_once('/') {
        Some((v, m)) => Some((number(v)?, number(m)?)),
        None => Some((number(s)?, u32::MAX)),
    }
}

/// Per-module options gathered until the module's last option (`-m addrtype`, `-m recent`).
#[derive(Default)]
struct Pending {
    addr_src: Option<(Vec<AddrType>, bool)>,
    addr_dst: Option<(Vec<AddrType>, bool)>,
    addr_limited: bool,
    recent_name: Option<String>,
    recent_check: Option<bool>,
    recent_set: bool,
    statistic: Option<bool>,
}

impl Pending {
    fn flush(&mut self, module: &str, out: &mut Vec<Match>) {
        let p = std::mem::take(self);
        match module {
            "addrtype" if p.addr_src.is_some() || p.addr_dst.is_some() => {
                out.push(Match::AddrType {
                    src: p.addr_src,
                    dst: p.addr_dst,
                    limited: p.addr_limited,
                })
            }
            "recent" => {
                let name = p.recent_name.unwrap_or_else(|| "DEFAULT".into());
                if let Some(neg) = p.recent_check {
                    out.push(Match::RecentCheck { name, neg });
                } else if p.recent_set {
                    out.push(Match::RecentSet { name });
                } else {
                    out.push(Match::Unknown(
                        "-m recent without --set, --rcheck, --update or --remove".into(),
                    ));
                }
            }
            "statistic" => {
                if let Some(neg) = p.statistic {
                    out.push(Match::Statistic { neg });
                }
            }
            _ => {}
        }
    }
}

/// Modules whose options the tracer reads.
const KNOWN_MODULES: &[&str] = &[
    "tcp",
    "udp",
    "sctp",
    "multiport",
    "comment",
    "addrtype",
    "conntrack",
    "state",
    "mark",
    "statistic",
    "recent",
    "nfacct",
    "limit",
];

impl Rule {
    /// Compile a rule body (everything after `-A CHAIN`).
    pub fn parse(body: &str) -> Rule {
        let mut words = tokens::split(body);
        // `iptables -S -v` counters, wherever they stand.
        while let Some(i) = words.iter().position(|w| *w == "-c") {
            words.drain(i..(i + 3).min(words.len()));
        }
        let mut r = Rule {
            src: None,
            dst: None,
            iif: None,
            oif: None,
            proto: None,
            matches: Vec::new(),
            target: Target::None,
        };
        let mut module: &str = "";
        let mut pending = Pending::default();
        let mut neg = false;
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            let next = words.get(i + 1).copied().unwrap_or("");
            match w {
                "!" => {
                    neg = true;
                    i += 1;
                    continue;
                }
                "-s" | "--source" | "--src" | "-d" | "--destination" | "--dst" => {
                    let v = match Net::parse(next) {
                        Some(n) => Some((n, neg)),
                        None => {
                            r.matches
                                .push(Match::Unknown(format!("address '{next}' of {w}")));
                            None
                        }
                    };
                    if w.starts_with("-s") || w == "--source" || w == "--src" {
                        r.src = v;
                    } else {
                        r.dst = v;
                    }
                    i += 2;
                }
                "-i" | "--in-interface" => {
                    r.iif = Some((Iface(next.into()), neg));
                    i += 2;
                }
                "-o" | "--out-interface" => {
                    r.oif = Some((Iface(next.into()), neg));
                    i += 2;
                }
                "-p" | "--protocol" => {
                    r.proto = Some((ProtoMatch::parse(next), neg));
                    i += 2;
                }
                "-f" | "--fragment" => {
                    r.matches.push(Match::Fragment { neg });
                    i += 1;
                }
                "-m" | "--match" => {
                    pending.flush(module, &mut r.matches);
                    module = next;
                    if !KNOWN_MODULES.contains(&next) {
                        r.matches.push(Match::Unknown(format!("-m {next}")));
                    }
                    i += 2;
                }
                "-j" | "--jump" | "-g" | "--goto" => {
                    pending.flush(module, &mut r.matches);
                    let goto = w == "-g" || w == "--goto";
                    r.target = target(next, goto, &words[(i + 2).min(words.len())..]);
                    return r;
                }
                _ => {
                    // An option and its values: the words up to the next option or '!'.
                    let mut j = i + 1;
                    while j < words.len() && !words[j].starts_with('-') && words[j] != "!" {
                        j += 1;
                    }
                    if module.is_empty() {
                        // `-p tcp --dport 80` without `-m tcp`: the protocol's module.
                        module = match r.proto {
                            Some((ProtoMatch::Udp, _)) => "udp",
                            Some((ProtoMatch::Sctp, _)) => "sctp",
                            _ => "tcp",
                        };
                    }
                    option(
                        module,
                        w,
                        &words[i + 1..j],
                        neg,
                        &mut pending,
                        &mut r.matches,
                    );
                    i = j;
                }
            }
            neg = false;
        }
        pending.flush(module, &mut r.matches);
        r
    }
}

/// One option of module `module` with its values.
fn option(
    module: &str,
    opt: &str,
    vals: &[&str],
    neg: bool,
    pending: &mut Pending,
    out: &mut Vec<Match>,
) {
    let v = vals.first().copied().unwrap_or("");
    let unknown = |out: &mut Vec<Match>| {
        out.push(Match::Unknown(format!(
            "option {opt} of -m {module}{}",
            if vals.is_empty() { "" } else { " ..." }
        )))
    };
    match (module, opt) {
        ("comment", _) | ("nfacct", _) | ("limit", _) => {}
        (
            "tcp" | "udp" | "sctp",
            "--dport" | "--destination-port" | "--sport" | "--source-port",
        ) => {
            let dst = opt == "--dport" || opt == "--destination-port";
            match Ports::parse(v) {
                Some(ports) => out.push(Match::Ports {
                    dst,
                    src: !dst,
                    ports,
                    neg,
                }),
                None => unknown(out),
            }
        }
        ("tcp", "--syn") => out.push(Match::Syn { neg }),
        (
            "multiport",
            "--dports" | "--destination-ports" | "--sports" | "--source-ports" | "--ports",
        ) => match Ports::parse(v) {
            Some(ports) => out.push(Match::Ports {
                dst: opt != "--sports" && opt != "--source-ports",
                src: opt == "--sports" || opt == "--source-ports" || opt == "--ports",
                ports,
                neg,
            }),
            None => unknown(out),
        },
        ("addrtype", "--src-type" | "--dst-type") => {
            let mut types = Vec::new();
            for t in v.split(',') {
                match t {
                    "LOCAL" => types.push(AddrType::Local),
                    "UNICAST" => types.push(AddrType::Unicast),
                    "MULTICAST" => types.push(AddrType::Multicast),
                    _ => {
                        out.push(Match::Unknown(format!("-m addrtype {opt} {t}")));
                        return;
                    }
                }
            }
            if opt == "--src-type" {
                pending.addr_src = Some((types, neg));
            } else {
                pending.addr_dst = Some((types, neg));
            }
        }
        ("addrtype", "--limit-iface-in" | "--limit-iface-out") => pending.addr_limited = true,
        ("conntrack", "--ctstate") | ("state", "--state") => {
            let mut states = 0;
            for s in v.split(',') {
                states |= match s {
                    "NEW" => ct::NEW,
                    "ESTABLISHED" => ct::ESTABLISHED,
                    "RELATED" => ct::RELATED,
                    "INVALID" => ct::INVALID,
                    "UNTRACKED" => ct::UNTRACKED,
                    "SNAT" => ct::SNAT,
                    "DNAT" => ct::DNAT,
                    _ => {
                        out.push(Match::Unknown(format!("{opt} {s}")));
                        return;
                    }
                };
            }
            out.push(Match::CtState { states, neg });
        }
        ("mark", "--mark") => match value_mask(v) {
            Some((value, mask)) => out.push(Match::Mark { value, mask, neg }),
            None => unknown(out),
        },
        ("statistic", "--mode") if v == "random" || v == "nth" => {}
        ("statistic", "--probability" | "--every") => pending.statistic = Some(neg),
        ("statistic", "--packet") => {}
        ("recent", "--name") => pending.recent_name = Some(v.to_string()),
        ("recent", "--set") => pending.recent_set = true,
        ("recent", "--rcheck" | "--update" | "--remove") => pending.recent_check = Some(neg),
        ("recent", "--seconds" | "--reap" | "--hitcount" | "--rttl" | "--rsource")
        | ("recent", "--rdest" | "--mask") => {}
        (m, _) if !KNOWN_MODULES.contains(&m) => {} // the module is already unknown
        _ => unknown(out),
    }
}

/// A target and its options.
fn target(name: &str, goto: bool, opts: &[&str]) -> Target {
    let opt = |o: &str| {
        opts.iter()
            .position(|w| *w == o)
            .and_then(|i| opts.get(i + 1).copied())
    };
    match name {
        "ACCEPT" => Target::Accept,
        "DROP" => Target::Drop,
        "REJECT" => Target::Reject,
        "RETURN" => Target::Return,
        "MASQUERADE" => Target::Snat { masquerade: true },
        "SNAT" => Target::Snat { masquerade: false },
        "DNAT" => match opt("--to-destination").or_else(|| opt("--to")) {
            Some(to) => dnat(to),
            None => Target::Unknown("DNAT without --to-destination".into()),
        },
        "MARK" => mark(opts),
        "NOTRACK" => Target::NoTrack,
        "CT" if opts.contains(&"--notrack") => Target::NoTrack,
        "CT" => Target::Continue,
        n if PASSING_TARGETS.contains(&n) => Target::Continue,
        n if UNFOLLOWED_TARGETS.contains(&n) => Target::Unknown(format!("target {n}")),
        "" => Target::Unknown("-j without a target".into()),
        n => Target::Jump {
            chain: n.to_string(),
            goto,
        },
    }
}

/// `DNAT --to-destination IP[:PORT]` (ranges are not followed).
fn dnat(to: &str) -> Target {
    let (ip, port) = match to.rsplit_once(':') {
        Some((ip, port)) => (ip, Some(port)),
        None => (to, None),
    };
    let ip = ip.parse::<Ipv4Addr>().ok();
    let port = match port {
        Some(p) => p.parse::<u16>().ok().map(Some),
        None => Some(None),
    };
    match (ip, port) {
        (Some(ip), Some(port)) => Target::Dnat { ip, port },
        _ => Target::Unknown(format!("DNAT --to-destination {to}")),
    }
}

/// `MARK --set-xmark/--set-mark/--or-mark/--and-mark/--xor-mark`.
fn mark(opts: &[&str]) -> Target {
    let (Some(op), Some(v)) = (opts.first(), opts.get(1)) else {
        return Target::Unknown("MARK without an operation".into());
    };
    let Some((value, mask)) = value_mask(v) else {
        return Target::Unknown(format!("MARK {op} {v}"));
    };
    let has_mask = v.contains('/');
    let (clear, xor) = match *op {
        "--set-xmark" => (mask, value),
        "--set-mark" if has_mask => (mask | value, value),
        "--set-mark" => (u32::MAX, value),
        "--or-mark" => (value, value),
        "--and-mark" => (!value, 0),
        "--xor-mark" => (0, value),
        _ => return Target::Unknown(format!("MARK {op}")),
    };
    Target::Mark { clear, xor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_matches_and_target() {
        let r = Rule::parse(
            r#"! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ"#,
        );
        assert_eq!(r.src, Some((Net::parse("10.0.0.0/8").unwrap(), true)));
        assert_eq!(
            r.dst.unwrap().0.host(),
            Some(u32::from(Ipv4Addr::new(172, 30, 0, 41)))
        );
        assert_eq!(r.proto, Some((ProtoMatch::Tcp, false)));
        assert_eq!(
            r.matches,
            vec![Match::Ports {
                dst: true,
                src: false,
                ports: Ports(vec![(80, 80)]),
                neg: false
            }]
        );
        assert_eq!(
            r.target,
            Target::Jump {
                chain: "KUBE-MARK-MASQ".into(),
                goto: false
            }
        );
    }

    #[test]
    fn kube_proxy_modules() {
        let r = Rule::parse(
            "-m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77 --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80",
        );
        assert_eq!(
            r.matches,
            vec![Match::RecentSet {
                name: "KUBE-SEP-I77".into()
            }]
        );
        assert_eq!(
            r.target,
            Target::Dnat {
                ip: Ipv4Addr::new(10, 180, 0, 3),
                port: Some(80)
            }
        );
        let r = Rule::parse(
            "-m recent --name X --rcheck --seconds 10800 --reap -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-X",
        );
        assert_eq!(
            r.matches,
            vec![
                Match::RecentCheck {
                    name: "X".into(),
                    neg: false
                },
                Match::Statistic { neg: false }
            ]
        );
        let r = Rule::parse(
            "-m comment --comment \"block incoming localnet connections\" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
        );
        assert_eq!(
            r.matches,
            vec![Match::CtState {
                states: ct::RELATED | ct::ESTABLISHED | ct::DNAT,
                neg: true
            }]
        );
        let r = Rule::parse("-m addrtype ! --dst-type LOCAL --limit-iface-in -j X");
        assert_eq!(
            r.matches,
            vec![Match::AddrType {
                src: None,
                dst: Some((vec![AddrType::Local], true)),
                limited: true
            }]
        );
        // Unquoted comments of several words (kube-proxy's fake iptables writes them).
        let r = Rule::parse(
            "-m conntrack --ctstate NEW -m comment --comment kubernetes service portals -j KUBE-SERVICES",
        );
        assert_eq!(r.matches.len(), 1);
        assert!(matches!(r.target, Target::Jump { .. }));
    }

    #[test]
    fn marks() {
        let apply = |t: Target, m: u32| match t {
            Target::Mark { clear, xor } => (m & !clear) ^ xor,
            t => panic!("{t:?}"),
        };
        assert_eq!(
            apply(Rule::parse("-j MARK --or-mark 0x4000").target, 1),
            0x4001
        );
        assert_eq!(
            apply(Rule::parse("-j MARK --set-xmark 0x4000/0x4000").target, 1),
            0x4001
        );
        assert_eq!(
            apply(Rule::parse("-j MARK --xor-mark 0x4000").target, 0x4001),
            1
        );
        assert_eq!(
            apply(Rule::parse("-j MARK --set-xmark 0x4000/0x0").target, 0x4001),
            1
        );
        assert_eq!(
            apply(Rule::parse("-j MARK --set-mark 0x8000").target, 0x4001),
            0x8000
        );
        assert_eq!(
            apply(Rule::parse("-j MARK --set-mark 0x8000/0x8000").target, 1),
            0x8001
        );
        assert_eq!(apply(Rule::parse("-j MARK --and-mark 0x1").target, 3), 1);
    }

    #[test]
    fn what_it_cannot_follow_is_named() {
        assert_eq!(
            Rule::parse("-m set --match-set KUBE-X dst -j ACCEPT").matches,
            vec![Match::Unknown("-m set".into())]
        );
        assert!(matches!(
            Rule::parse("-m physdev --physdev-is-bridged -j ACCEPT").matches[0],
            Match::Unknown(_)
        ));
        assert!(matches!(
            Rule::parse("-j REDIRECT --to-ports 8080").target,
            Target::Unknown(_)
        ));
        assert!(matches!(
            Rule::parse("-j DNAT --to-destination 10.0.0.1-10.0.0.9").target,
            Target::Unknown(_)
        ));
        assert!(matches!(
            Rule::parse("-p tcp -m tcp --tcp-flags SYN,ACK SYN -j ACCEPT").matches[0],
            Match::Unknown(_)
        ));
        assert_eq!(
            Rule::parse("-p tcp -c 7 9 --dport 80 -j ACCEPT").target,
            Target::Accept
        );
    }
}
