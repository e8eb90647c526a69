//! Parser for `iptables-save` / `iptables -S [-v]` output.
//!
//! The parser is a single pass over the text that records byte ranges, not copies: a dump of
//! 140k rules is a few megabytes of `u32` offsets on top of the text itself. Rules are split into
//! words only when a caller asks (see [`crate::rules::tokens`]).

use std::fmt;
use std::ops::Range;

/// Which netfilter table a rule or chain lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Filter,
    Nat,
    Mangle,
    Raw,
    Security,
    /// An nftables table (kube-proxy's `ip kube-proxy` unless the chain's name says otherwise):
    /// not one of iptables' tables, so named only as nftables.
    Nft,
}

impl Table {
    pub fn from_name(name: &str) -> Option<Table> {
        Some(match name {
            "filter" => Table::Filter,
            "nat" => Table::Nat,
            "mangle" => Table::Mangle,
            "raw" => Table::Raw,
            "security" => Table::Security,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Table::Filter => "filter",
            Table::Nat => "nat",
            Table::Mangle => "mangle",
            Table::Raw => "raw",
            Table::Security => "security",
            Table::Nft => "nft",
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The flavour of text the dump was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `iptables-save` (legacy or nft): `*table`, `:CHAIN POLICY [p:b]`, `-A`, `COMMIT`.
    Save,
    /// `iptables -S [-v]`: `-P`, `-N`, `-A ... -c p b`.
    Spec,
    /// Only `-A` lines (a dump grep'ed down to a few lines).
    Fragment,
}

/// A chain declaration (`:CHAIN POLICY [p:b]`, `-N CHAIN` or `-P CHAIN POLICY`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainDecl {
    pub table: Option<Table>,
    pub name: Range<u32>,
    /// `ACCEPT`/`DROP` for built-in chains, `None` for `-` and `-N`.
    pub policy: Option<Range<u32>>,
    pub counters: Option<(u64, u64)>,
    pub line: u32,
}

/// One `-A CHAIN ...` rule. Ranges index into [`Dump::text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The table from the last `*table` line; `None` for fragments without one.
    pub table: Option<Table>,
    /// The chain name.
    pub chain: Range<u32>,
    /// Everything after the chain name, counters (`[p:b]` prefix, `-c p b`) excluded when they
    /// stand at the start or end; see [`Rule::counters`].
    pub body: Range<u32>,
    /// The whole line as written (without the line break).
    pub raw: Range<u32>,
    /// Boxed: most rules have none, and a dump has a rule a line.
    pub counters: Option<Box<(u64, u64)>>,
    /// 1-based line number.
    pub line: u32,
}

/// A parsed dump. Owns its text (shared with the rules compared); everything else points into
/// it.
#[derive(Debug, Clone)]
pub struct Dump {
    pub text: std::sync::Arc<String>,
    pub format: Format,
    pub chains: Vec<ChainDecl>,
    pub rules: Vec<Rule>,
    /// Tables seen in `*table` lines, in order.
    pub tables: Vec<Table>,
}

/// A malformed line: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: u32,
    pub reason: String,
}

fn err(line: u32, reason: impl Into<String>) -> ParseError {
    ParseError {
        line,
        reason: reason.into(),
    }
}

impl Dump {
    pub fn str(&self, r: &Range<u32>) -> &str {
        &self.text[r.start as usize..r.end as usize]
    }
    pub fn rule_chain(&self, r: &Rule) -> &str {
        self.str(&r.chain)
    }
    pub fn rule_body(&self, r: &Rule) -> &str {
        self.str(&r.body)
    }
    pub fn rule_raw(&self, r: &Rule) -> &str {
        self.str(&r.raw)
    }
}

