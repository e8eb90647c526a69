//! Finding the rules kube-proxy wrote for each Service.
//!
//! A rule belongs to a Service when kube-proxy's comment names it ("ns/name:port", "ns/name:" for
//! unnamed ports in old versions, "ns/name" in new ones), when it sits in a chain kube-proxy made
//! for that Service (KUBE-SVC/SVL/EXT/FW/XLB/SEP-*), or when it jumps to such a chain. Ownership of
//! per-service chains spreads along jumps, never through shared chains (KUBE-SERVICES,
//! KUBE-MARK-MASQ, ...).

use rustc_hash::FxHashMap as HashMap;
use std::fmt;

use super::parse::{Dump, Rule, Table};
use super::tokens;

/// A Service port as kube-proxy names it. `port` is empty for an unnamed port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
    pub port: String,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
    }
}

/// Which services `--service` selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceFilter {
    pub namespace: String,
    pub name: String,
    /// `None`: every port of the service; `Some("")`: the unnamed port.
    pub port: Option<String>,
}

impl ServiceFilter {
    /// Parse `NS/NAME`, `NS/NAME:` or `NS/NAME:PORT`.
    pub fn parse(s: &str) -> Result<ServiceFilter, String> {
        let r = parse_ref(s).ok_or_else(|| {
            format!("'{s}' is not a service: expected NAMESPACE/NAME or NAMESPACE/NAME:PORT")
        })?;
        Ok(ServiceFilter {
            namespace: r.0.to_string(),
            name: r.1.to_string(),
            port: r.2.map(str::to_string),
        })
    }

    pub fn matches(&self, k: &ServiceKey) -> bool {
        k.namespace == self.namespace
            && k.name == self.name
            && self.port.as_deref().is_none_or(|p| p == k.port)
    }

    /// The text every rule of this service mentions in a comment.
    fn needle(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !s.starts_with('-')
}

/// Split "ns/name[:port]" into its parts; `None` for anything else.
pub fn parse_ref(w: &str) -> Option<(&str, &str, Option<&str>)> {
    let (ns, rest) = w.split_once('/')?;
    let (name, port) = match rest.split_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (rest, None),
    };
    if !is_label(ns) || !is_label(name) || name.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if let Some(p) = port
        && !p
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return None;
    }
    Some((ns, name, port))
}

/// A service reference borrowed from a comment: (namespace, name, port; "" when unnamed).
pub type RefParts<'a> = (&'a str, &'a str, &'a str);

/// The service a kube-proxy comment names (borrowed), and the word as written.
pub fn comment_ref(comment: &str) -> Option<(RefParts<'_>, &str)> {
    for w in comment.split(' ') {
        if !w.contains('/') {
            continue;
        }
        if let Some((ns, name, port)) = parse_ref(w) {
            return Some(((ns, name, port.unwrap_or("")), w));
        }
    }
    None
}

/// The kind of per-service chain a name is, e.g. "KUBE-SVC" for "KUBE-SVC-ABC...".
pub fn per_service_prefix(chain: &str) -> Option<&'static str> {
    let b = chain.as_bytes();
    if b.len() < 9 || &b[..5] != b"KUBE-" {
        return None;
    }
    let p = match &b[5..9] {
        b"SVC-" => "KUBE-SVC",
        b"SVL-" => "KUBE-SVL",
        b"EXT-" => "KUBE-EXT",
        b"SEP-" => "KUBE-SEP",
        b"XLB-" => "KUBE-XLB",
        [b'F', b'W', b'-', _] => "KUBE-FW",
        _ => return None,
    };
    (chain.len() > p.len() + 1).then_some(p)
}

/// The built-in chains kube-proxy jumps from into its own.
const BUILT_IN: [&str; 5] = ["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"];

