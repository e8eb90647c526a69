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

use super::normalize::{Known, NormRule, Raw, RuleText};
use super::parse::{ParseError, Table};
use super::service::{ServiceFilter, ServiceKey};

/// One rule, element, or base-chain declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The chain (a part of the dump's text), or `map NAME` / `set NAME`.
    pub chain: Raw,
    /// The item as written: a part of the dump's text (not a copy), except for base-chain
    /// declarations (written one way, see [`declaration`]) and elements that span lines.
    pub text: Raw,
    pub line: u32,
    /// The table, when it is not `ip kube-proxy` ("ip6 kube-proxy", "inet filter", ...).
    pub table: Option<Arc<String>>,
    /// A declaration of its chain, set, map or table (`type ...`, `flags ...`, `timeout ...`,
    /// `comment ...`), not a rule or an element: compared in one spelling (see
    /// [`declared`]), as written with `--raw`.
    pub decl: bool,
}

impl Item {
    /// A rule, an element, or a base chain's `type ... hook ...`: what kube-proxy writes into
    /// its table, not the table's header or comment nor a set's or map's declaration.
    pub fn is_content(&self) -> bool {
        let set = self.chain.starts_with("map ") || self.chain.starts_with("set ");
        !self.decl || (!set && &*self.chain != "table" && self.text.starts_with("type "))
    }
}

/// A parsed dump: its text and its items, which point into it.
#[derive(Debug, Clone, Default)]
pub struct NftDump {
    pub text: Arc<String>,
    pub items: Vec<Item>,
    /// Every table the dump lists ("ip kube-proxy", "inet filter", ...), read or not, in order.
    pub tables: Vec<String>,
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
            l.starts_with("table ")
                || l.starts_with("add table ")
                || l.starts_with("flush table ")
                || l.starts_with("flush ruleset")
        })
}

/// Whether a table is kube-proxy's (`ip kube-proxy`, `ip6 kube-proxy`).
pub fn is_kube_proxy(family: &str, name: &str) -> bool {
    name == "kube-proxy" && matches!(family, "ip" | "ip6")
}

/// A line without its trailing `# ...` comment (`nft -a` prints `# handle N` after any line),
/// and whether its quotes are balanced.
fn strip_comment(l: &str) -> (&str, bool) {
    let mut quoted = false;
    for (i, c) in l.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return (l[..i].trim_end(), true),
            _ => {}
        }
    }
    (l, !quoted)
}

/// Braces opened minus closed, outside quotes.
fn brace_depth(l: &str) -> i64 {
    let mut quoted = false;
    let mut d = 0;
    for c in l.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => d += 1,
            '}' if !quoted => d -= 1,
            _ => {}
        }
    }
    d
}

/// Split at top-level commas (outside braces and quotes): the parts, trimmed, each a part of `s`
/// (no copies); empty parts (a trailing comma) left out.
pub(super) fn split_elements(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => depth += 1,
            '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out.retain(|e| !e.is_empty());
    out
}

/// Parse `nft list table`/`nft list ruleset` output (with or without `-a` handles) or knftables'
/// transaction format. Only kube-proxy's tables are read unless `all_tables`.
pub fn parse(text: &str) -> Result<NftDump, ParseError> {
    parse_tables(text.to_string(), false)
}

/// [`parse`], taking the text (the items point into it) and choosing whether tables that are not
/// kube-proxy's are read too.
pub fn parse_tables(text: String, all_tables: bool) -> Result<NftDump, ParseError> {
    let text = Arc::new(text);
    let (items, tables) = Parser::new(&text, all_tables).run()?;
    Ok(NftDump {
        text,
        items,
        tables,
    })
}

impl<'a> Parser<'a> {
    fn new(text: &'a Arc<String>, all_tables: bool) -> Parser<'a> {
        Parser {
            src: text,
            handle: Raw::handle(text),
            all_tables,
            items: Vec::new(),
            table: None,
            block: None,
            last_set: None,
            in_table: false,
            skipping: 0,
            elements: None,
            tables: Vec::new(),
        }
    }

    fn run(mut self) -> Result<(Vec<Item>, Vec<String>), ParseError> {
        let text: &'a str = self.src.as_str();
        for (i, raw) in text.lines().enumerate() {
            if raw.contains('\0') {
                return Err(err(i + 1, "a NUL byte in the line"));
            }
            let (l, balanced) = strip_comment(raw.trim());
            if !balanced {
                return Err(err(i + 1, "unterminated quoted string"));
            }
            self.line(i + 1, l)?;
        }
        let last = text.lines().count();
        if self.elements.is_some() {
            return Err(err(last, "unterminated elements list"));
        }
        if self.block.is_some() || self.in_table || self.skipping > 0 {
            return Err(err(last, "unterminated block (truncated dump?)"));
        }
        // Items are many and small: no room for half as many again.
        self.items.shrink_to_fit();
        Ok((self.items, self.tables))
    }
}

/// The parser's state between lines.
struct Parser<'a> {
    /// The dump's text: items are parts of it.
    src: &'a Arc<String>,
    /// What its items hold of it.
    handle: super::normalize::Source,
    all_tables: bool,
    items: Vec<Item>,
    /// The table being read, when it is not `ip kube-proxy`.
    table: Option<Arc<String>>,
    /// `nft list` state: the block we are in (chain NAME, `map NAME`, `set NAME`), one string
    /// for all its items.
    block: Option<Raw>,
    /// The set or map the last transaction line added elements to (`map NAME`: one string for
    /// all its elements).
    last_set: Option<Raw>,
    in_table: bool,
    /// Brace depth inside a table that is skipped (0: none skipped).
    skipping: i64,
    /// An elements list being read over several lines.
    elements: Option<Elements>,
    /// The tables listed so far.
    tables: Vec<String>,
}

/// An elements list being read line by line: how deep in braces, and an element that does not
/// end on its line (its text so far, owned, and its first line).
struct Elements {
    chain: Raw,
    depth: i64,
    pending: Option<(String, usize)>,
}

