//! kube-proxy's nftables mode: `nft list table ip kube-proxy` output (and knftables'
//! `add chain/rule/element ...` transaction format), grouped by Service and normalized like the
//! iptables rules, so that the same diff applies.
//!
//! Every rule becomes an item of its chain; every map or set element becomes an item of a
//! pseudo-chain `map NAME` / `set NAME`. Per-service chains are named
//! `service-HASH-ns/name/proto/port`, `external-...`, `firewall-...` and
//! `endpoint-HASH-ns/name/proto/port__IP/PORT`; map elements belong to the service of the chain
//! they go to, or to the one their comment names.

use std::net::Ipv4Addr;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use super::normalize::{NormRule, RuleText};
use super::parse::{ParseError, Table};
use super::service::{ServiceFilter, ServiceKey};

/// One rule or element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The chain, or `map NAME` / `set NAME`.
    pub chain: String,
    pub text: String,
    pub line: u32,
}

#[derive(Debug, Clone, Default)]
pub struct NftDump {
    pub items: Vec<Item>,
}

fn err(line: usize, reason: impl Into<String>) -> ParseError {
    ParseError {
        line: line as u32,
        reason: reason.into(),
    }
}

/// Whether a text looks like an nftables dump rather than an iptables one.
pub fn looks_like_nft(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .is_some_and(|l| {
            l.starts_with("table ") || l.starts_with("add table ") || l.starts_with("flush table ")
        })
}

/// Split at top-level commas (outside braces and quotes).
fn split_elements(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// Parse `nft list table` output or knftables' transaction format.
pub fn parse(text: &str) -> Result<NftDump, ParseError> {
    let mut p = Parser::default();
    for (i, raw) in text.lines().enumerate() {
        p.line(i + 1, raw.trim())?;
    }
    let last = text.lines().count();
    if p.elements.is_some() {
        return Err(err(last, "unterminated elements list"));
    }
    if p.block.is_some() || p.in_table {
        return Err(err(last, "unterminated block (truncated dump?)"));
    }
    Ok(NftDump { items: p.items })
}

/// The parser's state between lines.
#[derive(Default)]
struct Parser {
    items: Vec<Item>,
    /// `nft list` state: the block we are in (chain NAME, `map NAME`, `set NAME`).
    block: Option<String>,
    in_table: bool,
    /// An elements list being read over several lines: its text so far and first line.
    elements: Option<(String, usize)>,
}

impl Parser {
    fn push(&mut self, chain: String, text: String, line: usize) {
        self.items.push(Item {
            chain,
            text,
            line: line as u32,
        });
    }

    fn push_elements(&mut self, chain: &str, inner: &str, line: usize) {
        for e in split_elements(inner) {
            self.push(chain.to_string(), e, line);
        }
    }

    fn line(&mut self, n: usize, l: &str) -> Result<(), ParseError> {
        if let Some((acc, start)) = self.elements.as_mut() {
            acc.push(' ');
            acc.push_str(l);
            if l.ends_with('}') {
                let start = *start;
                let inner = acc
                    .trim()
                    .trim_start_matches('{')
                    .trim_end_matches('}')
                    .to_string();
                let name = self.block.clone().unwrap_or_default();
                self.push_elements(&name, &inner, start);
                self.elements = None;
            }
            return Ok(());
        }
        if l.is_empty() || l.starts_with('#') || l.starts_with("flush ") || l.starts_with("delete ")
        {
            return Ok(());
        }
        match l.strip_prefix("add ") {
            Some(rest) => self.transaction(n, rest),
            None => self.listing(n, l),
        }
    }

    /// A line of knftables' transaction format (`add ...`).
    fn transaction(&mut self, n: usize, rest: &str) -> Result<(), ParseError> {
        let mut w = rest.splitn(4, ' ');
        let what = w.next().unwrap_or("");
        let (_family, _table) = (w.next(), w.next());
        let tail = w.next().unwrap_or("");
        match what {
            "rule" => {
                let (chain, body) = tail
                    .split_once(' ')
                    .ok_or_else(|| err(n, "add rule without a chain and a rule"))?;
                self.push(chain.to_string(), body.trim().to_string(), n);
            }
            "element" => {
                let (set, body) = tail
                    .split_once(' ')
                    .ok_or_else(|| err(n, "add element without a set and elements"))?;
                let inner = body.trim().trim_start_matches('{').trim_end_matches('}');
                let kind = if inner.contains(" : ") { "map" } else { "set" };
                self.push_elements(&format!("{kind} {set}"), inner, n);
            }
            "table" | "chain" | "map" | "set" => {}
            _ => return Err(err(n, format!("unknown nftables command 'add {what}'"))),
        }
        Ok(())
    }

    /// A line of `nft list` output.
    fn listing(&mut self, n: usize, l: &str) -> Result<(), ParseError> {
        if l.starts_with("table ") {
            if !l.ends_with('{') {
                return Err(err(n, "expected 'table FAMILY NAME {'"));
            }
            self.in_table = true;
            return Ok(());
        }
        if !self.in_table {
            let shown: String = l.chars().take(60).collect();
            return Err(err(n, format!("not an nftables line: '{shown}'")));
        }
        if l == "}" {
            if self.block.take().is_none() {
                self.in_table = false;
            }
            return Ok(());
        }
        if let Some(rest) = l.strip_suffix('{') {
            return self.open_block(n, rest.trim());
        }
        let Some(b) = self.block.clone() else {
            // Table-level lines: comment, flags.
            return Ok(());
        };
        const DECLARATIONS: [&str; 5] = ["type ", "comment ", "flags ", "timeout ", "policy "];
        if DECLARATIONS.iter().any(|d| l.starts_with(d)) {
            return Ok(());
        }
        if let Some(rest) = l.strip_prefix("elements = ") {
            if rest.ends_with('}') {
                let inner = rest.trim().trim_start_matches('{').trim_end_matches('}');
                self.push_elements(&b, inner, n);
            } else {
                self.elements = Some((rest.to_string(), n));
            }
            return Ok(());
        }
        if !(b.starts_with("map ") || b.starts_with("set ")) {
            self.push(b, l.to_string(), n);
        }
        Ok(())
    }

    /// `chain NAME {`, `map NAME {` or `set NAME {`.
    fn open_block(&mut self, n: usize, rest: &str) -> Result<(), ParseError> {
        let (kind, name) = rest
            .split_once(' ')
            .ok_or_else(|| err(n, "expected 'chain|map|set NAME {'"))?;
        if !matches!(kind, "chain" | "map" | "set") {
            return Err(err(n, format!("unexpected block '{kind}'")));
        }
        if self.block.is_some() {
            return Err(err(n, "a block inside a block"));
        }
        self.block = Some(if kind == "chain" {
            name.trim().to_string()
        } else {
            format!("{kind} {}", name.trim())
        });
        Ok(())
    }
}

/// A per-service chain name: (kind, hash, service part "ns/name/proto/port", endpoint "IP/PORT").
fn split_chain(name: &str) -> Option<(&str, &str, &str, Option<&str>)> {
    let (kind, rest) = name.split_once('-')?;
    if !matches!(
        kind,
        "service" | "external" | "firewall" | "endpoint" | "affinity"
    ) {
        return None;
    }
    let (hash, rest) = rest.split_once('-')?;
    if hash.len() != 8
        || !hash
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return None;
    }
    let (svc, ep) = match rest.split_once("__") {
        Some((s, e)) => (s, Some(e)),
        None => (rest, None),
    };
    (svc.split('/').count() == 4).then_some((kind, hash, svc, ep))
}

