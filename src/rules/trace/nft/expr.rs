//! nftables rule text as typed expressions: what kube-proxy's nftables proxier writes (and the
//! spellings `nft list` prints it back in), each piece a match or a statement; anything else an
//! [`Expr::Unknown`] that the tracer reports where it meets it.

/// A packet field a rule matches on (or builds a lookup key of).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Saddr,
    Daddr,
    L4proto,
    Dport,
    Sport,
}

/// One component of a value: an address range (a CIDR or `a-b`; one address is lo == hi), a
/// number range (ports, protocols: names are numbers), or a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    Ip(u32, u32),
    Num(u64, u64),
    Word(String),
}

impl Atom {
    /// The single value this atom holds, if it holds one (hash-indexable).
    pub fn exact(&self) -> Option<u64> {
        match self {
            Atom::Ip(a, b) if a == b => Some(*a as u64),
            Atom::Num(a, b) if a == b => Some(*a),
            _ => None,
        }
    }

    pub fn contains(&self, v: u64) -> bool {
        match self {
            Atom::Ip(a, b) => (*a as u64..=*b as u64).contains(&v),
            Atom::Num(a, b) => (*a..=*b).contains(&v),
            Atom::Word(_) => false,
        }
    }
}

/// A key: one atom per concatenated field.
pub type Key = Vec<Atom>;

/// A verdict statement (in a rule or as a verdict map's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Accept,
    Drop,
    Reject,
    Return,
    Continue,
    Jump(String),
    Goto(String),
}

/// What a lookup goes to: a named set or map of the table, or an anonymous one written inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRef {
    Named(String),
    Anon(Vec<(Key, Option<Target>)>),
}

/// `mark set mark or 0x4000` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkOp {
    Set(u32),
    Or(u32),
    Xor(u32),
    And(u32),
}

/// One piece of a rule, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// The key built of `fields` is (or with `neg`, is not) in `set`.
    Lookup {
        fields: Vec<Field>,
        neg: bool,
        set: SetRef,
    },
    /// `[meta] mark [and MASK] [==|!=] VALUE`.
    Mark {
        mask: u32,
        neg: bool,
        value: u32,
    },
    /// `fib daddr|saddr type [!=] local`.
    FibLocal {
        daddr: bool,
        neg: bool,
    },
    /// `ct state [!=] STATES`: the traced packet is a new connection's first.
    CtState {
        neg: bool,
        states: Vec<String>,
    },
    /// `iifname|oifname [!=] "NAME"`.
    Iface {
        out: bool,
        neg: bool,
        name: String,
    },
    /// `KEY vmap @map` / `vmap { ... }`: the verdict of the element the key finds, if any.
    Vmap {
        fields: Vec<Field>,
        map: SetRef,
    },
    /// `numgen random mod N vmap { 0 : goto A, ... }`: every branch.
    Numgen(Vec<Target>),
    MarkSet(MarkOp),
    Dnat {
        ip: u32,
        port: Option<u16>,
    },
    Masquerade,
    Verdict(Target),
    /// `counter`, `comment`, `update @set { ... }`: no effect on where the packet goes.
    Nop,
    /// What the tracer does not evaluate, as written.
    Unknown(String),
}

/// Split a rule's text into tokens: words, quoted strings, `{`, `}` and `,`.
pub fn tokens(s: &str) -> Vec<&str> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if matches!(c, b'{' | b'}' | b',') {
            out.push(&s[i..i + 1]);
            i += 1;
        } else if c == b'"' {
            let end = s[i + 1..].find('"').map_or(b.len(), |e| i + 2 + e);
            out.push(&s[i..end]);
            i = end;
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'{' | b'}' | b',')
            {
                i += 1;
            }
            out.push(&s[start..i]);
        }
    }
    out
}

/// A protocol by name or number.
fn proto(w: &str) -> Option<u64> {
    Some(match w {
        "icmp" => 1,
        "tcp" => 6,
        "udp" => 17,
        "sctp" => 132,
        _ => return w.parse().ok(),
    })
}