impl Parser<'_> {
    /// `s` as an item's text: a part of the dump's text when it is one (no copy).
    fn raw(&self, s: &str) -> Raw {
        Raw::within(&self.handle, s)
    }

    /// A transaction's `map NAME` / `set NAME`: one string for consecutive lines of a set.
    fn set_name(&mut self, name: String) -> Raw {
        match &self.last_set {
            Some(b) if b.as_str() == name => b.clone(),
            _ => {
                let c = Raw::owned(&name);
                self.last_set = Some(c.clone());
                c
            }
        }
    }

    /// Read the elements list that starts on this line (as far as it goes on it).
    fn start_elements(&mut self, chain: Raw, n: usize, l: &str) -> Result<(), ParseError> {
        if !l.starts_with('{') {
            return Err(err(n, "expected '{' to open the elements"));
        }
        self.elements = Some(Elements {
            chain,
            depth: 0,
            pending: None,
        });
        self.element_line(n, l)
    }

    fn push(&mut self, chain: Raw, text: Raw, line: usize) {
        self.items.push(Item {
            chain,
            text,
            line: line as u32,
            table: self.table.clone(),
            decl: false,
        });
    }

    /// A declaration line (or part of one) of `chain` (a chain, `set NAME`, `map NAME`, or
    /// `table`), as written.
    fn push_decl(&mut self, chain: Raw, text: &str, line: usize) {
        let text = self.raw(text);
        self.push(chain, text, line);
        if let Some(it) = self.items.last_mut() {
            it.decl = true;
        }
    }

    /// Note a table the dump lists.
    fn listed(&mut self, family: &str, name: &str) {
        let t = format!("{family} {name}");
        if !self.tables.contains(&t) {
            self.tables.push(t);
        }
    }

    /// One line of an elements list (`{` of the first line and `}` of the last included): each
    /// element on it is an item of the current block at this line.
    fn element_line(&mut self, n: usize, l: &str) -> Result<(), ParseError> {
        let Some(mut st) = self.elements.take() else {
            return Ok(());
        };
        let first = st.depth == 0;
        st.depth += brace_depth(l);
        if st.depth < 0 {
            return Err(err(n, "unbalanced '{' and '}'"));
        }
        let mut inner = l.trim();
        if first {
            inner = inner.strip_prefix('{').unwrap_or(inner);
        }
        if st.depth <= 0 {
            inner = inner.strip_suffix('}').unwrap_or(inner);
        }
        let complete = st.depth <= 0 || inner.trim_end().ends_with(',');
        let chain = st.chain.clone();
        let mut parts = split_elements(inner);
        if let Some((mut acc, start)) = st.pending.take() {
            let head = if parts.is_empty() {
                ""
            } else {
                parts.remove(0)
            };
            acc.push(' ');
            acc.push_str(head);
            if complete || !parts.is_empty() {
                self.push(chain.clone(), Raw::owned(acc.trim()), start);
            } else {
                st.pending = Some((acc, start));
            }
        }
        let tail = (!complete).then(|| parts.pop()).flatten();
        for e in parts {
            let raw = self.raw(e);
            self.push(chain.clone(), raw, n);
        }
        if let Some(t) = tail {
            st.pending = Some((t.to_string(), n));
        }
        if st.depth > 0 {
            self.elements = Some(st);
        }
        Ok(())
    }

    fn line(&mut self, n: usize, l: &'_ str) -> Result<(), ParseError> {
        if self.skipping > 0 {
            self.skipping += brace_depth(l);
            return Ok(());
        }
        if self.elements.is_some() {
            return self.element_line(n, l);
        }
        if l.is_empty() || l.starts_with("flush ") || l.starts_with("delete ") {
            return Ok(());
        }
        match l.strip_prefix("add ") {
            Some(rest) => self.transaction(n, rest),
            None => self.listing(n, l),
        }
    }

    /// A line of knftables' transaction format (`add ...`).
    fn transaction(&mut self, n: usize, rest: &str) -> Result<(), ParseError> {
        if brace_depth(rest) != 0 {
            return Err(err(n, "unbalanced '{' and '}'"));
        }
        let mut w = rest.splitn(4, ' ');
        let what = w.next().unwrap_or("");
        let (family, table) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
        let tail = w.next().unwrap_or("");
        if matches!(what, "table" | "chain" | "rule" | "element" | "set" | "map") {
            self.listed(family, table);
        }
        if !(self.all_tables || is_kube_proxy(family, table)) {
            return Ok(());
        }
        self.table = (!(family == "ip" && table == "kube-proxy"))
            .then(|| Arc::new(format!("{family} {table}")));
        match what {
            "rule" => {
                let (chain, body) = tail
                    .split_once(' ')
                    .ok_or_else(|| err(n, "add rule without a chain and a rule"))?;
                let (chain, body) = (self.raw(chain), self.raw(body.trim()));
                self.push(chain, body, n);
            }
            "element" => {
                let (set, body) = tail
                    .split_once(' ')
                    .ok_or_else(|| err(n, "add element without a set and elements"))?;
                let kind = if body.contains(" : ") { "map" } else { "set" };
                let chain = self.set_name(format!("{kind} {set}"));
                self.start_elements(chain, n, body.trim())?;
            }
            "chain" => self.chain_declaration(n, tail),
            "table" => {
                // `add table ip kube-proxy { comment "..." ; }`: the table's own declarations.
                let head = rest.split_once('{').map_or(rest, |(h, _)| h).trim();
                self.push_decl(Raw::owned("table"), head, n);
                if let Some((_, body)) = tail.split_once('{') {
                    for d in decl_parts(body) {
                        self.push_decl(Raw::owned("table"), d, n);
                    }
                }
            }
            "map" | "set" => {
                // `add set ip kube-proxy NAME { type ... ; flags ... ; timeout ... ; }`.
                if let Some((name, body)) = tail.split_once('{') {
                    let chain = self.set_name(format!("{what} {}", name.trim()));
                    for d in decl_parts(body) {
                        self.push_decl(chain.clone(), d, n);
                    }
                }
            }
            _ => return Err(err(n, format!("unknown nftables command 'add {what}'"))),
        }
        Ok(())
    }

    /// `add chain ip kube-proxy NAME { type ... hook ... priority ... ; }`: a base chain's
    /// declaration (its body as written) is one of its items.
    fn chain_declaration(&mut self, n: usize, tail: &str) {
        if let Some((name, body)) = tail.split_once('{') {
            let decl = body.trim().trim_end_matches('}').trim();
            if !decl.is_empty() {
                let chain = self.raw(name.trim());
                self.push_decl(chain, decl, n);
            }
        }
    }

    /// A line of `nft list` output.
    fn listing(&mut self, n: usize, l: &str) -> Result<(), ParseError> {
        if let Some(rest) = l.strip_prefix("table ") {
            return self.open_table(n, rest);
        }
        if !self.in_table {
            let shown: String = l.chars().take(60).collect();
            return Err(err(n, format!("not an nftables line: '{shown}'")));
        }
        if l == "}" {
            if self.block.take().is_none() {
                self.in_table = false;
                self.table = None;
            }
            return Ok(());
        }
        if let Some(rest) = l.strip_suffix('{') {
            return self.open_block(n, rest.trim());
        }
        let Some(b) = self.block.clone() else {
            // Table-level lines: comment, flags.
            self.push_decl(Raw::owned("table"), l, n);
            return Ok(());
        };
        if let Some(rest) = l.strip_prefix("elements = ") {
            return self.start_elements(b, n, rest);
        }
        // A set's or map's lines other than its elements are its declaration (type, flags,
        // timeout, size, comment ...); a chain's are these.
        const DECLARATIONS: [&str; 5] = ["type ", "comment ", "flags ", "timeout ", "policy "];
        if b.starts_with("map ")
            || b.starts_with("set ")
            || DECLARATIONS.iter().any(|d| l.starts_with(d))
        {
            self.push_decl(b, l, n);
            return Ok(());
        }
        let raw = self.raw(l);
        self.push(b, raw, n);
        Ok(())
    }

    /// `table FAMILY NAME {`: read when it is kube-proxy's (or every table is), else skipped.
    fn open_table(&mut self, n: usize, rest: &str) -> Result<(), ParseError> {
        let Some(head) = rest.strip_suffix('{') else {
            return Err(err(n, "expected 'table FAMILY NAME {'"));
        };
        if self.in_table {
            return Err(err(n, "a table inside a table"));
        }
        let mut w = head.split_whitespace();
        let (family, name) = match (w.next(), w.next(), w.next()) {
            (Some(f), Some(t), None) => (f, t),
            (Some(t), None, None) => ("ip", t),
            _ => return Err(err(n, "expected 'table FAMILY NAME {'")),
        };
        self.listed(family, name);
        if !(self.all_tables || is_kube_proxy(family, name)) {
            self.skipping = 1;
            return Ok(());
        }
        self.in_table = true;
        self.table = (!(family == "ip" && name == "kube-proxy"))
            .then(|| Arc::new(format!("{family} {name}")));
        // The header as written (`table kube-proxy` is `table ip kube-proxy`, but not raw).
        let head = format!("table {}", head.trim());
        self.push_decl(Raw::owned("table"), &head, n);
        Ok(())
    }

    /// `chain NAME {`, `map NAME {` or `set NAME {`.
    fn open_block(&mut self, n: usize, rest: &str) -> Result<(), ParseError> {
        let (kind, name) = rest
            .split_once(' ')
            .ok_or_else(|| err(n, "expected 'chain|map|set NAME {'"))?;
        if !matches!(
            kind,
            "chain" | "map" | "set" | "flowtable" | "ct" | "counter" | "quota"
        ) {
            return Err(err(n, format!("unexpected block '{kind}'")));
        }
        if self.block.is_some() {
            return Err(err(n, "a block inside a block"));
        }
        self.block = Some(if kind == "chain" {
            self.raw(name.trim())
        } else {
            Raw::owned(&format!("{kind} {}", name.trim()))
        });
        Ok(())
    }
}