fn key_of(svc: &str) -> Option<ServiceKey> {
    let mut p = svc.split('/');
    let (ns, name, _proto, port) = (p.next()?, p.next()?, p.next()?, p.next()?);
    Some(ServiceKey {
        namespace: ns.to_string(),
        name: name.to_string(),
        port: port.to_string(),
    })
}

/// The per-service chains an item mentions.
fn mentioned(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || c == '@' || c == ',' || c == '{' || c == '}')
        .filter(|w| split_chain(w).is_some())
}

/// The service an item belongs to.
fn owner(it: &Item) -> Option<ServiceKey> {
    if let Some((_, _, svc, _)) = split_chain(&it.chain) {
        return key_of(svc);
    }
    if let Some(c) = mentioned(&it.text).next() {
        return split_chain(c).and_then(|(_, _, svc, _)| key_of(svc));
    }
    // `... comment "ns/name:port" : drop` (no-endpoint maps).
    let q = it.text.split('"').nth(1)?;
    let (ns, rest) = q.split_once('/')?;
    let (name, port) = rest.split_once(':').unwrap_or((rest, ""));
    Some(ServiceKey {
        namespace: ns.to_string(),
        name: name.to_string(),
        port: port.to_string(),
    })
}

/// Items by service (in dump order), filtered.
pub fn services(d: &NftDump, filter: Option<&ServiceFilter>) -> Vec<(ServiceKey, Vec<usize>)> {
    let mut ids: HashMap<ServiceKey, usize> = HashMap::default();
    let mut out: Vec<(ServiceKey, Vec<usize>)> = Vec::new();
    for (i, it) in d.items.iter().enumerate() {
        let Some(k) = owner(it) else { continue };
        if filter.is_some_and(|f| !f.matches(&k)) {
            continue;
        }
        let id = *ids.entry(k.clone()).or_insert_with(|| {
            out.push((k, Vec::new()));
            out.len() - 1
        });
        out[id].1.push(i);
    }
    out
}

