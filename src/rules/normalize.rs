//! Writing one service's rules without the values that differ between any two clusters.
//!
//! What is replaced: per-service chain hashes (`KUBE-XLB-<hash>`), endpoint chains and IPs
//! (`KUBE-SEP-<endpoint>`, `<endpoint>`; `<local-endpoint>` for those a local-only chain lists: by role and port, not numbered), NodePorts (`<nodeport>`,
//! `<hc-nodeport>`), cluster, LoadBalancer and external IPs (`<cluster-ip>`, `<lb-ip>`,
//! `<external-ip>`), counters, and the spelling differences between save formats (see
//! [`super::tokens::canonical`]). The service name in comments is written one way for both sides
//! ("ns/name:" and "ns/name" are the same unnamed port, spelt by old and new kube-proxy).

use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::sync::Arc;

use serde::Serialize;

use super::parse::{Dump, Table};
use super::service::{ServiceRules, parse_ref, per_service_prefix, rule_table};
use super::tokens;

/// One rule of a service, ready to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormRule {
    /// The chain's role, the same on both sides: `KUBE-XLB-<hash>`, `KUBE-SEP-<endpoint>`, or
    /// the shared chain's name (`KUBE-NODEPORTS`).
    pub role: Arc<str>,
    pub rule: Arc<RuleText>,
}

/// A line as written in a dump, shared with the dump's text (no copy per rule).
#[derive(Clone)]
pub struct Raw {
    text: Source,
    start: u32,
    end: u32,
}

/// A dump's text as lines taken from it hold it. Each thread (or each service) takes a handle
/// of its own ([`Raw::handle`]): its lines then count references on that handle, not on the
/// dump's one counter, which two threads would otherwise fight over a line at a time.
pub type Source = Arc<Arc<String>>;

impl Raw {
    /// A handle on `text` for the lines about to be taken from it.
    pub fn handle(text: &Arc<String>) -> Source {
        Arc::new(text.clone())
    }
    /// `text[range]`, sharing `text`.
    pub fn new(text: &Source, range: std::ops::Range<u32>) -> Raw {
        Raw {
            text: text.clone(),
            start: range.start,
            end: range.end,
        }
    }
    /// `part` of `text` (no copy) when it is one, else a copy of it.
    pub fn within(text: &Source, part: &str) -> Raw {
        let base = text.as_ptr() as usize;
        let at = part.as_ptr() as usize;
        if at >= base && at + part.len() <= base + text.len() {
            let start = (at - base) as u32;
            Raw::new(text, start..start + part.len() as u32)
        } else {
            Raw::owned(part)
        }
    }
    /// A whole text of its own.
    pub fn owned(s: &str) -> Raw {
        Raw {
            end: s.len() as u32,
            text: Arc::new(Arc::new(s.to_string())),
            start: 0,
        }
    }
    pub fn as_str(&self) -> &str {
        &self.text[self.start as usize..self.end as usize]
    }
}

impl std::ops::Deref for Raw {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Raw {
    fn eq(&self, o: &Raw) -> bool {
        self.as_str() == o.as_str()
    }
}
impl Eq for Raw {}

impl PartialEq<str> for Raw {
    fn eq(&self, o: &str) -> bool {
        self.as_str() == o
    }
}

impl PartialEq<&str> for Raw {
    fn eq(&self, o: &&str) -> bool {
        self.as_str() == *o
    }
}

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl RuleText {
    /// The compared text.
    pub fn rule(&self) -> &str {
        self.text.as_deref().unwrap_or(self.raw.as_str())
    }
}

impl Serialize for RuleText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = s.serialize_struct("RuleText", 5)?;
        m.serialize_field("rule", self.rule())?;
        m.serialize_field("raw", &self.raw)?;
        m.serialize_field("line", &self.line)?;
        m.serialize_field("chain", &self.chain)?;
        m.serialize_field("table", &self.table)?;
        m.end()
    }
}