/// kube-proxy's rules that no Service owns, in file order: the Service-less rules of its shared
/// chains (KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ, KUBE-FORWARD, ...)
/// and its rules in built-in chains (jumps into KUBE-* chains, and any other rule that is
/// kube-proxy's: see [`kube_proxys`]). One pass, no grouping. Each with where it stands among
/// the Services' rules of its chain (see [`Place`]).
pub fn shared(d: &Dump) -> Vec<(usize, Place)> {
    let mut out: Vec<(usize, Place)> = Vec::new();
    /// A chain (table, name), and the first and last of the Services' rules in it.
    type Span<'a> = ((Option<Table>, &'a str), (usize, usize));
    let mut services: Vec<Span> = Vec::new();
    for (i, r) in d.rules.iter().enumerate() {
        let chain = d.rule_chain(r);
        let body = d.rule_body(r);
        let ours = if chain.starts_with("KUBE-") {
            per_service_prefix(chain).is_none()
        } else {
            BUILT_IN.contains(&chain) && kube_proxys(body)
        };
        if !ours {
            continue;
        }
        let to_service = tokens::jump_target(body).is_some_and(|t| per_service_prefix(t).is_some());
        let names_service = tokens::comment(body).and_then(comment_ref).is_some();
        if !to_service && !names_service {
            out.push((i, Place::After));
            continue;
        }
        let k = (r.table, chain);
        match services.iter_mut().find(|s| s.0 == k) {
            Some(s) => s.1.1 = i,
            None => services.push((k, (i, i))),
        }
    }
    for (i, place) in &mut out {
        let r = &d.rules[*i];
        let k = (r.table, d.rule_chain(r));
        if let Some((_, (first, last))) = services.iter().find(|s| s.0 == k)
            && *last > *i
        {
            *place = if *first < *i {
                Place::Among
            } else {
                Place::Before
            };
        }
    }
    out
}

/// Where a shared rule stands among the Services' rules of its chain. kube-proxy writes its
/// shared rules after them ("this must be the last rule in this chain"): one moved in front of
/// them is a change, though the shared rules alone are the same list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// After every Service's rule in its chain (or in a chain without any).
    After,
    Before,
    Among,
}

impl Place {
    /// How the place is written after the rule (nothing for the usual one).
    pub fn suffix(self) -> &'static str {
        match self {
            Place::After => "",
            Place::Before => " (before the Services' rules)",
            Place::Among => " (among the Services' rules)",
        }
    }
}

/// Whether a rule in a built-in chain is kube-proxy's: it jumps to or names a KUBE-* chain, or
/// its comment speaks of Kubernetes ("kubernetes service portals", "kube-proxy ...").
fn kube_proxys(body: &str) -> bool {
    tokens::jump_target(body).is_some_and(|t| t.starts_with("KUBE-"))
        || tokens::split(body).iter().any(|w| w.starts_with("KUBE-"))
        || tokens::comment(body).is_some_and(|c| c.to_ascii_lowercase().contains("kube"))
}

/// The rules of built-in chains that are not kube-proxy's (Docker's, kind's, the admin's): not
/// compared, but one side's alone are worth a note.
pub fn foreign(d: &Dump) -> Vec<usize> {
    d.rules
        .iter()
        .enumerate()
        .filter(|(_, r)| BUILT_IN.contains(&d.rule_chain(r)) && !kube_proxys(d.rule_body(r)))
        .map(|(i, _)| i)
        .collect()
}

/// The pseudo-service kube-proxy's shared rules are grouped as.
pub fn shared_rules(d: &Dump) -> ServiceRules {
    let (rules, places) = shared(d).into_iter().unzip();
    ServiceRules {
        key: ServiceKey {
            namespace: String::new(),
            name: SHARED.into(),
            port: String::new(),
        },
        written: SHARED.into(),
        rules,
        chains: Vec::new(),
        places,
    }
}

/// How the shared group is named in every output.
pub const SHARED: &str = "kube-proxy (shared chains)";

/// Chains that only ever appear in the filter table; used to place rules from dumps that were
/// grep'ed without their `*table` line.
fn infer_table(chain: &str, body: &str) -> Table {
    match chain {
        "KUBE-EXTERNAL-SERVICES"
        | "KUBE-FORWARD"
        | "KUBE-FIREWALL"
        | "KUBE-PROXY-FIREWALL"
        | "INPUT"
        | "FORWARD" => Table::Filter,
        "KUBE-SERVICES" | "KUBE-NODEPORTS" => match tokens::jump_target(body) {
            Some("ACCEPT" | "DROP" | "REJECT") => Table::Filter,
            _ => Table::Nat,
        },
        _ => Table::Nat,
    }
}