fn endpoint_ip(ep: &str) -> Option<(Ipv4Addr, u16)> {
    let (ip, port) = ep.split_once('/')?;
    Some((ip.parse().ok()?, port.parse().ok()?))
}

/// A service's items, normalized (or raw): chain hashes, endpoints (numbered by IP), cluster
/// and LoadBalancer/external IPs, NodePorts.
pub fn normalize(d: &NftDump, idx: &[usize], raw: bool) -> Vec<NormRule> {
    let items: Vec<&Item> = idx.iter().map(|&i| &d.items[i]).collect();
    let names = Names::learn(&items);
    items.iter().map(|it| names.normalize(it, raw)).collect()
}

/// What a service's incidental values are written as: its endpoints (in IP order), IPs and
/// NodePorts.
struct Names {
    eps: Vec<((Ipv4Addr, u16), String)>,
    ips: HashMap<String, String>,
    nodeports: HashMap<String, &'static str>,
}

impl Names {
    fn learn(items: &[&Item]) -> Names {
        let mut n = Names {
            eps: endpoints(items),
            ips: HashMap::default(),
            nodeports: HashMap::default(),
        };
        for (k, ((ip, _), _)) in n.eps.iter().enumerate() {
            n.ips
                .insert(ip.to_string(), format!("<endpoint-{}>", k + 1));
        }
        for it in items {
            n.learn_item(it);
        }
        n
    }

    /// Cluster, LB and external IPs and NodePorts named by map elements and service chains.
    fn learn_item(&mut self, it: &Item) {
        let words: Vec<&str> = it.text.split_whitespace().collect();
        let c = it.chain.as_str();
        if c.starts_with("map ") {
            // "IP . proto . port : goto CHAIN" or "proto . port : goto CHAIN".
            let target = words
                .iter()
                .rev()
                .find(|w| split_chain(w).is_some())
                .copied();
            let kind = target.and_then(split_chain).map(|x| x.0);
            if words.len() >= 3 && words[1] == "." && words[0].parse::<Ipv4Addr>().is_err() {
                self.nodeports
                    .entry(words[2].to_string())
                    .or_insert("<nodeport>");
            } else if let Ok(ip) = words.first().copied().unwrap_or("").parse::<Ipv4Addr>() {
                let role = match kind {
                    Some("service") => "<cluster-ip>",
                    _ if c.ends_with("cluster-ips") => "<cluster-ip>",
                    _ => "<lb-ip>",
                };
                self.ips
                    .entry(ip.to_string())
                    .or_insert_with(|| role.to_string());
            }
        } else if c.starts_with("service-")
            && let Some(p) = words.iter().position(|w| *w == "daddr")
            && let Some(ip) = words.get(p + 1)
            && ip.parse::<Ipv4Addr>().is_ok()
        {
            self.ips
                .entry(ip.to_string())
                .or_insert_with(|| "<cluster-ip>".into());
        }
    }

    /// A chain name or an IP (with or without a port) as it is compared; `None` when neither.
    fn word(&self, w: &str) -> Option<String> {
        if let Some((kind, _hash, svc, ep)) = split_chain(w) {
            return Some(
                match ep.and_then(|e| self.eps.iter().position(|(_, s)| s == e)) {
                    Some(k) => format!("{kind}-<endpoint-{}>-{svc}", k + 1),
                    None => format!("{kind}-<hash>-{svc}"),
                },
            );
        }
        let (host, port) = match w.rsplit_once(':') {
            Some((h, p)) if h.parse::<Ipv4Addr>().is_ok() => (h, Some(p)),
            _ => (w, None),
        };
        let ph = self.ips.get(host)?;
        Some(match port {
            Some(p) => format!("{ph}:{p}"),
            None => ph.clone(),
        })
    }

    fn normalize(&self, it: &Item, raw: bool) -> NormRule {
        let role = self.word(&it.chain).unwrap_or_else(|| it.chain.clone());
        let text = if raw {
            format!("{}: {}", it.chain, it.text)
        } else {
            format!("{role}: {}", self.rewrite(it))
        };
        NormRule {
            role: Arc::from(role.as_str()),
            rule: Arc::new(RuleText {
                rule: text,
                raw: it.text.clone(),
                line: it.line,
                chain: Arc::from(it.chain.as_str()),
                table: Table::Nat,
            }),
        }
    }