impl std::fmt::Display for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// One rule as it stands on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    /// The compared text when it is not the line as written (normalized: shared with the other
    /// side's identical text); `None` when it is the line (`--raw`), which is then not copied.
    pub text: Option<Arc<str>>,
    /// The line as written in the dump.
    pub raw: Raw,
    /// 1-based line in the dump.
    pub line: u32,
    /// The chain's real name on that side.
    pub chain: Raw,
    pub table: Table,
}

#[derive(Default)]
struct Facts<'a> {
    /// Per-service chain -> its role (`KUBE-SVC-<hash>`, `KUBE-SEP-<endpoint>`).
    chains: HashMap<&'a str, Arc<str>>,
    ips: HashMap<String, String>,
    nodeports: HashMap<String, &'static str>,
}

fn strip_prefix32(v: &str) -> &str {
    v.strip_suffix("/32").unwrap_or(v)
}

/// Split "1.2.3.4:80" into ("1.2.3.4", Some("80")).
fn split_hostport(v: &str) -> (&str, Option<&str>) {
    match v.rsplit_once(':') {
        Some((h, p)) if h.parse::<Ipv4Addr>().is_ok() => (h, Some(p)),
        _ => (v, None),
    }
}

/// The words of a rule that tell its role, found in one pass (each the value after the first
/// occurrence of its option): a rule has some 15 words, and every rule is looked at.
#[derive(Default)]
struct Marks<'a> {
    jump: Option<Option<&'a str>>,
    to_destination: Option<Option<&'a str>>,
    comment: Option<Option<&'a str>>,
    destination: Option<Option<&'a str>>,
    dport: Option<Option<&'a str>>,
    local: bool,
}

impl<'a> Marks<'a> {
    fn of(words: &[&'a str]) -> Marks<'a> {
        let mut m = Marks::default();
        for (i, w) in words.iter().enumerate() {
            let slot = match *w {
                "-j" => &mut m.jump,
                "--to-destination" => &mut m.to_destination,
                "--comment" => &mut m.comment,
                "-d" | "--destination" => &mut m.destination,
                "--dport" => &mut m.dport,
                "LOCAL" => {
                    m.local = true;
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(words.get(i + 1).copied());
            }
        }
        m
    }
    fn get(v: Option<Option<&'a str>>) -> Option<&'a str> {
        v.flatten()
    }
}

fn gather<'a>(d: &'a Dump, s: &'a ServiceRules, words: &[&[&'a str]]) -> Facts<'a> {
    let mut f = Facts::default();
    // Endpoint chains: known by role (local: listed by the KUBE-SVL/KUBE-XLB chain, which
    // reaches only local endpoints) and port, not numbered, so that two clusters listing the same
    // endpoints in other orders are equal and one endpoint more is exactly that.
    let mut local: Vec<&str> = Vec::new();
    let mut endpoint: HashMap<&str, (Ipv4Addr, u16)> = HashMap::default();
    for (&i, words) in s.rules.iter().zip(words) {
        let r = &d.rules[i];
        let chain = d.rule_chain(r);
        let marks = Marks::of(words);
        match per_service_prefix(chain) {
            Some("KUBE-SVL" | "KUBE-XLB") => {
                if let Some(t) = Marks::get(marks.jump)
                    && t.starts_with("KUBE-SEP-")
                    && !local.contains(&t)
                {
                    local.push(t);
                }
            }
            Some("KUBE-SEP") => {
                if !endpoint.contains_key(chain)
                    && let Some(to) = Marks::get(marks.to_destination)
                {
                    let (h, p) = split_hostport(to);
                    if let Ok(ip) = h.parse() {
                        let port = p.and_then(|p| p.parse().ok()).unwrap_or(0);
                        endpoint.insert(chain, (ip, port));
                    }
                }
            }
            _ => {}
        }
        let comment = Marks::get(marks.comment).unwrap_or("");
        let role = if comment.contains("cluster IP")
            || (chain == "KUBE-SERVICES" && comment.contains("has no endpoints"))
        {
            Some("<cluster-ip>")
        } else if comment.contains("loadbalancer IP") {
            Some("<lb-ip>")
        } else if comment.contains("external IP") {
            Some("<external-ip>")
        } else {
            None
        };
        if let (Some(role), Some(ip)) = (role, Marks::get(marks.destination)) {
            let ip = strip_prefix32(ip);
            if !f.ips.contains_key(ip) {
                f.ips.insert(ip.to_string(), role.to_string());
            }
        }
        let nodeport_chain =
            chain == "KUBE-NODEPORTS" || (chain == "KUBE-EXTERNAL-SERVICES" && marks.local);
        if nodeport_chain && let Some(p) = Marks::get(marks.dport) {
            let ph = if comment.contains("health check") {
                "<hc-nodeport>"
            } else {
                "<nodeport>"
            };
            f.nodeports.entry(p.to_string()).or_insert(ph);
        }
    }
    for c in &s.chains {
        let role: &'static str = match per_service_prefix(c) {
            Some("KUBE-SEP") => {
                let label = if local.contains(&c.as_str()) {
                    "<local-endpoint>"
                } else {
                    "<endpoint>"
                };
                if let Some((ip, _)) = endpoint.get(c.as_str()) {
                    f.ips.insert(ip.to_string(), label.to_string());
                }
                f.chains
                    .insert(c.as_str(), Arc::from(format!("KUBE-SEP-{label}")));
                continue;
            }
            Some("KUBE-SVC") => "KUBE-SVC-<hash>",
            Some("KUBE-SVL") => "KUBE-SVL-<hash>",
            Some("KUBE-EXT") => "KUBE-EXT-<hash>",
            Some("KUBE-FW") => "KUBE-FW-<hash>",
            Some("KUBE-XLB") => "KUBE-XLB-<hash>",
            _ => continue,
        };
        f.chains.insert(c.as_str(), Arc::from(role));
    }
    f
}