/// Parse a dump. Accepts `iptables-save` (legacy and nft), `iptables -S`/`-S -v`, and fragments
/// made of `-A` lines; `#` comments, `Warning:` lines and blank lines are skipped.
pub fn parse(text: impl Into<String>) -> Result<Dump, ParseError> {
    let text: String = text.into();
    if text.len() > u32::MAX as usize {
        return Err(err(0, "input larger than 4 GiB"));
    }
    let bytes = text.as_bytes();
    if let Some(at) = memchr::memchr(0, bytes) {
        let line = memchr::memchr_iter(b'\n', &bytes[..at]).count() + 1;
        return Err(err(line as u32, "a NUL byte in the line"));
    }
    let lines = memchr::memchr_iter(b'\n', bytes).count() + 1;
    let mut p = Parser {
        bytes,
        // At most one rule a line: one allocation, never doubled.
        rules: Vec::with_capacity(lines),
        ..Parser::default()
    };
    let mut pos = 0usize;
    let mut line_no = 0u32;
    while pos < bytes.len() {
        line_no += 1;
        let end = memchr::memchr(b'\n', &bytes[pos..]).map_or(bytes.len(), |i| pos + i);
        let mut line_end = end;
        if line_end > pos && bytes[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        let start = pos;
        pos = end + 1;
        // Leading whitespace is tolerated (pasted dumps are often indented).
        let indent = bytes[start..line_end]
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        p.line(start + indent, line_end, line_no)?;
    }
    if p.in_table {
        let t = p.table.expect("a table is open");
        return Err(err(
            line_no,
            format!("table '*{t}' has no COMMIT (truncated dump?)"),
        ));
    }
    let format = if p.saw_save {
        Format::Save
    } else if p.saw_spec {
        Format::Spec
    } else {
        Format::Fragment
    };
    let (chains, rules, tables) = (p.chains, p.rules, p.tables);
    Ok(Dump {
        text: std::sync::Arc::new(text),
        format,
        chains,
        rules,
        tables,
    })
}

/// The parser's state between lines; every line is a byte range of `bytes` (nothing copied).
#[derive(Default)]
struct Parser<'a> {
    bytes: &'a [u8],
    chains: Vec<ChainDecl>,
    rules: Vec<Rule>,
    tables: Vec<Table>,
    table: Option<Table>,
    in_table: bool,
    saw_save: bool,
    saw_spec: bool,
}