/// The parts of a `{ a ; b ; }` declaration body (its closing brace optional), trimmed: split at
/// `;` outside quotes.
fn decl_parts(body: &str) -> impl Iterator<Item = &str> {
    let body = body.trim().trim_end_matches('}');
    let mut quoted = false;
    body.split(move |c: char| {
        if c == '"' {
            quoted = !quoted;
        }
        c == ';' && !quoted
    })
    .map(str::trim)
    .filter(|p| !p.is_empty())
}

/// A declaration as compared (normalized): one spelling whatever wrote it (nft's listing or
/// knftables' transaction), or `None` when it is not compared. Base chains: see
/// [`declaration`]. Sets and maps: `flags` in one order, `timeout`/`gc-interval` in seconds
/// (nft prints `3h` for knftables' `10800s`), the `size 65535` the kernel gives a set a rule
/// updates left out. Comments (of tables, chains, sets, maps) are descriptions, not compared.
pub fn declared(it: &Item) -> Option<String> {
    let set = it.chain.starts_with("map ") || it.chain.starts_with("set ");
    if !set && &*it.chain != "table" {
        let kept: Vec<&str> = decl_parts(&it.text)
            .filter(|p| !p.starts_with("comment "))
            .collect();
        return (!kept.is_empty()).then(|| declaration(&kept.join("; ")));
    }
    let words: Vec<&str> = it.text.split_whitespace().collect();
    match words.as_slice() {
        // The table's header: the item says which table already.
        ["comment", ..] | ["table", ..] | [] => None,
        ["size", "65535"] if set => None,
        ["flags", f] => {
            let mut f: Vec<&str> = f.split(',').map(str::trim).collect();
            f.sort_unstable();
            Some(format!("flags {}", f.join(",")))
        }
        [k @ ("timeout" | "gc-interval"), d] => Some(match seconds(d) {
            Some(s) => format!("{k} {s}s"),
            None => format!("{k} {d}"),
        }),
        _ => Some(words.join(" ")),
    }
}

/// An nft duration (`3h`, `1m30s`, `10800s`, `1d2h`, `500ms`) in whole seconds; `None` when it is
/// not one, or not whole seconds.
fn seconds(d: &str) -> Option<u64> {
    let (mut total_ms, mut num, mut rest) = (0u64, String::new(), d);
    if d.is_empty() {
        return None;
    }
    while let Some(c) = rest.chars().next() {
        if c.is_ascii_digit() {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let (unit, ms) = [
            ("ms", 1),
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ]
        .into_iter()
        .find(|(u, _)| rest.starts_with(u))?;
        let n: u64 = num.parse().ok()?;
        total_ms = total_ms.checked_add(n.checked_mul(ms)?)?;
        num.clear();
        rest = &rest[unit.len()..];
    }
    // A bare number is seconds.
    if !num.is_empty() {
        total_ms = total_ms.checked_add(num.parse::<u64>().ok()?.checked_mul(1000)?)?;
    }
    (total_ms % 1000 == 0).then_some(total_ms / 1000)
}

/// A base chain's declaration in one spelling whatever nft printed: named priorities as
/// numbers ("dstnat - 10" is -110), no default `policy accept`, no ';', single spaces.
pub fn declaration(decl: &str) -> String {
    let words: Vec<&str> = decl
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] == "priority" && i + 1 < words.len() {
            let mut v = named_priority(words[i + 1]);
            let mut j = i + 2;
            while j + 1 < words.len() && matches!(words[j], "+" | "-") {
                let d: i64 = words[j + 1].parse().unwrap_or(0);
                v = v.map(|x| if words[j] == "+" { x + d } else { x - d });
                j += 2;
            }
            out.push("priority".into());
            out.push(v.map_or_else(|| words[i + 1].to_string(), |x| x.to_string()));
            i = j;
            continue;
        }
        // `policy accept` is the default: knftables does not write it, nft prints it.
        if words[i] == "policy" && words.get(i + 1) == Some(&"accept") {
            i += 2;
            continue;
        }
        out.push(words[i].to_string());
        i += 1;
    }
    out.join(" ")
}

/// nft's named priorities (ip family), or the number written.
fn named_priority(w: &str) -> Option<i64> {
    Some(match w {
        "raw" => -300,
        "mangle" => -150,
        "dstnat" => -100,
        "filter" => 0,
        "security" => 50,
        "srcnat" => 100,
        _ => return w.parse().ok(),
    })
}