    /// The item's text with its incidental values replaced.
    fn rewrite(&self, it: &Item) -> String {
        let mut out = String::with_capacity(it.text.len() + 16);
        let words: Vec<&str> = it.text.split(' ').collect();
        for (k, w) in words.iter().enumerate() {
            if k > 0 {
                out.push(' ');
            }
            let prev = if k > 0 { words[k - 1] } else { "" };
            let next = words.get(k + 1).copied().unwrap_or("");
            // A NodePort: "proto . PORT :" in a map element.
            let is_nodeport = it.chain.starts_with("map ")
                && prev == "."
                && (next == ":" || next == "comment")
                && k == 2
                && self.nodeports.contains_key(*w);
            let trimmed = w.trim_end_matches(',');
            match (is_nodeport, self.word(trimmed)) {
                (true, _) => out.push_str("<nodeport>"),
                (false, Some(m)) => {
                    out.push_str(&m);
                    out.push_str(&w[trimmed.len()..]);
                }
                (false, None) => out.push_str(w),
            }
        }
        out
    }
}

/// The endpoints a service's items name, in IP order.
fn endpoints(items: &[&Item]) -> Vec<((Ipv4Addr, u16), String)> {
    let mut eps: Vec<((Ipv4Addr, u16), String)> = Vec::new();
    for it in items {
        for n in std::iter::once(it.chain.as_str()).chain(mentioned(&it.text)) {
            if let Some((_, _, _, Some(ep))) = split_chain(n)
                && let Some(e) = endpoint_ip(ep)
                && !eps.iter().any(|(x, _)| *x == e)
            {
                eps.push((e, ep.to_string()));
            }
        }
    }
    eps.sort();
    eps
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str =
        include_str!("../../tests/fixtures/nftables/k3s-real-nft-list-table-ip-kube-proxy.txt");
    const TXN: &str = include_str!(
        "../../tests/fixtures/nftables/k8s-nftables-proxier_test-TestOverallNFTablesRules.txt"
    );

    #[test]
    fn parses_both_formats() {
        assert!(looks_like_nft(LIST) && looks_like_nft(TXN));
        assert!(!looks_like_nft("*nat\n-A X -j Y\nCOMMIT\n"));
        let d = parse(LIST).unwrap();
        let svc: Vec<_> = d
            .items
            .iter()
            .filter(|i| i.chain == "service-P6J77WGM-riset/hellopod-np-svc/tcp/")
            .collect();
        assert_eq!(svc.len(), 2);
        assert!(svc[1].text.starts_with("numgen random mod 9 vmap"));
        let ips: Vec<_> = d
            .items
            .iter()
            .filter(|i| i.chain == "map service-ips")
            .collect();
        assert_eq!(ips.len(), 9);
        assert!(ips.iter().any(|i| i.text
            == "10.43.195.72 . tcp . 8000 : goto service-P6J77WGM-riset/hellopod-np-svc/tcp/"));
        let t = parse(TXN).unwrap();
        assert!(t.items.iter().any(|i| i.chain == "map service-nodeports"
            && i.text == "tcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80"));
        assert!(parse("table ip kube-proxy {\n chain x {\n").is_err());
        let e = parse("table ip kube-proxy {\n}\nbogus\n").unwrap_err();
        assert_eq!(e.line, 3);
    }

    #[test]
    fn groups_and_normalizes() {
        let t = parse(TXN).unwrap();
        let s = services(&t, None);
        let keys: Vec<String> = s.iter().map(|(k, _)| k.to_string()).collect();
        for want in [
            "ns1/svc1:p80",
            "ns2/svc2:p80",
            "ns5/svc5:p80",
            "ns6/svc6:p80",
        ] {
            assert!(keys.contains(&want.to_string()), "{want} in {keys:?}");
        }
        let (_, idx) = s
            .iter()
            .find(|(k, _)| k.to_string() == "ns2/svc2:p80")
            .unwrap();
        let n = normalize(&t, idx, false);
        let texts: Vec<&str> = n.iter().map(|r| r.rule.rule.as_str()).collect();
        assert!(texts.contains(&"service-<hash>-ns2/svc2/tcp/p80: ip daddr <cluster-ip> ip saddr != 10.0.0.0/8 jump mark-for-masquerade"), "{texts:#?}");
        assert!(
            texts.contains(
                &"map service-nodeports: tcp . <nodeport> : goto external-<hash>-ns2/svc2/tcp/p80"
            ),
            "{texts:#?}"
        );
        assert!(
            texts.contains(
                &"map service-ips: <lb-ip> . tcp . 80 : goto external-<hash>-ns2/svc2/tcp/p80"
            ),
            "{texts:#?}"
        );
        assert!(
            texts.contains(
                &"endpoint-<endpoint-1>-ns2/svc2/tcp/p80: meta l4proto tcp dnat to <endpoint-1>:80"
            ),
            "{texts:#?}"
        );
    }
}