impl Parser<'_> {
    /// The line `bytes[s..line_end]` (indentation already skipped).
    fn line(&mut self, s: usize, line_end: usize, line_no: u32) -> Result<(), ParseError> {
        let line = &self.bytes[s..line_end];
        if line.is_empty() || line[0] == b'#' {
            return Ok(());
        }
        match line[0] {
            b'-' if line == b"-A" => return Err(err(line_no, "-A without a chain name")),
            b'-' if line.starts_with(b"-A ") => {
                let r = parse_rule(self.bytes, s, line_end, self.table, line_no, None)?;
                self.rules.push(r);
            }
            b'[' => self.counted_rule(s, line_end, line_no)?,
            b'*' => self.table_start(line, line_no)?,
            b':' => {
                let c = parse_chain_decl(self.bytes, s, line_end, self.table, line_no)?;
                self.chains.push(c);
                self.saw_save = true;
            }
            b'-' if line.starts_with(b"-N ") || line.starts_with(b"-P ") => {
                self.spec_chain(s, line_end, line_no)?
            }
            b'C' if line == b"COMMIT" => {
                if !self.in_table {
                    return Err(err(line_no, "COMMIT without a '*table' line"));
                }
                self.in_table = false;
            }
            b'W' if line.starts_with(b"Warning") => {}
            b'i' if line.starts_with(b"iptables") && !line.contains(&b' ') => {}
            b't' if line.starts_with(b"table ") => {
                return Err(err(
                    line_no,
                    "this is an nftables ruleset (nft list table), not an iptables dump",
                ));
            }
            _ => {
                let shown: String = String::from_utf8_lossy(line).chars().take(60).collect();
                return Err(err(
                    line_no,
                    format!("not an iptables rule, chain or table line: '{shown}'"),
                ));
            }
        }
        Ok(())
    }

    /// `iptables-save -c`: "[p:b] -A CHAIN ...".
    fn counted_rule(&mut self, s: usize, line_end: usize, line_no: u32) -> Result<(), ParseError> {
        let line = &self.bytes[s..line_end];
        let close = memchr::memchr(b']', line)
            .ok_or_else(|| err(line_no, "unterminated '[' counter prefix"))?;
        let counters = parse_counters(&line[1..close])
            .ok_or_else(|| err(line_no, "bad counter prefix, expected [packets:bytes]"))?;
        let rest = skip_spaces(self.bytes, s + close + 1, line_end);
        if !self.bytes[rest..line_end].starts_with(b"-A ") {
            return Err(err(line_no, "expected '-A CHAIN' after counter prefix"));
        }
        let mut rule = parse_rule(
            self.bytes,
            rest,
            line_end,
            self.table,
            line_no,
            Some(counters),
        )?;
        rule.raw = s as u32..line_end as u32;
        self.rules.push(rule);
        Ok(())
    }

    /// "*nat" and the like.
    fn table_start(&mut self, line: &[u8], line_no: u32) -> Result<(), ParseError> {
        let name = std::str::from_utf8(&line[1..]).unwrap_or("").trim();
        let t = Table::from_name(name)
            .ok_or_else(|| err(line_no, format!("unknown table '*{name}'")))?;
        if let (true, Some(open)) = (self.in_table, self.table) {
            return Err(err(
                line_no,
                format!("table '*{name}' starts before COMMIT of '*{open}'"),
            ));
        }
        self.table = Some(t);
        self.tables.push(t);
        self.in_table = true;
        self.saw_save = true;
        Ok(())
    }

    /// `iptables -S`: "-N CHAIN" or "-P CHAIN POLICY [-c packets bytes]".
    fn spec_chain(&mut self, s: usize, line_end: usize, line_no: u32) -> Result<(), ParseError> {
        let bytes = self.bytes;
        self.saw_spec = true;
        let is_policy = bytes[s + 1] == b'P';
        let name_start = skip_spaces(bytes, s + 3, line_end);
        let name_end = word_end(bytes, name_start, line_end);
        if name_start == name_end {
            return Err(err(line_no, "missing chain name"));
        }
        let mut policy = None;
        let mut counters = None;
        if is_policy {
            let p = skip_spaces(bytes, name_end, line_end);
            let pe = word_end(bytes, p, line_end);
            if p == pe {
                return Err(err(line_no, "-P without a policy"));
            }
            policy = Some(p as u32..pe as u32);
            let c = skip_spaces(bytes, pe, line_end);
            if bytes[c..line_end].starts_with(b"-c ") {
                counters = Some(
                    parse_dash_c(bytes, c + 3, line_end)
                        .ok_or_else(|| err(line_no, "bad '-c packets bytes' counters"))?,
                );
            }
        }
        self.chains.push(ChainDecl {
            table: self.table,
            name: name_start as u32..name_end as u32,
            policy,
            counters,
            line: line_no,
        });
        Ok(())
    }
}

fn skip_spaces(b: &[u8], mut i: usize, end: usize) -> usize {
    while i < end && (b[i] == b' ' || b[i] == b'\t') {
        i += 1;
    }
    i
}