/// A per-service chain name: (kind, hash, service part "ns/name/proto/port", endpoint "IP/PORT").
fn split_chain(name: &str) -> Option<(&str, &str, &str, Option<&str>)> {
    // Most words are not chain names: the shortest is "local-HASHHASH-a/b/c/d" (and every kind
    // starts with one of these letters).
    if name.len() < 22 || !matches!(name.as_bytes()[0], b's' | b'e' | b'l' | b'f' | b'a') {
        return None;
    }
    let (kind, rest) = name.split_once('-')?;
    if !matches!(
        kind,
        "service" | "external" | "local" | "firewall" | "endpoint" | "affinity"
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

/// A chain name without the `map `/`set ` of a map's or set's pseudo-chain.
fn bare(chain: &str) -> &str {
    chain
        .strip_prefix("map ")
        .or_else(|| chain.strip_prefix("set "))
        .unwrap_or(chain)
}

/// The service an item belongs to.
fn owner(it: &Item) -> Option<ServiceKey> {
    if let Some((_, _, svc, _)) = split_chain(bare(&it.chain)) {
        return key_of(svc);
    }
    // A declaration belongs where its chain or set does: its comment is anyone's text.
    if it.decl {
        return None;
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

/// Items by service (in key order; each service's in dump order), filtered.
pub fn services(d: &NftDump, filter: Option<&ServiceFilter>) -> Vec<(ServiceKey, Vec<usize>)> {
    let mut out: std::collections::BTreeMap<ServiceKey, Vec<usize>> = Default::default();
    for (i, it) in d.items.iter().enumerate() {
        let Some(k) = owner(it) else { continue };
        if filter.is_some_and(|f| !f.matches(&k)) {
            continue;
        }
        out.entry(k).or_default().push(i);
    }
    out.into_iter().collect()
}

fn endpoint_ip(ep: &str) -> Option<(Ipv4Addr, u16)> {
    let (ip, port) = ep.split_once('/')?;
    Some((ip.parse().ok()?, port.parse().ok()?))
}

/// A service's items, normalized (or raw): chain hashes, endpoints (numbered by IP), cluster
/// and LoadBalancer/external IPs, NodePorts.
pub fn normalize(d: &NftDump, idx: &[usize], raw: bool, lb_ips: &[String]) -> Vec<NormRule> {
    normalize_sharing(d, idx, raw, lb_ips, &Known::default())
}

/// [`normalize`], sharing every compared text that `known` holds already (the other side's).
pub fn normalize_sharing(
    d: &NftDump,
    idx: &[usize],
    raw: bool,
    lb_ips: &[String],
    known: &Known,
) -> Vec<NormRule> {
    let items: Vec<&Item> = idx.iter().map(|&i| &d.items[i]).collect();
    let names = Names::learn(&items, lb_ips);
    finish(&items, &names, raw, known)
}

/// kube-proxy's items that no Service owns (base chains with their declarations, shared
/// dispatch chains, shared sets and maps), normalized with what every Service's items say about
/// IPs.
pub fn normalize_shared(d: &NftDump, raw: bool, lb_ips: &[String]) -> Vec<NormRule> {
    let all: Vec<&Item> = d.items.iter().collect();
    let names = Names::learn(&all, lb_ips);
    let items: Vec<&Item> = all.into_iter().filter(|it| owner(it).is_none()).collect();
    finish(&items, &names, raw, &Known::default())
}

/// The items normalized, or raw (as written, in the order written). Normalized: set and map
/// elements in a canonical order (nft prints them in any order) after their set's
/// declarations, affinity sets' elements left out (clients seen lately: state, not rules), and
/// declarations in one spelling (see [`declared`]).
fn finish(items: &[&Item], names: &Names, raw: bool, known: &Known) -> Vec<NormRule> {
    // One role string per chain: a chain's items come one after another.
    let mut last: Option<(&Raw, Arc<str>)> = None;
    let mut out: Vec<NormRule> = Vec::with_capacity(items.len());
    // Which of `out` are a set's or map's elements.
    let mut is_element: Vec<bool> = Vec::with_capacity(items.len());
    for it in items {
        if !raw && !it.decl && bare(&it.chain).starts_with("affinity-") {
            continue;
        }
        let role = match &last {
            Some((c, r)) if c.as_str() == it.chain.as_str() => r.clone(),
            _ => names.role(it, raw),
        };
        last = Some((&it.chain, role.clone()));
        let Some(r) = names.normalize(it, raw, role, known) else {
            continue;
        };
        is_element.push(!it.decl && (it.chain.starts_with("map ") || it.chain.starts_with("set ")));
        out.push(r);
    }
    if raw {
        // As written: in the order written.
        return out;
    }
    // A set's or map's items: its declarations (as written, first), then its elements sorted.
    let slots: Vec<usize> = (0..out.len())
        .filter(|&i| out[i].role.starts_with("map ") || out[i].role.starts_with("set "))
        .collect();
    let mut sorted: Vec<(NormRule, bool)> = slots
        .iter()
        .map(|&i| (out[i].clone(), is_element[i]))
        .collect();
    sorted.sort_by(|(a, ea), (b, eb)| {
        (&a.role, ea).cmp(&(&b.role, eb)).then_with(|| {
            if *ea {
                a.rule.rule().cmp(b.rule.rule())
            } else {
                std::cmp::Ordering::Equal
            }
        })
    });
    for (&i, (r, _)) in slots.iter().zip(sorted) {
        out[i] = r;
    }
    out
}

/// What a service's incidental values are written as: its endpoints (by role and port, not by
/// where they stand), IPs and NodePorts.
/// Keys point into the items (nothing copied: learning kube-proxy's whole table is cheap).
struct Names<'a> {
    /// Endpoint "IP/PORT" -> the placeholder its IP is written as.
    eps: HashMap<&'a str, &'static str>,
    ips: HashMap<&'a str, &'static str>,
    nodeports: HashMap<&'a str, &'static str>,
    lb_ips: &'a [String],
}

impl<'a> Names<'a> {
    /// `lb_ips`: the LoadBalancer IPs the live cluster reports, when known. kube-proxy's maps
    /// list LB and external IPs alike; with them known, the others are external IPs.
    fn learn(items: &[&'a Item], lb_ips: &'a [String]) -> Names<'a> {
        let mut n = Names {
            eps: endpoints(items),
            ips: HashMap::default(),
            nodeports: HashMap::default(),
            lb_ips,
        };
        for (ep, ph) in &n.eps {
            if let Some((ip, _)) = ep.split_once('/') {
                n.ips.insert(ip, ph);
            }
        }
        for it in items.iter().filter(|it| !it.decl) {
            n.learn_item(it);
        }
        n
    }

    /// What `ip` is, unless something stronger said otherwise already: endpoint, then cluster
    /// IP, node IP, LB/external IP. Whatever order the items come in, the same answer.
    fn claim(&mut self, ip: &'a str, role: &'static str) {
        const RANK: [&str; 6] = [
            "<external-ip>",
            "<lb-ip>",
            "<node-ip>",
            "<cluster-ip>",
            "<endpoint>",
            "<local-endpoint>",
        ];
        let rank = |r: &str| RANK.iter().position(|x| *x == r);
        match self.ips.get(ip) {
            Some(old) if rank(old) >= rank(role) => {}
            _ => {
                self.ips.insert(ip, role);
            }
        }
    }

    /// Cluster, LB and external IPs, node IPs and NodePorts named by sets, map elements and
    /// service chains.
    fn learn_item(&mut self, it: &'a Item) {
        let words: Vec<&'a str> = it.text.split_whitespace().collect();
        let c: &str = &it.chain;
        let first = words.first().copied().unwrap_or("");
        let is_ip = first.parse::<Ipv4Addr>().is_ok();
        if c == "set nodeport-ips" && is_ip {
            self.claim(first, "<node-ip>");
        } else if c == "set cluster-ips" && is_ip {
            self.claim(first, "<cluster-ip>");
        } else if c.starts_with("map ") {
            // "IP . proto . port : goto CHAIN" or "proto . port : goto CHAIN".
            let target = words
                .iter()
                .rev()
                .find(|w| split_chain(w).is_some())
                .copied();
            let kind = target.and_then(split_chain).map(|x| x.0);
            if words.len() >= 3 && words[1] == "." && !is_ip {
                self.nodeports.entry(words[2]).or_insert("<nodeport>");
            } else if is_ip {
                let cluster = kind == Some("service") || c.ends_with("cluster-ips");
                let role = if cluster {
                    "<cluster-ip>"
                } else if self.lb_ips.is_empty() || self.lb_ips.iter().any(|ip| ip == first) {
                    "<lb-ip>"
                } else {
                    "<external-ip>"
                };
                self.claim(first, role);
            }
        } else if c.starts_with("service-")
            && let Some(p) = words.iter().position(|w| *w == "daddr")
            && let Some(ip) = words.get(p + 1)
            && ip.parse::<Ipv4Addr>().is_ok()
        {
            self.claim(ip, "<cluster-ip>");
        }
    }

    /// A chain name or an IP (with or without a port) as it is compared; `None` when neither.
    fn word(&self, w: &str) -> Option<String> {
        if let Some((kind, _hash, svc, ep)) = split_chain(w) {
            return Some(match ep {
                Some(e) => {
                    let port = e.split_once('/').map_or("", |(_, p)| p);
                    let ph = self.eps.get(e).copied().unwrap_or("<endpoint>");
                    format!("{kind}-<hash>-{svc}__{ph}/{port}")
                }
                None => format!("{kind}-<hash>-{svc}"),
            });
        }
        let (host, port) = match w.rsplit_once(':') {
            Some((h, p)) if h.parse::<Ipv4Addr>().is_ok() => (h, Some(p)),
            _ => (w, None),
        };
        let ph = self.ips.get(host)?;
        Some(match port {
            Some(p) => format!("{ph}:{p}"),
            None => ph.to_string(),
        })
    }

    /// The role of the item's chain: the same on both sides. Raw, the chain's name as written
    /// (an nftables item's text does not name its chain: two chains by other names are two).
    fn role(&self, it: &Item, raw: bool) -> Arc<str> {
        let kind = it.chain.len() - bare(&it.chain).len();
        let role = match self.word(bare(&it.chain)).filter(|_| !raw) {
            Some(w) => format!("{}{w}", &it.chain[..kind]),
            None => it.chain.to_string(),
        };
        match &it.table {
            Some(t) => Arc::from(format!("{t} {role}")),
            None => Arc::from(role),
        }
    }

    /// The item as compared, within its chain's role: normalized (one string shared with the
    /// other side when `known` holds it) or, raw or when normalizing changes nothing, the item's
    /// text itself (shared with the dump, as is its chain's name).
    /// A declaration not compared (normalized) is `None`.
    fn normalize(&self, it: &Item, raw: bool, role: Arc<str>, known: &Known) -> Option<NormRule> {
        let text = match (raw, it.decl) {
            (true, _) => None,
            (false, true) => Some(declared(it)?),
            (false, false) => Some(canonical_vmap(&it.text, &self.rewrite(it))),
        };
        let text = text.filter(|t| *t != *it.text).map(|t| {
            known
                .get(t.as_str())
                .cloned()
                .unwrap_or_else(|| Arc::from(t))
        });
        Some(NormRule {
            role,
            rule: Arc::new(RuleText {
                text,
                raw: it.text.clone(),
                line: it.line,
                chain: it.chain.clone(),
                table: Table::Nft,
            }),
        })
    }

    /// The item's text with its incidental values replaced (and counters dropped).
    fn rewrite(&self, it: &Item) -> String {
        let mut out = String::with_capacity(it.text.len() + 16);
        let spelled = super::tokens::nft_spelling(&it.text);
        let words: Vec<&str> = without_counters(&spelled);
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
            // `@NAME`: a set (an affinity set is named as its endpoint chain is).
            let at = if trimmed.starts_with('@') { 1 } else { 0 };
            match (is_nodeport, self.word(&trimmed[at..])) {
                (true, _) => out.push_str("<nodeport>"),
                (false, Some(m)) => {
                    out.push_str(&trimmed[..at]);
                    out.push_str(&m);
                    out.push_str(&w[trimmed.len()..]);
                }
                (false, None) => out.push_str(w),
            }
        }
        out
    }
}

/// The endpoints a set of items names ("IP/PORT"), each with how its IP is written: a local
/// endpoint (one the `local-` chain dispatches to) or any other. Not numbered: two clusters list
/// the same endpoints in different orders, so identity is role and port.
fn endpoints<'a>(items: &[&'a Item]) -> HashMap<&'a str, &'static str> {
    let mut eps: HashMap<&'a str, &'static str> = HashMap::default();
    for it in items {
        let local = split_chain(&it.chain).is_some_and(|c| c.0 == "local");
        for n in std::iter::once(it.chain.as_str()).chain(mentioned(&it.text)) {
            if let Some((_, _, _, Some(ep))) = split_chain(n)
                && endpoint_ip(ep).is_some()
            {
                let e = eps.entry(ep).or_insert("<endpoint>");
                if local && n != it.chain.as_str() {
                    *e = "<local-endpoint>";
                }
            }
        }
    }
    eps
}