fn num(w: &str) -> Option<u64> {
    match w.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => w.parse().ok(),
    }
}

fn ip(w: &str) -> Option<u32> {
    w.parse::<std::net::Ipv4Addr>().ok().map(u32::from)
}

/// One atom as written: an address, CIDR or address range; a number or range; a protocol
/// name; else a word.
pub fn atom(w: &str) -> Atom {
    if let Some((a, len)) = w.split_once('/')
        && let (Some(a), Ok(len)) = (ip(a), len.parse::<u32>())
        && len <= 32
    {
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        return Atom::Ip(a & mask, (a & mask) | !mask);
    }
    if let Some(a) = ip(w) {
        return Atom::Ip(a, a);
    }
    if let Some((a, b)) = w.split_once('-') {
        if let (Some(a), Some(b)) = (ip(a), ip(b)) {
            return Atom::Ip(a, b);
        }
        if let (Some(a), Some(b)) = (num(a), num(b)) {
            return Atom::Num(a, b);
        }
    }
    if let Some(n) = proto(w).or_else(|| num(w)) {
        return Atom::Num(n, n);
    }
    Atom::Word(w.trim_matches('"').to_string())
}

/// A key as written: atoms joined by `.`.
pub fn key(ws: &[&str]) -> Key {
    ws.iter().filter(|w| **w != ".").map(|w| atom(w)).collect()
}

/// An element of a named set or map (`KEY [comment "..."] [timeout ..] [: VERDICT]`): its key,
/// and its verdict for a verdict map. `None` when it cannot be read.
pub fn element(text: &str) -> Option<(Key, Option<Target>)> {
    let t = tokens(text);
    let colon = t.iter().position(|w| *w == ":");
    let key_end = t
        .iter()
        .position(|w| matches!(*w, ":" | "comment" | "timeout" | "expires" | "counter"))
        .unwrap_or(t.len());
    let k = key(&t[..key_end]);
    if k.is_empty() {
        return None;
    }
    let v = match colon {
        Some(c) => Some(verdict(&t[c + 1..])?.0),
        None => None,
    };
    Some((k, v))
}

/// A verdict at the start of `t`, and how many tokens it took.
fn verdict(t: &[&str]) -> Option<(Target, usize)> {
    Some(match *t.first()? {
        "accept" => (Target::Accept, 1),
        "drop" => (Target::Drop, 1),
        "return" => (Target::Return, 1),
        "continue" => (Target::Continue, 1),
        "jump" => (Target::Jump(t.get(1)?.to_string()), 2),
        "goto" => (Target::Goto(t.get(1)?.to_string()), 2),
        _ => return None,
    })
}

/// The parser of one rule: tokens and where it stands.
struct P<'t, 's> {
    t: &'t [&'s str],
    i: usize,
}