fn word_end(b: &[u8], i: usize, end: usize) -> usize {
    memchr::memchr2(b' ', b'\t', &b[i..end]).map_or(end, |k| i + k)
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

fn parse_counters(inner: &[u8]) -> Option<(u64, u64)> {
    let colon = memchr::memchr(b':', inner)?;
    Some((parse_u64(&inner[..colon])?, parse_u64(&inner[colon + 1..])?))
}

/// Parse "P B" after "-c ".
fn parse_dash_c(b: &[u8], i: usize, end: usize) -> Option<(u64, u64)> {
    let p0 = skip_spaces(b, i, end);
    let p1 = word_end(b, p0, end);
    let b0 = skip_spaces(b, p1, end);
    let b1 = word_end(b, b0, end);
    Some((parse_u64(&b[p0..p1])?, parse_u64(&b[b0..b1])?))
}

fn parse_chain_decl(
    b: &[u8],
    s: usize,
    end: usize,
    table: Option<Table>,
    line: u32,
) -> Result<ChainDecl, ParseError> {
    let name_start = s + 1;
    let name_end = word_end(b, name_start, end);
    if name_start == name_end {
        return Err(err(line, "chain declaration without a name"));
    }
    let p = skip_spaces(b, name_end, end);
    let pe = word_end(b, p, end);
    if p == pe {
        return Err(err(
            line,
            "chain declaration without a policy (expected ':CHAIN POLICY [packets:bytes]')",
        ));
    }
    let policy = if &b[p..pe] == b"-" {
        None
    } else {
        Some(p as u32..pe as u32)
    };
    let c = skip_spaces(b, pe, end);
    let counters = if c < end {
        let ce = word_end(b, c, end);
        let w = &b[c..ce];
        if w.len() < 2 || w[0] != b'[' || w[w.len() - 1] != b']' {
            return Err(err(line, "bad chain counters, expected [packets:bytes]"));
        }
        Some(
            parse_counters(&w[1..w.len() - 1])
                .ok_or_else(|| err(line, "bad chain counters, expected [packets:bytes]"))?,
        )
    } else {
        None
    };
    Ok(ChainDecl {
        table,
        name: name_start as u32..name_end as u32,
        policy,
        counters,
        line,
    })
}

/// Parse "-A CHAIN body" starting at `s` (which points at "-A ").
fn parse_rule(
    b: &[u8],
    s: usize,
    end: usize,
    table: Option<Table>,
    line: u32,
    counters: Option<(u64, u64)>,
) -> Result<Rule, ParseError> {
    let cs = skip_spaces(b, s + 3, end);
    let ce = word_end(b, cs, end);
    if cs == ce {
        return Err(err(line, "-A without a chain name"));
    }
    let mut body_start = skip_spaces(b, ce, end);
    let mut body_end = end;
    while body_end > body_start && (b[body_end - 1] == b' ' || b[body_end - 1] == b'\t') {
        body_end -= 1;
    }
    let mut counters = counters;
    // `iptables -S -v` puts "-c P B" before the target; strip it where it stands and remember.
    if let Some(i) = find_dash_c(&b[body_start..body_end]) {
        let at = body_start + i;
        let c = parse_dash_c(b, at + 3, body_end)
            .ok_or_else(|| err(line, "bad '-c packets bytes' counters"))?;
        counters = Some(c);
        // Only strip when it is at the very start; elsewhere the tokenizer drops it.
        if at == body_start {
            let p0 = skip_spaces(b, at + 3, body_end);
            let p1 = word_end(b, p0, body_end);
            let b0 = skip_spaces(b, p1, body_end);
            let b1 = word_end(b, b0, body_end);
            body_start = skip_spaces(b, b1, body_end);
        }
    }
    check_quotes(&b[body_start..body_end]).map_err(|r| err(line, r))?;
    if body_start == body_end {
        // A rule with no matches and no target is legal ("-A CHAIN" accepts nothing special).
        body_start = body_end;
    }
    Ok(Rule {
        table,
        chain: cs as u32..ce as u32,
        body: body_start as u32..body_end as u32,
        raw: s as u32..end as u32,
        counters: counters.map(Box::new),
        line,
    })
}

/// Position of a "-c " option outside quotes.
fn find_dash_c(body: &[u8]) -> Option<usize> {
    // Every '-' is a candidate (a rule has a handful): cheaper than a substring searcher built
    // for each of a dump's 100,000 rules.
    memchr::memchr_iter(b'-', body).find(|&at| {
        body.get(at + 1) == Some(&b'c')
            && body.get(at + 2) == Some(&b' ')
            && (at == 0 || body[at - 1] == b' ')
            && !inside_quotes(&body[..at])
    })
}

/// Whether the end of `prefix` is inside a quoted string (a backslash escapes the next byte).
/// Only quotes and backslashes are looked at: a rule has a few.
fn inside_quotes(prefix: &[u8]) -> bool {
    let mut inside = false;
    let mut escaped_until = 0;
    for at in memchr::memchr2_iter(b'"', b'\\', prefix) {
        if at < escaped_until {
            continue;
        }
        if prefix[at] == b'\\' {
            escaped_until = at + 2;
        } else {
            inside = !inside;
        }
    }
    inside
}

fn check_quotes(body: &[u8]) -> Result<(), String> {
    if memchr::memchr(b'"', body).is_none() {
        return Ok(());
    }
    if inside_quotes(body) {
        return Err("unterminated quoted string".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_save_format() {
        let d = parse(
            "# Generated by iptables-save v1.8.9 (nf_tables) on Thu\n*nat\n:PREROUTING ACCEPT [12:720]\n:KUBE-SVC-X - [0:0]\n[3:180] -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n-A KUBE-SVC-X -j KUBE-SEP-Y\nCOMMIT\n# Completed on Thu\n",
        )
        .unwrap();
        assert_eq!(d.format, Format::Save);
        assert_eq!(d.tables, vec![Table::Nat]);
        assert_eq!(d.chains.len(), 2);
        assert_eq!(d.str(d.chains[0].policy.as_ref().unwrap()), "ACCEPT");
        assert_eq!(d.chains[0].counters, Some((12, 720)));
        assert_eq!(d.rules.len(), 2);
        assert_eq!(d.rule_chain(&d.rules[0]), "PREROUTING");
        assert_eq!(d.rules[0].counters.as_deref(), Some(&(3, 180)));
        assert!(d.rule_raw(&d.rules[0]).starts_with("[3:180] -A PREROUTING"));
        assert_eq!(d.rules[1].line, 6);
        assert_eq!(d.rules[1].table, Some(Table::Nat));
    }

    #[test]
    fn parses_spec_format_with_counters() {
        let d = parse("-P INPUT ACCEPT -c 5 10\n-N KUBE-EXT-A\n-A KUBE-EXT-A -s 10.0.0.0/8 -c 7 9 -j KUBE-SVC-A\n").unwrap();
        assert_eq!(d.format, Format::Spec);
        assert_eq!(d.chains.len(), 2);
        assert_eq!(d.chains[0].counters, Some((5, 10)));
        assert_eq!(d.rules[0].counters.as_deref(), Some(&(7, 9)));
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("*nat\n-A X -j Y\nfoo bar\nCOMMIT\n").unwrap_err();
        assert_eq!(e.line, 3);
        let e = parse("*nat\n-A X -m comment --comment \"open\nCOMMIT\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("unterminated"));
        let e = parse("*nat\n-A X -j Y\n").unwrap_err();
        assert!(e.reason.contains("COMMIT"), "{e}");
        let e = parse("*bogus\n").unwrap_err();
        assert!(e.reason.contains("unknown table"));
        let e = parse(":KUBE-X - [a:b]\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("-A\n").unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (1, "-A without a chain name"));
        let e = parse("*nat\n-A   \nCOMMIT\n").unwrap_err();
        assert_eq!((e.line, e.reason.as_str()), (2, "-A without a chain name"));
        // Every error says why, not only where.
        let e = parse("*nat\n-A X -j Y\nfoo bar\nCOMMIT\n").unwrap_err();
        assert!(
            e.reason
                .starts_with("not an iptables rule, chain or table line"),
            "{e}"
        );
        let e = parse(":KUBE-X - [a:b]\n").unwrap_err();
        assert!(!e.reason.is_empty());
    }

    #[test]
    fn fragments_and_noise() {
        let d = parse("Warning: iptables-legacy tables present, use iptables-legacy-save to see them\n  -A KUBE-NODEPORTS -p tcp -j KUBE-XLB-A\r\n\n").unwrap();
        assert_eq!(d.format, Format::Fragment);
        assert_eq!(d.rules.len(), 1);
        assert_eq!(d.rule_body(&d.rules[0]), "-p tcp -j KUBE-XLB-A");
        assert_eq!(d.rules[0].table, None);
    }
}