/// The words of a rule without `counter packets N bytes M` (counters are state, not rules).
pub(super) fn without_counters(text: &str) -> Vec<&str> {
    let w: Vec<&str> = text.split(' ').collect();
    let mut out = Vec::with_capacity(w.len());
    let mut i = 0;
    while i < w.len() {
        if w[i] == "counter" {
            i += 1;
            while i + 1 < w.len() && matches!(w[i], "packets" | "bytes") {
                i += 2;
            }
            continue;
        }
        out.push(w[i]);
        i += 1;
    }
    out
}

/// `numgen random mod N vmap { 0 : goto A, 1 : goto B }` with its branches grouped by where
/// they go: each distinct target once, with as many numbers as lead to it (`0-1 : goto A` for
/// two), the groups in a canonical order and numbered anew. Uniform random dispatch does not
/// depend on which endpoint got which number, but it does on how many distinct endpoints there
/// are and how many numbers each one has: `{ 0 : goto A, 1 : goto A }` (every packet to one
/// endpoint) is not `{ 0 : goto A, 1 : goto B }`, although A and B are both `<endpoint>` once
/// normalized. `raw` is the item as written (it tells the targets apart), `text` its normalized
/// words (the same words, some replaced).
fn canonical_vmap(raw: &str, text: &str) -> String {
    let (Some(r), Some(t)) = (numgen_vmap(raw), numgen_vmap(text)) else {
        return text.to_string();
    };
    if r.branches.len() != t.branches.len() {
        return text.to_string();
    }
    // (normalized target, numbers leading to it), one per distinct target as written.
    let mut groups: Vec<(&str, (u32, &str))> = Vec::with_capacity(r.branches.len());
    for ((n, target), (_, normalized)) in r.branches.iter().zip(&t.branches) {
        match groups.iter_mut().find(|g| g.0 == *target) {
            Some(g) => g.1.0 += n,
            None => groups.push((target, (*n, normalized))),
        }
    }
    let mut groups: Vec<(u32, &str)> = groups.into_iter().map(|g| g.1).collect();
    groups.sort_unstable_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)));
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(&text[..t.open]);
    let mut next = 0u32;
    for (k, (n, target)) in groups.iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        match n {
            1 => out.push_str(&next.to_string()),
            _ => out.push_str(&format!("{next}-{}", next + n - 1)),
        }
        out.push_str(" : ");
        out.push_str(target);
        next += n;
    }
    out.push_str(&text[t.close..]);
    out
}

/// A `numgen random mod N vmap { KEY : VERDICT, ... }`: where its branches start and end in the
/// text, and each branch's count of numbers (`3` is one, `0-2` three) and verdict.
struct NumgenVmap<'a> {
    open: usize,
    close: usize,
    branches: Vec<(u32, &'a str)>,
}