/// The table of a rule: as declared, or inferred.
pub fn rule_table(d: &Dump, r: &Rule) -> Table {
    r.table
        .unwrap_or_else(|| infer_table(d.rule_chain(r), d.rule_body(r)))
}

/// The rules of one service in one dump.
#[derive(Debug, Clone)]
pub struct ServiceRules {
    pub key: ServiceKey,
    /// How the comments spell the service (first seen), e.g. "default/echo:".
    pub written: String,
    /// Indices into `Dump::rules`, in file order.
    pub rules: Vec<usize>,
    /// Per-service chains owned by this service.
    pub chains: Vec<String>,
    /// The shared group's: where each rule stands among the Services' rules of its chain
    /// (empty for a Service).
    pub places: Vec<Place>,
}

struct RuleInfo<'a> {
    svc: Option<(RefParts<'a>, &'a str)>,
    /// Interned ids of per-service chains (`NONE` for other chains).
    chain: u32,
    target: u32,
}

const NONE: u32 = u32::MAX;

/// Per-service chains of a dump, interned: name, prefix and the hash's id.
struct Chains<'a> {
    ids: HashMap<&'a str, u32>,
    names: Vec<&'a str>,
    /// Interned hash suffix for SVC/SVL/EXT/FW/XLB chains (`NONE` for SEP chains).
    hash: Vec<u32>,
    hashes: HashMap<&'a str, u32>,
}

impl<'a> Chains<'a> {
    fn id(&mut self, name: Option<&'a str>) -> u32 {
        let Some(name) = name else { return NONE };
        // Most names are not per-service chains (KUBE-SERVICES, KUBE-MARK-MASQ, DNAT, ...):
        // the prefix says so before any hashing.
        let Some(p) = per_service_prefix(name) else {
            return NONE;
        };
        if let Some(&i) = self.ids.get(name) {
            return i;
        }
        let i = self.names.len() as u32;
        self.ids.insert(name, i);
        self.names.push(name);
        let h = if p == "KUBE-SEP" {
            NONE
        } else {
            let n = self.hashes.len() as u32;
            *self.hashes.entry(&name[p.len() + 1..]).or_insert(n)
        };
        self.hash.push(h);
        i
    }
}

/// Group a dump's rules by service. With a filter, only matching services are returned, and only
/// the lines that can concern them are examined.
pub fn services(d: &Dump, filter: Option<&ServiceFilter>) -> Vec<ServiceRules> {
    match filter {
        None => group(d, 0..d.rules.len(), None),
        Some(f) => services_filtered(d, f),
    }
}

fn services_filtered(d: &Dump, f: &ServiceFilter) -> Vec<ServiceRules> {
    // Candidate rules: those whose line mentions the service, then those mentioning its chains,
    // until no new chain turns up. Each round is one pass over the whole text, for all the
    // round's new names at once. Lines that only seem to concern the service are harmless:
    // grouping decides.
    let starts: Vec<u32> = d.rules.iter().map(|r| r.raw.start).collect();
    let mut candidates: Vec<usize> = Vec::new();
    let mut needles = vec![f.needle()];
    let mut searched = 0;
    loop {
        for (off, len) in find_all(d.text.as_bytes(), &needles[searched..]) {
            let idx = starts.partition_point(|&s| s as usize <= off);
            if idx > 0 && (d.rules[idx - 1].raw.end as usize) >= off + len {
                candidates.push(idx - 1);
            }
        }
        searched = needles.len();
        candidates.sort_unstable();
        candidates.dedup();
        let found = group(d, candidates.iter().copied(), Some(f));
        let mut added = false;
        for s in &found {
            for c in &s.chains {
                let key = search_key(c);
                if !needles.iter().any(|n| n == key) {
                    needles.push(key.to_string());
                    added = true;
                }
            }
        }
        if !added {
            return found;
        }
    }
}