impl<'s> P<'_, 's> {
    fn peek(&self) -> &'s str {
        self.t.get(self.i).copied().unwrap_or("")
    }
    fn at(&self, k: usize) -> &'s str {
        self.t.get(self.i + k).copied().unwrap_or("")
    }
    fn next(&mut self) -> &'s str {
        let w = self.peek();
        self.i += 1;
        w
    }
    fn eat(&mut self, w: &str) -> bool {
        let yes = self.peek() == w;
        if yes {
            self.i += 1;
        }
        yes
    }

    /// A packet field at the cursor (`ip daddr`, `meta l4proto`, `th dport`, `tcp dport`, ...),
    /// and the protocol a `tcp dport` implies.
    fn field(&mut self) -> Option<(Field, Option<u64>)> {
        let (f, implied) = match (self.peek(), self.at(1)) {
            ("ip", "daddr") => (Field::Daddr, None),
            ("ip", "saddr") => (Field::Saddr, None),
            ("ip", "protocol") | ("meta", "l4proto") => (Field::L4proto, None),
            ("th", "dport") => (Field::Dport, None),
            ("th", "sport") => (Field::Sport, None),
            (p @ ("tcp" | "udp" | "sctp"), d @ ("dport" | "sport")) => (
                if d == "dport" {
                    Field::Dport
                } else {
                    Field::Sport
                },
                proto(p),
            ),
            _ => return None,
        };
        self.i += 2;
        Some((f, implied))
    }

    /// `{ a, b . c, ... }` at the cursor: the elements (with their verdicts in a map).
    fn anon(&mut self) -> Option<Vec<(Key, Option<Target>)>> {
        if !self.eat("{") {
            return None;
        }
        let start = self.i;
        let end = start + self.t[start..].iter().position(|w| *w == "}")?;
        self.i = end + 1;
        let mut out = Vec::new();
        for part in self.t[start..end].split(|w| *w == ",") {
            if part.is_empty() {
                continue;
            }
            let text = part.join(" ");
            out.push(element(&text)?);
        }
        Some(out)
    }

    /// After a key's fields: `vmap ...`, `@set`, `!= ...`, `== ...` or a value.
    fn after_key(&mut self, fields: Vec<Field>) -> Option<Expr> {
        if self.eat("vmap") {
            let map = self.set_ref()?;
            return Some(Expr::Vmap { fields, map });
        }
        let neg = self.eat("!=");
        if !neg {
            self.eat("==");
        }
        let set = self.set_ref()?;
        Some(Expr::Lookup { fields, neg, set })
    }

    /// `@name`, `{ ... }`, or one value (a key of as many atoms as `.` joins).
    fn set_ref(&mut self) -> Option<SetRef> {
        let w = self.peek();
        if let Some(name) = w.strip_prefix('@') {
            self.i += 1;
            return Some(SetRef::Named(name.to_string()));
        }
        if w == "{" {
            return self.anon().map(SetRef::Anon);
        }
        if w.is_empty() || is_keyword(w) {
            return None;
        }
        let mut k = vec![atom(self.next())];
        while self.peek() == "." {
            self.i += 1;
            k.push(atom(self.next()));
        }
        Some(SetRef::Anon(vec![(k, None)]))
    }

    /// A key expression: fields joined by `.`, then what it is matched against.
    fn keyed(&mut self) -> Option<Vec<Expr>> {
        let mut out = Vec::new();
        let mut fields = Vec::new();
        loop {
            let (f, implied) = self.field()?;
            if let Some(p) = implied {
                out.push(Expr::Lookup {
                    fields: vec![Field::L4proto],
                    neg: false,
                    set: SetRef::Anon(vec![(vec![Atom::Num(p, p)], None)]),
                });
            }
            fields.push(f);
            if !self.eat(".") {
                break;
            }
        }
        out.push(self.after_key(fields)?);
        Some(out)
    }

    /// `[meta] mark ...` at the cursor (after `meta`/`mark`): a match or `mark set`.
    fn mark(&mut self) -> Option<Expr> {
        if self.eat("set") {
            if !(self.eat("mark") || (self.eat("meta") && self.eat("mark"))) {
                return Some(Expr::MarkSet(MarkOp::Set(num(self.next())? as u32)));
            }
            let op = self.next();
            let v = num(self.next())? as u32;
            return Some(Expr::MarkSet(match op {
                "or" | "|" => MarkOp::Or(v),
                "xor" | "^" => MarkOp::Xor(v),
                "and" | "&" => MarkOp::And(v),
                _ => return None,
            }));
        }
        let mut mask = u32::MAX;
        if matches!(self.peek(), "and" | "&") {
            self.i += 1;
            mask = num(self.next())? as u32;
        }
        let neg = self.eat("!=");
        if !neg {
            self.eat("==");
        }
        let value = num(self.next())? as u32;
        Some(Expr::Mark { mask, neg, value })
    }

    /// One piece of the rule at the cursor; `None` when it is not one the tracer knows.
    fn piece(&mut self) -> Option<Vec<Expr>> {
        let w = self.peek();
        let one = |e: Expr| Some(vec![e]);
        match (w, self.at(1)) {
            ("counter", _) => {
                self.i += 1;
                if self.eat("packets") {
                    self.i += 3;
                }
                one(Expr::Nop)
            }
            ("comment", _) => {
                self.i += 2;
                one(Expr::Nop)
            }
            ("ip" | "meta" | "th" | "tcp" | "udp" | "sctp", _) if self.field_here() => self.keyed(),
            ("meta", "mark") => {
                self.i += 2;
                self.mark().map(|e| vec![e])
            }
            ("mark", _) => {
                self.i += 1;
                self.mark().map(|e| vec![e])
            }
            ("fib", d @ ("daddr" | "saddr")) if self.at(2) == "type" => {
                self.i += 3;
                let neg = self.eat("!=");
                (self.next() == "local").then(|| {
                    vec![Expr::FibLocal {
                        daddr: d == "daddr",
                        neg,
                    }]
                })
            }
            ("ct", "state") => {
                self.i += 2;
                self.ct_state().map(|e| vec![e])
            }
            (i @ ("iifname" | "oifname"), _) => {
                self.i += 1;
                let neg = self.eat("!=");
                let name = self.next().trim_matches('"').to_string();
                one(Expr::Iface {
                    out: i == "oifname",
                    neg,
                    name,
                })
            }
            ("numgen", "random") if self.at(2) == "mod" && self.at(4) == "vmap" => {
                self.i += 5;
                let branches = self.anon()?;
                let jumps: Option<Vec<Target>> = branches.into_iter().map(|(_, j)| j).collect();
                one(Expr::Numgen(jumps?))
            }
            ("update" | "add", s) if s.starts_with('@') && self.at(2) == "{" => {
                self.i += 2;
                self.anon()?;
                one(Expr::Nop)
            }
            ("dnat", _) => {
                self.i += 1;
                self.dnat().map(|e| vec![e])
            }
            ("masquerade", _) => {
                self.i += 1;
                while matches!(self.peek(), "fully-random" | "random" | "persistent" | ",") {
                    self.i += 1;
                }
                one(Expr::Masquerade)
            }
            ("reject", _) => {
                self.i += 1;
                // `reject with icmp type port-unreachable`, `with tcp reset`, ...
                if self.eat("with") {
                    while !self.peek().is_empty() && !matches!(self.peek(), "comment" | "counter") {
                        self.i += 1;
                    }
                }
                one(Expr::Verdict(Target::Reject))
            }
            _ => {
                let (v, n) = verdict(&self.t[self.i..])?;
                self.i += n;
                one(Expr::Verdict(v))
            }
        }
    }

    /// `[!=] STATES` after `ct state`.
    fn ct_state(&mut self) -> Option<Expr> {
        let neg = self.eat("!=");
        let states: Vec<String> = if self.peek() == "{" {
            let set = self.anon()?;
            set.into_iter()
                .filter_map(|(k, _)| match k.first() {
                    Some(Atom::Word(w)) => Some(w.clone()),
                    _ => None,
                })
                .collect()
        } else {
            let mut v = vec![self.next().to_string()];
            while self.eat(",") {
                v.push(self.next().to_string());
            }
            v
        };
        Some(Expr::CtState { neg, states })
    }

    /// `[ip] to ADDR[:PORT]` after `dnat`.
    fn dnat(&mut self) -> Option<Expr> {
        self.eat("ip");
        if !self.eat("to") {
            return None;
        }
        let to = self.next();
        let (a, port) = match to.rsplit_once(':') {
            Some((a, p)) => (a, Some(p.parse().ok()?)),
            None => (to, None),
        };
        Some(Expr::Dnat { ip: ip(a)?, port })
    }

    fn field_here(&self) -> bool {
        let mut p = P {
            t: self.t,
            i: self.i,
        };
        p.field().is_some()
    }
}