impl Facts<'_> {
    fn map_word<'s>(
        &'s self,
        w: &str,
        display: &'s str,
        key: &super::service::ServiceKey,
    ) -> Option<Cow<'s, str>> {
        let first = w.as_bytes().first().copied().unwrap_or(b' ');
        if first == b'K'
            && let Some(c) = self.chains.get(w)
        {
            return Some(Cow::Borrowed(c));
        }
        if !first.is_ascii_digit() && !w.contains('/') {
            return None;
        }
        let bare = strip_prefix32(w);
        let (host, port) = split_hostport(bare);
        if let Some(ph) = self.ips.get(host) {
            return Some(match port {
                Some(p) => Cow::Owned(format!("{ph}:{p}")),
                None => Cow::Borrowed(ph),
            });
        }
        if w != display
            && w.contains('/')
            && let Some((ns, name, port)) = parse_ref(w)
            && ns == key.namespace
            && name == key.name
            && port.unwrap_or("") == key.port
        {
            return Some(Cow::Borrowed(display));
        }
        None
    }
}

/// For each rule of `s`: when it jumps to an endpoint chain that an earlier rule of its chain
/// jumps to already, that rule's place in the chain (1-based). Endpoint chains are all written
/// `KUBE-SEP-<endpoint>`: without this, a statistic cascade whose branches all jump to one
/// endpoint would read like one that spreads over as many endpoints as it has branches.
fn repeated_endpoints(d: &Dump, s: &ServiceRules, bodies: &[&str]) -> Vec<Option<u32>> {
    /// A chain: its name, its rules seen so far, and the endpoint chains they jump to (each with
    /// the first such rule's place).
    type Seen<'a> = (&'a str, u32, Vec<(&'a str, u32)>);
    let mut seen: Vec<Seen> = Vec::new();
    let mut out = Vec::with_capacity(bodies.len());
    for (&i, body) in s.rules.iter().zip(bodies) {
        let chain = d.rule_chain(&d.rules[i]);
        let k = match seen.iter().position(|c| c.0 == chain) {
            Some(k) => k,
            None => {
                seen.push((chain, 0, Vec::new()));
                seen.len() - 1
            }
        };
        let (_, place, targets) = &mut seen[k];
        *place += 1;
        let target =
            tokens::jump_target(body).filter(|t| per_service_prefix(t) == Some("KUBE-SEP"));
        out.push(
            target.and_then(|t| match targets.iter().find(|x| x.0 == t) {
                Some(x) => Some(x.1),
                None => {
                    targets.push((t, *place));
                    None
                }
            }),
        );
    }
    out
}

/// The rules of `s`, normalized (or raw when `raw`). `display` is how the service is written in
/// comments on both sides.
pub fn normalize(d: &Dump, s: &ServiceRules, display: &str, raw: bool) -> Vec<NormRule> {
    normalize_sharing(d, s, display, raw, &Known::default())
}

/// Texts already kept (the other side's), to share instead of copying.
pub type Known = rustc_hash::FxHashSet<Arc<str>>;

/// The texts of `rules`, for [`normalize_sharing`].
pub fn known(rules: &[NormRule]) -> Known {
    rules.iter().filter_map(|r| r.rule.text.clone()).collect()
}

/// [`normalize`], sharing every text that `known` holds already.
pub fn normalize_sharing(
    d: &Dump,
    s: &ServiceRules,
    display: &str,
    raw: bool,
    known: &Known,
) -> Vec<NormRule> {
    // A service's rules lie all over the dump: their lines are asked for all at once, so that
    // the reads from memory overlap instead of waiting one by one (most of the time here).
    let bodies: Vec<&str> = s.rules.iter().map(|&i| d.rule_body(&d.rules[i])).collect();
    let first = |b: &&str| b.as_bytes().first().copied().unwrap_or(0);
    std::hint::black_box(bodies.iter().fold(0u8, |a, b| a ^ first(b)));
    // All words of the service in one buffer; `spans[k]` are rule k's.
    let mut all: Vec<&str> = Vec::with_capacity(s.rules.len() * 16);
    let mut spans = Vec::with_capacity(s.rules.len());
    for body in &bodies {
        let start = all.len();
        tokens::split_into(&mut all, body);
        spans.push(start..all.len());
    }
    let words: Vec<&[&str]> = spans.into_iter().map(|r| &all[r]).collect();
    let facts = gather(d, s, &words);
    let again = repeated_endpoints(d, s, &bodies);
    let mut out = Vec::with_capacity(s.rules.len());
    // Roles and real names, one shared string per chain.
    let mut names: HashMap<&str, (Arc<str>, Raw)> = HashMap::default();
    let source = Raw::handle(&d.text);
    // Each rule's text is written here, then kept (or found kept already).
    let mut text = String::with_capacity(256);
    for (k, ((&i, words), again)) in s.rules.iter().zip(&words).zip(&again).enumerate() {
        let r = &d.rules[i];
        let chain = d.rule_chain(r);
        let (role, chain_name) = names
            .entry(chain)
            .or_insert_with(|| {
                let role = facts
                    .chains
                    .get(chain)
                    .cloned()
                    .unwrap_or_else(|| Arc::from(chain));
                (role, Raw::within(&source, chain))
            })
            .clone();
        let rule: Option<Arc<str>> = if raw {
            None
        } else {
            let mut map = |opt: &str, v: &str| -> Option<Cow<'_, str>> {
                match opt {
                    "--dport" | "--dports" => facts.nodeports.get(v).map(|p| Cow::Borrowed(*p)),
                    "--comment" => {
                        // Most comments map to themselves: build a new one only when a word
                        // really changes.
                        let mut out: Option<String> = None;
                        for (k, w) in v.split(' ').enumerate() {
                            let m = facts.map_word(w, display, &s.key).filter(|m| *m != w);
                            if m.is_some() && out.is_none() {
                                let mut o = String::with_capacity(v.len() + 16);
                                for (j, prev) in v.split(' ').enumerate().take(k) {
                                    if j > 0 {
                                        o.push(' ');
                                    }
                                    o.push_str(prev);
                                }
                                out = Some(o);
                            }
                            if let Some(o) = out.as_mut() {
                                if k > 0 {
                                    o.push(' ');
                                }
                                o.push_str(m.as_deref().unwrap_or(w));
                            }
                        }
                        out.map(Cow::Owned)
                    }
                    _ => facts.map_word(v, display, &s.key),
                }
            };
            text.clear();
            text.push_str("-A ");
            text.push_str(&role);
            tokens::canonical_into(&mut text, words, &mut map);
            if let Some(first) = again {
                text.push_str(" (same endpoint as rule ");
                text.push_str(&first.to_string());
                text.push(')');
            }
            if let Some(p) = s.places.get(k) {
                text.push_str(p.suffix());
            }
            // The other side's identical text when there is one (most rules of two clusters
            // are equal once normalized): one copy kept, not two.
            Some(match known.get(text.as_str()) {
                Some(k) => k.clone(),
                None => Arc::from(text.as_str()),
            })
        };
        out.push(NormRule {
            role,
            rule: Arc::new(RuleText {
                text: rule,
                raw: Raw::new(&source, r.raw.clone()),
                line: r.line,
                chain: chain_name,
                table: rule_table(d, r),
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::parse::parse;
    use crate::rules::service::services;

    #[test]
    fn replaces_incidental_values() {
        let d = parse(
            "*nat\n\
             -A KUBE-SERVICES -d 10.96.0.5/32 -p tcp -m comment --comment \"default/echo: cluster IP\" -m tcp --dport 8080 -j KUBE-SVC-AAAA\n\
             -A KUBE-SERVICES -d 172.17.255.1/32 -p tcp -m comment --comment \"default/echo: loadbalancer IP\" -m tcp --dport 8080 -j KUBE-FW-AAAA\n\
             -A KUBE-NODEPORTS -p tcp -m comment --comment \"default/echo:\" -m tcp --dport 30012 -j KUBE-XLB-AAAA\n\
             -A KUBE-SVC-AAAA -m comment --comment \"default/echo: -> 10.244.2.2:8080\" -j KUBE-SEP-ZZZZ\n\
             -A KUBE-SEP-ZZZZ -s 10.244.2.2/32 -j KUBE-MARK-MASQ\n\
             -A KUBE-SEP-ZZZZ -p tcp -m tcp -j DNAT --to-destination 10.244.2.2:8080\n\
             COMMIT\n",
        )
        .unwrap();
        let s = &services(&d, None)[0];
        let n = normalize(&d, s, "default/echo:", false);
        let texts: Vec<&str> = n.iter().map(|r| r.rule.rule()).collect();
        assert_eq!(
            texts,
            vec![
                "-A KUBE-SERVICES -d <cluster-ip> -p tcp -m comment --comment \"default/echo: cluster IP\" -m tcp --dport 8080 -j KUBE-SVC-<hash>",
                "-A KUBE-SERVICES -d <lb-ip> -p tcp -m comment --comment \"default/echo: loadbalancer IP\" -m tcp --dport 8080 -j KUBE-FW-<hash>",
                "-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/echo:\" -m tcp --dport <nodeport> -j KUBE-XLB-<hash>",
                "-A KUBE-SVC-<hash> -m comment --comment \"default/echo: -> <endpoint>:8080\" -j KUBE-SEP-<endpoint>",
                "-A KUBE-SEP-<endpoint> -s <endpoint> -j KUBE-MARK-MASQ",
                "-A KUBE-SEP-<endpoint> -p tcp -m tcp -j DNAT --to-destination <endpoint>:8080",
            ]
        );
        assert_eq!(&*n[2].rule.chain, "KUBE-NODEPORTS");
        assert_eq!(&*n[3].rule.chain, "KUBE-SVC-AAAA");
        let raw = normalize(&d, s, "default/echo:", true);
        assert!(raw[2].rule.rule().contains("30012"));
    }
}