/// What to search a dump for to find the lines naming a per-service chain: its hash, which
/// also names its siblings (`KUBE-SVC-H`, `KUBE-EXT-H`, ...) and is rare where the prefix is
/// everywhere; the whole name when the hash is too short to be rare.
fn search_key(chain: &str) -> &str {
    match per_service_prefix(chain) {
        Some(p) if chain.len() >= p.len() + 1 + 8 => &chain[p.len() + 1..],
        _ => chain,
    }
}

/// Where any of `needles` occurs in `text`: (offset, length), in one pass.
fn find_all(text: &[u8], needles: &[String]) -> Vec<(usize, usize)> {
    // Teddy (SIMD) for a handful of names: one pass for all of them.
    if needles.len() > 1
        && let Some(ac) = aho_corasick::packed::Config::new()
            .builder()
            .extend(needles)
            .build()
    {
        return ac.find_iter(text).map(|m| (m.start(), m.len())).collect();
    }
    // One name (or too many for Teddy): a substring search per name.
    let mut out = Vec::new();
    for n in needles {
        let finder = memchr::memmem::Finder::new(n.as_bytes());
        out.extend(finder.find_iter(text).map(|at| (at, n.len())));
    }
    out
}

fn group(
    d: &Dump,
    idx: impl Iterator<Item = usize>,
    filter: Option<&ServiceFilter>,
) -> Vec<ServiceRules> {
    let mut chains = Chains {
        ids: HashMap::default(),
        names: Vec::new(),
        hash: Vec::new(),
        hashes: HashMap::default(),
    };
    let infos: Vec<(usize, RuleInfo<'_>)> = idx
        .map(|i| {
            let r = &d.rules[i];
            let body = d.rule_body(r);
            let info = RuleInfo {
                svc: tokens::comment(body).and_then(comment_ref),
                chain: chains.id(Some(d.rule_chain(r))),
                target: chains.id(tokens::jump_target(body)),
            };
            (i, info)
        })
        .collect();
    let mut owners = Owners {
        chain: vec![usize::MAX; chains.names.len()],
        hash: vec![usize::MAX; chains.hashes.len()],
    };
    let (mut out, rule_svc) = by_comment(&infos, &chains, &mut owners);
    owners.propagate(&infos, &chains);
    for ((i, ri), svc) in infos.iter().zip(rule_svc) {
        let id = if ri.chain != NONE {
            owners.chain[ri.chain as usize]
        } else if svc != usize::MAX {
            svc
        } else if ri.target != NONE {
            owners.chain[ri.target as usize]
        } else {
            usize::MAX
        };
        if id != usize::MAX {
            out[id].rules.push(*i);
        }
    }
    for (c, &o) in owners.chain.iter().enumerate() {
        if o != usize::MAX {
            out[o].chains.push(chains.names[c].to_string());
        }
    }
    if let Some(f) = filter {
        out.retain(|s| f.matches(&s.key));
    }
    out.retain(|s| !s.rules.is_empty());
    out
}

/// Which service (index into the services found) owns each interned chain and hash suffix;
/// `usize::MAX` for none yet.
struct Owners {
    chain: Vec<usize>,
    hash: Vec<usize>,
}

impl Owners {
    /// Give chain `c` (and its hash suffix) to service `id` unless owned already.
    fn claim(&mut self, chains: &Chains<'_>, c: usize, id: usize) {
        if self.chain[c] == usize::MAX {
            self.chain[c] = id;
        }
        let h = chains.hash[c];
        if h != NONE && self.hash[h as usize] == usize::MAX {
            self.hash[h as usize] = id;
        }
    }

    /// Siblings by hash (SVC/SVL/EXT/FW/XLB of one service share the suffix); then ownership
    /// along jumps from owned chains, until nothing changes.
    fn propagate(&mut self, infos: &[(usize, RuleInfo<'_>)], chains: &Chains<'_>) {
        loop {
            for (o, &h) in self.chain.iter_mut().zip(&chains.hash) {
                if *o == usize::MAX && h != NONE && self.hash[h as usize] != usize::MAX {
                    *o = self.hash[h as usize];
                }
            }
            let mut changed = false;
            for (_, ri) in infos {
                if ri.chain != NONE && ri.target != NONE {
                    let (c, t) = (ri.chain as usize, ri.target as usize);
                    if self.chain[t] == usize::MAX && self.chain[c] != usize::MAX {
                        let id = self.chain[c];
                        self.claim(chains, t, id);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
    }
}

/// The services named by comments, in order of first appearance, keyed by the word as written
/// less a trailing ':' ("ns/name:" and "ns/name" are one unnamed port); each rule's service by
/// its comment (`usize::MAX`: none). The chains such rules sit in or jump to are claimed.
fn by_comment(
    infos: &[(usize, RuleInfo<'_>)],
    chains: &Chains<'_>,
    owners: &mut Owners,
) -> (Vec<ServiceRules>, Vec<usize>) {
    let mut ids: HashMap<&str, usize> = HashMap::default();
    let mut out: Vec<ServiceRules> = Vec::new();
    let mut rule_svc: Vec<usize> = Vec::with_capacity(infos.len());
    for (_, ri) in infos {
        let Some((k, w)) = &ri.svc else {
            rule_svc.push(usize::MAX);
            continue;
        };
        let word = w.strip_suffix(':').unwrap_or(w);
        let id = *ids.entry(word).or_insert_with(|| {
            out.push(ServiceRules {
                key: ServiceKey {
                    namespace: k.0.to_string(),
                    name: k.1.to_string(),
                    port: k.2.to_string(),
                },
                written: w.to_string(),
                rules: Vec::new(),
                chains: Vec::new(),
                places: Vec::new(),
            });
            out.len() - 1
        });
        rule_svc.push(id);
        for c in [ri.chain, ri.target] {
            if c != NONE {
                owners.claim(chains, c as usize, id);
            }
        }
    }
    (out, rule_svc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse::parse;

    #[test]
    fn refs() {
        assert_eq!(
            parse_ref("default/echo:"),
            Some(("default", "echo", Some("")))
        );
        assert_eq!(
            parse_ref("ns1/svc1:p80"),
            Some(("ns1", "svc1", Some("p80")))
        );
        assert_eq!(
            parse_ref("default/test-svc"),
            Some(("default", "test-svc", None))
        );
        assert_eq!(parse_ref("10.0.0.0/8"), None);
        assert_eq!(parse_ref("Foo/bar"), None);
        let (k, w) = comment_ref("masquerade LOCAL traffic for default/echo: LB IP").unwrap();
        assert_eq!(k, ("default", "echo", ""));
        assert_eq!(w, "default/echo:");
        assert!(comment_ref("kubernetes service portals").is_none());
    }

    #[test]
    fn prefixes() {
        assert_eq!(per_service_prefix("KUBE-EXT-ABC"), Some("KUBE-EXT"));
        assert_eq!(per_service_prefix("KUBE-EXTERNAL-SERVICES"), None);
        assert_eq!(per_service_prefix("KUBE-FW-X"), Some("KUBE-FW"));
        assert_eq!(per_service_prefix("KUBE-SEP-ABC"), Some("KUBE-SEP"));
    }

    #[test]
    fn finds_xlb_chain_without_comment_on_sep() {
        let d = parse(
            "-A KUBE-NODEPORTS -p tcp -m comment --comment \"a/b:\" -m tcp --dport 3 -j KUBE-XLB-H\n\
             -A KUBE-XLB-H -m comment --comment \"Redirect pods\" -j KUBE-SVC-H\n\
             -A KUBE-XLB-H -j KUBE-SEP-E1\n\
             -A KUBE-SEP-E1 -s 10.1.1.1/32 -j KUBE-MARK-MASQ\n\
             -A KUBE-SEP-E1 -p tcp -m tcp -j DNAT --to-destination 10.1.1.1:80\n\
             -A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000\n\
             -A KUBE-SERVICES -m comment --comment \"c/d:\" -j KUBE-SVC-Z\n",
        )
        .unwrap();
        let s = services(&d, None);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].key.to_string(), "a/b:");
        assert_eq!(s[0].rules, vec![0, 1, 2, 3, 4]);
        let f = ServiceFilter::parse("a/b").unwrap();
        let s = services(&d, Some(&f));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].rules, vec![0, 1, 2, 3, 4]);
    }
}