/// Words that start a piece of a rule, not a value.
fn is_keyword(w: &str) -> bool {
    matches!(
        w,
        "counter"
            | "comment"
            | "jump"
            | "goto"
            | "accept"
            | "drop"
            | "reject"
            | "return"
            | "vmap"
            | "dnat"
            | "masquerade"
            | "ip"
            | "meta"
            | "th"
            | "ct"
            | "fib"
            | "mark"
    )
}

/// A rule's text as typed pieces, in order. What cannot be read ends the list as one
/// [`Expr::Unknown`] holding the text from there on.
pub fn parse(text: &str) -> Vec<Expr> {
    let t = tokens(text);
    let mut p = P { t: &t, i: 0 };
    let mut out = Vec::new();
    while p.i < t.len() {
        let start = p.i;
        match p.piece() {
            Some(es) => out.extend(es),
            None => {
                out.push(Expr::Unknown(t[start..].join(" ")));
                break;
            }
        }
    }
    out
}

/// A rule as written, without its counter (`counter packets N bytes M`: what it counted is
/// state, not the rule).
pub fn without_counter(text: &str) -> String {
    if !text.contains("counter") {
        return text.to_string();
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out: Vec<&str> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        if words[i] == "counter" {
            i += if words.get(i + 1) == Some(&"packets") {
                5
            } else {
                1
            };
            continue;
        }
        out.push(words[i]);
        i += 1;
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_proxy_pieces_are_read() {
        let e = parse("ip daddr . meta l4proto . th dport vmap @service-ips");
        assert_eq!(
            e,
            vec![Expr::Vmap {
                fields: vec![Field::Daddr, Field::L4proto, Field::Dport],
                map: SetRef::Named("service-ips".into())
            }]
        );
        let e = parse("ip daddr 10.43.0.1 tcp dport 443 ip saddr != 10.42.0.0/16 jump x");
        assert_eq!(e.len(), 5, "{e:?}");
        assert_eq!(e[4], Expr::Verdict(Target::Jump("x".into())));
        assert_eq!(
            parse("meta mark & 0x00004000 == 0x00000000 return")[0],
            Expr::Mark {
                mask: 0x4000,
                neg: false,
                value: 0
            }
        );
        assert_eq!(
            parse("mark set mark or 0x4000")[0],
            Expr::MarkSet(MarkOp::Or(0x4000))
        );
        assert_eq!(
            parse("meta mark set meta mark ^ 0x00004000")[0],
            Expr::MarkSet(MarkOp::Xor(0x4000))
        );
        let e = parse("numgen random mod 2 vmap { 0 : goto a , 1 : goto b }");
        assert_eq!(
            e,
            vec![Expr::Numgen(vec![
                Target::Goto("a".into()),
                Target::Goto("b".into())
            ])]
        );
        assert_eq!(
            parse("meta l4proto tcp dnat to 10.180.0.1:80")[1],
            Expr::Dnat {
                ip: 0x0AB4_0001,
                port: Some(80)
            }
        );
        assert_eq!(
            parse("ip daddr { 172.30.0.0/16 } drop comment \"x y\"")[2],
            Expr::Nop
        );
        assert!(matches!(
            parse("ip daddr 1.2.3.4 ct original proto-dst 80 drop")[1],
            Expr::Unknown(_)
        ));
        assert_eq!(
            without_counter("ip daddr 1.2.3.4 counter packets 3 bytes 180 drop"),
            "ip daddr 1.2.3.4 drop"
        );
    }

    #[test]
    fn elements_are_read() {
        let (k, v) = element("tcp . 3001 comment \"ns2/svc2:p80\" : drop").unwrap();
        assert_eq!(k, vec![Atom::Num(6, 6), Atom::Num(3001, 3001)]);
        assert_eq!(v, Some(Target::Drop));
        let (k, v) = element("10.43.0.10 . udp . 53 : goto service-x").unwrap();
        assert_eq!(k.len(), 3);
        assert_eq!(v, Some(Target::Goto("service-x".into())));
        let (k, _) = element("10.0.0.0/8").unwrap();
        assert_eq!(k, vec![Atom::Ip(0x0A00_0000, 0x0AFF_FFFF)]);
    }
}