fn numgen_vmap(text: &str) -> Option<NumgenVmap<'_>> {
    let at = text.find("numgen random mod ")?;
    let open = text[at..].find("vmap {").map(|i| at + i + "vmap {".len())?;
    let close = text[open..].find('}').map(|i| open + i)?;
    let mut branches = Vec::new();
    for b in text[open..close].split(',') {
        let (key, verdict) = b.split_once(':')?;
        let key = key.trim();
        let n = match key.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u32, u32) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
                hi.checked_sub(lo)?.checked_add(1)?
            }
            None => key.parse::<u32>().map(|_| 1).ok()?,
        };
        branches.push((n, verdict.trim()));
    }
    // The branches rewritten from the character after `{` to the one before `}`.
    let open = open + text[open..close].len() - text[open..close].trim_start().len();
    let close = close - (text[open..close].len() - text[open..close].trim_end().len());
    Some(NumgenVmap {
        open,
        close,
        branches,
    })
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
            .filter(|i| &*i.chain == "service-P6J77WGM-riset/hellopod-np-svc/tcp/")
            .collect();
        assert_eq!(svc.len(), 2);
        assert!(svc[1].text.starts_with("numgen random mod 9 vmap"));
        let ips: Vec<_> = d
            .items
            .iter()
            .filter(|i| &*i.chain == "map service-ips" && !i.decl)
            .collect();
        assert_eq!(ips.len(), 9);
        assert!(ips.iter().any(|i| i.text
            == "10.43.195.72 . tcp . 8000 : goto service-P6J77WGM-riset/hellopod-np-svc/tcp/"));
        let t = parse(TXN).unwrap();
        assert!(t.items.iter().any(|i| &*i.chain == "map service-nodeports"
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
        let n = normalize(&t, idx, false, &[]);
        // Each rule within its chain's role.
        let texts: Vec<String> = n
            .iter()
            .map(|r| format!("{}: {}", r.role, r.rule.rule()))
            .collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
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
                &"endpoint-<hash>-ns2/svc2/tcp/p80__<endpoint>/80: meta l4proto tcp dnat to <endpoint>:80"
            ),
            "{texts:#?}"
        );
    }

    /// A small kube-proxy table: one eTP=Local LoadBalancer Service with two endpoints, one of
    /// them local, and the base chains.
    fn table(eps: [(&str, &str); 2], lb: &str, np: u16, order_flip: bool, handles: bool) -> String {
        let h = |n: u32| {
            if handles {
                format!(" # handle {n}")
            } else {
                String::new()
            }
        };
        let svc = "default/echo/tcp/";
        let ep = |i: usize| format!("endpoint-{}-{svc}__{}/8080", eps[i].1, eps[i].0);
        let (a, b) = if order_flip { (1, 0) } else { (0, 1) };
        let chains = format!(
            "\tchain filter-output {{{}\n\t\ttype filter hook output priority dstnat - 10; policy accept;{}\n\t\tct state new jump service-endpoints-check{}\n\t}}\n\
             \tchain service-AAAAAAAA-{svc} {{{}\n\t\tip daddr 10.96.0.9 tcp dport 8080 ip saddr != 10.244.0.0/16 jump mark-for-masquerade{}\n\t\tnumgen random mod 2 vmap {{ 0 : goto {}, 1 : goto {} }}{}\n\t}}\n\
             \tchain local-BBBBBBBB-{svc} {{\n\t\tnumgen random mod 1 vmap {{ 0 : goto {} }}\n\t}}\n\
             \tchain {} {{\n\t\tip saddr {} jump mark-for-masquerade\n\t\tmeta l4proto tcp dnat to {}:8080\n\t}}\n\
             \tchain {} {{\n\t\tip saddr {} jump mark-for-masquerade\n\t\tcounter packets {} bytes {} meta l4proto tcp dnat to {}:8080\n\t}}\n",
            h(1),
            h(2),
            h(3),
            h(4),
            h(5),
            ep(a),
            ep(b),
            h(6),
            ep(0),
            ep(0),
            eps[0].0,
            eps[0].0,
            ep(1),
            eps[1].0,
            np,
            np as u32 * 60,
            eps[1].0,
        );
        let maps = format!(
            "\tmap service-ips {{\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = {{ {} . tcp . 8080 : goto service-AAAAAAAA-{svc},\n\t\t\t     {lb} . tcp . 8080 : goto external-CCCCCCCC-{svc} }}\n\t}}\n\
             \tmap service-nodeports {{\n\t\ttype inet_proto . inet_service : verdict\n\t\telements = {{ tcp . {np} : goto external-CCCCCCCC-{svc} }}\n\t}}\n",
            "10.96.0.9"
        );
        let (first, second) = if order_flip {
            (maps, chains)
        } else {
            (chains, maps)
        };
        let t = format!("table ip kube-proxy {{{}\n{first}{second}}}\n", h(99));
        // Another cluster, another cluster IP.
        if order_flip {
            t.replace("10.96.0.9", "10.96.0.7")
        } else {
            t
        }
    }

    /// One cluster's table (the first) and the same behaviour in another cluster.
    fn one() -> String {
        table(
            [("10.244.1.5", "ZZZZZZZZ"), ("10.244.2.7", "YYYYYYYY")],
            "172.18.255.200",
            30001,
            false,
            false,
        )
    }

    fn cmp(a: &str, b: &str) -> crate::rules::Comparison {
        crate::rules::diff::compare_nft(&parse(a).unwrap(), &parse(b).unwrap(), &Default::default())
    }

    #[test]
    fn noise_is_not_a_difference() {
        // Other endpoint IPs and hashes, another LB IP and NodePort, maps before chains, branch
        // order flipped, `nft -a` handles, counters: the same behaviour.
        let a = one();
        let b = table(
            [("10.244.1.9", "QQQQQQQQ"), ("10.244.2.3", "RRRRRRRR")],
            "172.18.255.210",
            31002,
            true,
            true,
        );
        let c = cmp(&a, &b);
        assert!(c.equal, "{}", crate::rules::render::text(&c, false));
        assert!(c.shared.as_ref().is_some_and(|s| s.equal));
    }

    #[test]
    fn base_chain_priorities_are_shared_changes() {
        let a = one();
        let b = a.replace("priority dstnat - 10", "priority filter");
        let c = cmp(&a, &b);
        assert!(!c.equal);
        assert!(c.services.iter().all(|s| s.equal), "no Service changed");
        let sh = c.shared.unwrap();
        assert_eq!((sh.added.len(), sh.removed.len()), (1, 1));
        let (removed, added) = (&sh.removed[0], &sh.added[0]);
        assert_eq!(
            (removed.chain.as_str(), removed.rule()),
            ("filter-output", "type filter hook output priority -110")
        );
        assert_eq!(
            (added.chain.as_str(), added.rule()),
            ("filter-output", "type filter hook output priority 0")
        );
    }

    /// Elements are read line by line: each on its own line number, two on a line apart, one
    /// that goes on over a line break whole; rules and elements point into the dump's text.
    #[test]
    fn elements_by_line_and_no_copies() {
        let t = "table ip kube-proxy {\n\tset cluster-ips {\n\t\ttype ipv4_addr\n\t\telements = { 10.0.0.1, 10.0.0.2,\n\t\t\t     10.0.0.3 }\n\t}\n\tmap m {\n\t\telements = { 1.2.3.4 . tcp . 80\n\t\t\t: goto a, 5.6.7.8 . tcp . 80 : goto b }\n\t}\n\tchain a {\n\t\tjump b\n\t}\n}\n";
        let d = parse(t).unwrap();
        let got: Vec<(&str, &str, u32)> = d
            .items
            .iter()
            .map(|i| (i.chain.as_str(), i.text.as_str(), i.line))
            .collect();
        assert_eq!(
            got,
            [
                ("table", "table ip kube-proxy", 1),
                ("set cluster-ips", "type ipv4_addr", 3),
                ("set cluster-ips", "10.0.0.1", 4),
                ("set cluster-ips", "10.0.0.2", 4),
                ("set cluster-ips", "10.0.0.3", 5),
                ("map m", "1.2.3.4 . tcp . 80 : goto a", 8),
                ("map m", "5.6.7.8 . tcp . 80 : goto b", 9),
                ("a", "jump b", 12),
            ]
        );
        let inside = |s: &str| {
            let (at, base) = (s.as_ptr() as usize, d.text.as_ptr() as usize);
            at >= base && at + s.len() <= base + d.text.len()
        };
        for (i, it) in d.items.iter().enumerate() {
            // The element broken over two lines is the one joined copy.
            // And the table's header, written one way.
            assert_eq!(inside(&it.text), i != 5 && i != 0, "{it:?}");
            assert_eq!(it.decl, i <= 1);
        }
        assert!(inside(&d.items[7].chain));
        let e = parse("table ip kube-proxy {\n\tset s {\n\t\telements = { 1.2.3.4,\n").unwrap_err();
        assert_eq!(
            (e.line, e.reason.as_str()),
            (3, "unterminated elements list")
        );
    }

    #[test]
    fn ruleset_tables_and_malformed_input() {
        let ruleset = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\tip saddr { 1.2.3.4 } drop\n\t}\n}\ntable ip kube-proxy { # handle 7\n\tchain services { # handle 1\n\t\tjump x # handle 2\n\t}\n}\ntable ip6 kube-proxy {\n}\n";
        let d = parse(ruleset).unwrap();
        let content: Vec<&Item> = d.items.iter().filter(|i| i.is_content()).collect();
        assert_eq!(content.len(), 1, "{:?}", d.items);
        assert_eq!(content[0].text, "jump x");
        // Every table listed, read or not.
        assert_eq!(d.tables, ["inet filter", "ip kube-proxy", "ip6 kube-proxy"]);
        let all = parse_tables(ruleset.to_string(), true).unwrap();
        let all: Vec<&Item> = all.items.iter().filter(|i| &*i.chain != "table").collect();
        assert_eq!(all.len(), 3);
        assert_eq!(
            all[0].table.as_ref().map(|t| t.as_str()),
            Some("inet filter")
        );
        // The declaration as written; compared in one spelling.
        assert_eq!(
            all[0].text,
            "type filter hook input priority filter; policy accept;"
        );
        assert!(all[0].decl && all[0].is_content());
        assert_eq!(
            declared(all[0]).as_deref(),
            Some("type filter hook input priority 0")
        );
        let e = parse("table ip kube-proxy {\n\tchain x {\n\t\tjump \"y\n\t}\n}\n").unwrap_err();
        assert_eq!(
            (e.line, e.reason.as_str()),
            (3, "unterminated quoted string")
        );
        let e = parse("add table ip kube-proxy\nadd rule ip kube-proxy x numgen random mod 2 vmap { 0 : goto a\n").unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (2, "unbalanced '{' and '}'"));
        let e =
            parse("table ip kube-proxy {\n\tchain x {\n\t\tjump a\u{0}b\n\t}\n}\n").unwrap_err();
        assert_eq!(e.line, 3);
    }

    /// A Service with `sessionAffinity: ClientIP` as `nft list` prints kube-proxy's table: an
    /// affinity set per endpoint (`size 65535` where a rule updates it), updated in the
    /// endpoint's chain and matched in the Service's chain. `seen`: a client in the first set
    /// (state). `ip6`: kube-proxy's ip6 table after it.
    fn sticky(eps: [(&str, &str); 2], timeout: &str, seen: bool, ip6: bool) -> String {
        let svc = "default/sticky/tcp/http";
        let name = |k: &str, i: usize| format!("{k}-{}-{svc}__{}/8080", eps[i].1, eps[i].0);
        let mut t = String::from("table ip kube-proxy {\n\tcomment \"rules for kube-proxy\"\n");
        for i in 0..2 {
            let elements = if seen && i == 0 {
                "\t\telements = { 10.244.0.5 timeout 3h expires 2h59m58s }\n"
            } else {
                ""
            };
            t += &format!(
                "\tset {} {{\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout {timeout}\n{elements}\t}}\n",
                name("affinity", i)
            );
        }
        t += &format!(
            "\tmap service-ips {{\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = {{ 10.96.0.9 . tcp . 80 : goto service-SSSSSSSS-{svc} }}\n\t}}\n\tchain service-SSSSSSSS-{svc} {{\n\t\tip daddr 10.96.0.9 tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n\t\tip saddr @{} goto {}\n\t\tip saddr @{} goto {}\n\t\tnumgen random mod 2 vmap {{ 0 : goto {}, 1 : goto {} }}\n\t}}\n",
            name("affinity", 0),
            name("endpoint", 0),
            name("affinity", 1),
            name("endpoint", 1),
            name("endpoint", 0),
            name("endpoint", 1),
        );
        for (i, (ip, _)) in eps.iter().enumerate() {
            t += &format!(
                "\tchain {} {{\n\t\tip saddr {ip} jump mark-for-masquerade\n\t\tupdate @{} {{ ip saddr }}\n\t\tmeta l4proto tcp dnat to {ip}:8080\n\t}}\n",
                name("endpoint", i),
                name("affinity", i)
            );
        }
        t += "}\n";
        if ip6 {
            t += "table ip6 kube-proxy {\n\tcomment \"rules for kube-proxy\"\n\tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\t}\n}\n";
        }
        t
    }

    const STICKY: [(&str, &str); 2] = [("10.244.1.5", "AAAAAAAA"), ("10.244.2.7", "BBBBBBBB")];
    const STICKY_ELSEWHERE: [(&str, &str); 2] =
        [("10.244.2.9", "CCCCCCCC"), ("10.244.1.3", "DDDDDDDD")];

    #[test]
    fn affinity_sets_are_named_as_their_endpoints() {
        // Other endpoint IPs and hashes, a client seen lately: the same behaviour.
        let a = sticky(STICKY, "3h", false, false);
        let b = sticky(STICKY_ELSEWHERE, "3h", true, false);
        let c = cmp(&a, &b);
        assert!(c.equal, "{}", crate::rules::render::text(&c, false));
        let d = parse(&a).unwrap();
        let (_, idx) = services(&d, None).into_iter().next().unwrap();
        let n: Vec<String> = normalize(&d, &idx, false, &[])
            .iter()
            .map(|r| format!("{}: {}", r.role, r.rule.rule()))
            .collect();
        let svc = "default/sticky/tcp/http";
        for want in [
            format!("set affinity-<hash>-{svc}__<endpoint>/8080: timeout 10800s"),
            format!("set affinity-<hash>-{svc}__<endpoint>/8080: flags dynamic,timeout"),
            format!(
                "endpoint-<hash>-{svc}__<endpoint>/8080: update @affinity-<hash>-{svc}__<endpoint>/8080 {{ ip saddr }}"
            ),
            format!(
                "service-<hash>-{svc}: ip saddr @affinity-<hash>-{svc}__<endpoint>/8080 goto endpoint-<hash>-{svc}__<endpoint>/8080"
            ),
        ] {
            assert!(n.contains(&want), "{want} in {n:#?}");
        }
        // knftables' transaction of the same: `10800s` is nft's `3h`; no `size` written.
        let txn = format!(
            "add table ip kube-proxy {{ comment \"rules for kube-proxy\" ; }}\nadd set ip kube-proxy affinity-AAAAAAAA-{svc}__10.244.1.5/8080 {{ type ipv4_addr ; flags timeout,dynamic ; timeout 10800s ; }}\nadd rule ip kube-proxy endpoint-AAAAAAAA-{svc}__10.244.1.5/8080 update @affinity-AAAAAAAA-{svc}__10.244.1.5/8080 {{ ip saddr }}\n"
        );
        let list = format!(
            "table ip kube-proxy {{\n\tcomment \"rules for kube-proxy\"\n\tset affinity-EEEEEEEE-{svc}__10.244.3.3/8080 {{\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 3h\n\t}}\n\tchain endpoint-EEEEEEEE-{svc}__10.244.3.3/8080 {{\n\t\tupdate @affinity-EEEEEEEE-{svc}__10.244.3.3/8080 {{ ip saddr }}\n\t}}\n}}\n"
        );
        let c = cmp(&txn, &list);
        assert!(c.equal, "{}", crate::rules::render::text(&c, false));
    }

    #[test]
    fn an_affinity_timeout_change_is_a_change_raw_or_not() {
        let a = sticky(STICKY, "3h", false, false);
        let b = sticky(STICKY_ELSEWHERE, "10s", false, false);
        let c = cmp(&a, &b);
        assert!(!c.equal);
        let s = &c.services[0];
        let texts = |v: &[Arc<super::super::normalize::RuleText>]| -> Vec<String> {
            v.iter().map(|r| r.rule().to_string()).collect()
        };
        // Both endpoints' sets.
        assert_eq!(texts(&s.removed), ["timeout 10800s", "timeout 10800s"]);
        assert_eq!(texts(&s.added), ["timeout 10s", "timeout 10s"]);
        // Raw: the set declarations are compared as written.
        let b = sticky(STICKY, "10s", false, false);
        let opts = crate::rules::Options {
            raw: true,
            ..Default::default()
        };
        let c = crate::rules::diff::compare_nft(&parse(&a).unwrap(), &parse(&b).unwrap(), &opts);
        assert!(!c.equal, "{}", crate::rules::render::text(&c, false));
        let s = &c.services[0];
        assert_eq!(texts(&s.removed), ["timeout 3h", "timeout 3h"]);
        assert_eq!(texts(&s.added), ["timeout 10s", "timeout 10s"]);
    }

    #[test]
    fn durations_in_seconds() {
        for (d, s) in [
            ("3h", Some(10800)),
            ("10800s", Some(10800)),
            ("1m30s", Some(90)),
            ("1d2h", Some(93600)),
            ("10", Some(10)),
            ("1500ms", None),
            ("2000ms", Some(2)),
            ("", None),
            ("3x", None),
        ] {
            assert_eq!(seconds(d), s, "{d}");
        }
    }

    /// A table only one dump lists, the other listing one table: not compared, named in a note.
    /// Two whole-ruleset listings compare every kube-proxy table.
    #[test]
    fn a_table_only_one_dump_lists_is_not_a_change() {
        let table = sticky(STICKY, "3h", false, false);
        let ruleset = sticky(STICKY_ELSEWHERE, "3h", false, true);
        for (a, b, by) in [
            (&table, &ruleset, crate::rules::diff::ListedBy::Pr),
            (&ruleset, &table, crate::rules::diff::ListedBy::Base),
        ] {
            let c = cmp(a, b);
            assert!(c.equal, "{}", crate::rules::render::text(&c, false));
            assert_eq!(
                c.one_sided_tables,
                [crate::rules::diff::OneSidedTable {
                    table: "ip6 kube-proxy".into(),
                    listed_by: by,
                }]
            );
            let note = c.tables_note().unwrap();
            assert!(note.contains("ip6 kube-proxy listed only by"), "{note}");
            assert!(crate::rules::render::text(&c, false).contains(&note));
        }
        // Two rulesets, one without the ip6 table: its chain removed, in the shared group.
        let two = format!("{table}table inet filter {{\n}}\n");
        let c = cmp(&ruleset, &two);
        assert!(!c.equal);
        assert!(c.one_sided_tables.is_empty());
        let sh = c.shared.unwrap();
        assert_eq!(sh.removed.len(), 1, "{sh:#?}");
        assert_eq!(sh.removed[0].rule(), "type nat hook output priority -100");
        // Equal dumps: no note.
        assert!(cmp(&ruleset, &ruleset).tables_note().is_none());
    }

    /// Raw, a chain is its name as written: the same rules in chains of other hashes (another
    /// cluster's) are not equal.
    #[test]
    fn raw_chains_by_their_names() {
        let a = "table ip kube-proxy {\n\tchain service-SSSSSSSS-default/a/tcp/p {\n\t\tjump mark-for-masquerade\n\t}\n}\n";
        let b = a.replace("SSSSSSSS", "TTTTTTTT");
        let raw = crate::rules::Options {
            raw: true,
            ..Default::default()
        };
        let c = crate::rules::compare_texts(a, &b, &raw).unwrap();
        assert!(!c.equal, "{}", crate::rules::render::text(&c, false));
        assert!(cmp(a, &b).equal);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// `--raw` never calls two different texts equal: a dump against itself with one line
        /// changed (a word replaced, dropped or doubled, the line dropped, or swapped with the
        /// next) is never equal (or is an error). Whitespace and `# handle` annotations aside,
        /// any line of a table read counts: rules, elements (in their order), declarations of
        /// chains, sets, maps and the table.
        #[test]
        fn raw_never_calls_different_texts_equal(
            line in 0usize..1000,
            word in 0usize..100,
            how in 0u8..5,
            with in "[a-z0-9.,/@{}\\-]{1,8}",
            seen in proptest::bool::ANY,
        ) {
            let a = sticky(STICKY, "3h", seen, true);
            let mut lines: Vec<String> = a.lines().map(str::to_string).collect();
            let k = line % lines.len();
            let mut words: Vec<String> = lines[k].split_whitespace().map(str::to_string).collect();
            let w = word % words.len();
            match how {
                0 => words[w] = with.clone(),
                1 => { words.remove(w); }
                2 => words.insert(w, words[w].clone()),
                _ => {}
            }
            match how {
                3 => { lines.remove(k); }
                4 => {
                    let n = lines.len();
                    // A shared map's declaration is compared with the shared chains, its
                    // elements with their Services: not the order of the two.
                    let elements = |l: &str| l.trim_start().starts_with("elements = ");
                    proptest::prop_assume!(!(elements(&lines[k]) || elements(&lines[(k + 1) % n])));
                    lines.swap(k, (k + 1) % n);
                }
                _ => lines[k] = words.join(" "),
            }
            let b = lines.join("\n") + "\n";
            let norm = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
            proptest::prop_assume!(norm(&a) != norm(&b));
            let opts = crate::rules::Options { raw: true, ..Default::default() };
            if let Ok(c) = crate::rules::compare_texts(&a, &b, &opts) {
                proptest::prop_assert!(!c.equal, "raw equal:\n{a}\n---\n{b}");
            }
        }
    }

    #[test]
    fn lb_and_external_ips_when_the_cluster_says_which() {
        let t = one();
        let d = parse(&t).unwrap();
        let (_, idx) = services(&d, None).into_iter().next().unwrap();
        let text = |lbs: &[String]| -> Vec<String> {
            normalize(&d, &idx, false, lbs)
                .into_iter()
                .map(|r| r.rule.rule().to_string())
                .collect()
        };
        let unknown = text(&[]);
        assert!(
            unknown.iter().any(|r| r.contains("<lb-ip> . tcp . 8080")),
            "{unknown:#?}"
        );
        let known = text(&["172.18.255.200".to_string()]);
        assert!(
            known.iter().any(|r| r.contains("<lb-ip> . tcp . 8080")),
            "{known:#?}"
        );
        let other = text(&["172.18.255.9".to_string()]);
        assert!(
            other
                .iter()
                .any(|r| r.contains("<external-ip> . tcp . 8080")),
            "{other:#?}"
        );
    }

    /// A Service whose two endpoints (IP, chain hash) are both remote, its vmap sending
    /// branch k to endpoint `to[k]`.
    fn spread(eps: [(&str, &str); 2], to: [usize; 2], cluster_ip: &str) -> String {
        let svc = "default/two/tcp/";
        let ep = |i: usize| format!("endpoint-{}-{svc}__{}/80", eps[i].1, eps[i].0);
        let mut t = format!(
            "table ip kube-proxy {{\n\tchain service-TTTTTTTT-{svc} {{\n\t\tip daddr {cluster_ip} tcp dport 80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade\n\t\tnumgen random mod 2 vmap {{ 0 : goto {}, 1 : goto {} }}\n\t}}\n",
            ep(to[0]),
            ep(to[1])
        );
        for (i, (ip, _)) in eps.iter().enumerate() {
            t.push_str(&format!(
                "\tchain {} {{\n\t\tip saddr {ip} jump mark-for-masquerade\n\t\tmeta l4proto tcp dnat to {ip}:80\n\t}}\n",
                ep(i)
            ));
        }
        t + &format!(
            "\tmap service-ips {{\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n\t\telements = {{ {cluster_ip} . tcp . 80 : goto service-TTTTTTTT-{svc} }}\n\t}}\n}}\n"
        )
    }

    #[test]
    fn every_branch_to_one_endpoint_is_a_change() {
        let (a, b) = (("10.244.1.5", "ZZZZZZZZ"), ("10.244.2.7", "YYYYYYYY"));
        let (c, d) = (("10.244.1.9", "QQQQQQQQ"), ("10.244.2.3", "RRRRRRRR"));
        let base = spread([a, b], [0, 1], "10.96.0.9");
        // Another cluster, the same spread (branches the other way round): equal.
        assert!(cmp(&base, &spread([c, d], [1, 0], "10.96.0.7")).equal);
        // Every branch to one endpoint: that one vmap rule, and only it, changed.
        let one = spread([a, b], [0, 0], "10.96.0.9");
        let x = cmp(&base, &one);
        let s = &x.services[0];
        assert!(!s.equal, "{}", crate::rules::render::text(&x, false));
        assert_eq!((s.removed.len(), s.added.len()), (1, 1));
        assert!(
            s.removed[0].rule().ends_with(
                "vmap { 0 : goto endpoint-<hash>-default/two/tcp/__<endpoint>/80, 1 : goto endpoint-<hash>-default/two/tcp/__<endpoint>/80 }"
            ),
            "{}",
            s.removed[0].rule()
        );
        assert!(
            s.added[0]
                .rule()
                .ends_with("vmap { 0-1 : goto endpoint-<hash>-default/two/tcp/__<endpoint>/80 }"),
            "{}",
            s.added[0].rule()
        );
        // The same mistake in another cluster (the other endpoint chosen) is the same state.
        assert!(cmp(&one, &spread([c, d], [1, 1], "10.96.0.7")).equal);
        // A range key counts as many numbers as it holds.
        let range = one.replace(
            &format!("0 : goto endpoint-{}", a.1),
            &format!("0-1 : goto endpoint-{}", a.1),
        );
        let range = range.replacen(
            &format!(", 1 : goto endpoint-{}-default/two/tcp/__{}/80", a.1, a.0),
            "",
            1,
        );
        assert!(range.contains("{ 0-1 : goto"), "{range}");
        assert!(cmp(&one, &range).equal);
    }
}
