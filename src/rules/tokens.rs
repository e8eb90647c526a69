//! Splitting a rule into words, and writing it back in one canonical form.
//!
//! `iptables-save` (legacy or nft) and the `iptables-restore` input kube-proxy writes describe the
//! same rule in different words: options in another order, `-d 1.2.3.4` vs `-d 1.2.3.4/32`,
//! `--or-mark 0x4000` vs `--set-xmark 0x4000/0x4000`, `-m tcp` implied or written, probabilities
//! with 10 or 11 decimals, counters. [`canonical`] writes every such spelling the same way.

use std::borrow::Cow;

/// Split a rule body into words. Double-quoted words lose their quotes (backslash escapes are
/// kept as written). The parser has already rejected unterminated quotes.
pub fn split(body: &str) -> Vec<&str> {
    let mut out = Vec::with_capacity(16);
    split_into(&mut out, body);
    out
}

/// [`split`], appending to `out`.
pub fn split_into<'a>(out: &mut Vec<&'a str>, body: &'a str) {
    let b = body.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        if b[i] == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < b.len() && b[j] != b'"' {
                if b[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            let end = j.min(b.len());
            out.push(&body[start..end]);
            i = end + 1;
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                i += 1;
            }
            out.push(&body[start..i]);
        }
    }
}

/// The value of `--comment` in a rule body, if any (without quotes).
pub fn comment(body: &str) -> Option<&str> {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"--comment "));
    let i = FINDER.find(body.as_bytes())?;
    let rest = &body[i + 10..];
    let rest = rest.trim_start();
    if let Some(q) = rest.strip_prefix('"') {
        let b = q.as_bytes();
        let mut j = 0;
        while j < b.len() && b[j] != b'"' {
            if b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        Some(&q[..j.min(q.len())])
    } else {
        Some(rest.split([' ', '\t']).next().unwrap_or(""))
    }
}

/// The chain a rule jumps or goes to (`-j X` / `-g X`), if any.
pub fn jump_target(body: &str) -> Option<&str> {
    let b = body.as_bytes();
    // The target is almost always last: search from the end for "-j " or "-g " at a word start.
    let mut at = None;
    let mut end = b.len();
    while let Some(k) = memchr::memrchr(b'-', &b[..end]) {
        if k + 2 < b.len()
            && (b[k + 1] == b'j' || b[k + 1] == b'g')
            && b[k + 2] == b' '
            && (k == 0 || b[k - 1] == b' ')
        {
            at = Some(k);
            break;
        }
        end = k;
    }
    let at = at?;
    let rest = &body[at + 3..];
    let rest = rest.trim_start();
    let t = rest.split([' ', '\t']).next().unwrap_or("");
    (!t.is_empty()).then_some(t)
}

fn basic_rank(opt: &str) -> Option<(u8, &'static str)> {
    Some(match opt {
        "-s" | "--source" | "--src" => (0, "-s"),
        "-d" | "--destination" | "--dst" => (1, "-d"),
        "-i" | "--in-interface" => (2, "-i"),
        "-o" | "--out-interface" => (3, "-o"),
        "-p" | "--protocol" => (4, "-p"),
        "-f" | "--fragment" => (5, "-f"),
        _ => return None,
    })
}

/// `s` in lower case (borrowed when it is already).
fn lowercase(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

fn with_prefix(addr: &str) -> Cow<'_, str> {
    if addr.contains('/') || !addr.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        Cow::Borrowed(addr)
    } else {
        Cow::Owned(format!("{addr}/32"))
    }
}

fn mark_xmark(opt: &str, v: &str) -> Option<String> {
    let parse = |s: &str| -> Option<u32> {
        let (val, _) = s.split_once('/').unwrap_or((s, ""));
        if let Some(h) = val.strip_prefix("0x") {
            u32::from_str_radix(h, 16).ok()
        } else {
            val.parse().ok()
        }
    };
    let x = parse(v)?;
    let (value, mask) = match opt {
        "--or-mark" => (x, x),
        "--xor-mark" => (x, 0),
        "--and-mark" => (0, !x),
        "--set-mark" if !v.contains('/') => (x, u32::MAX),
        _ => return None,
    };
    Some(format!("{value:#x}/{mask:#x}"))
}

/// A word of canonical output: quoted when it holds a space (or is a comment).
fn push_word(out: &mut String, w: &str, quote: bool) {
    if !out.is_empty() {
        out.push(' ');
    }
    if quote || w.is_empty() || memchr::memchr2(b' ', b'\t', w.as_bytes()).is_some() {
        out.push('"');
        out.push_str(w);
        out.push('"');
    } else {
        out.push_str(w);
    }
}

/// A rule's words in canonical order and spelling: basic matches (`-s -d -i -o -p -f`, with
/// their `!`), then match modules in the order written (with `-m tcp`/`-m udp` made explicit),
/// then the target. Counters (`-c p b`) are dropped. `map` may replace any word (used for
/// normalizing IPs, ports and chain names); it gets the option the word is the value of.
pub fn canonical<'m>(
    words: &[&str],
    map: &mut dyn FnMut(&str, &str) -> Option<Cow<'m, str>>,
) -> String {
    let mut out = String::with_capacity(words.len() * 12);
    canonical_into(&mut out, words, map);
    out
}

/// [`canonical`], appended to `out` (a space first when `out` is not empty).
pub fn canonical_into<'m>(
    out: &mut String,
    words: &[&str],
    map: &mut dyn FnMut(&str, &str) -> Option<Cow<'m, str>>,
) {
    let (pieces, proto) = pieces(words);
    // Basic matches first, in canonical order (rank 0 to 5, as written within a rank); the rest
    // as written.
    let rank = |p: &&Piece<'_>| match p.kind {
        Kind::Basic(r, _) => Some(r),
        _ => None,
    };
    let basics = (0..6u8).flat_map(|r| pieces.iter().filter(move |p| rank(p) == Some(r)));
    let mut w = Writer {
        out,
        words,
        proto,
        map,
        target_opts: false,
    };
    for p in basics.chain(pieces.iter().filter(|p| rank(p).is_none())) {
        w.piece(p);
    }
}

/// What a piece of a rule is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Basic(u8, &'static str),
    Module,
    Opt,
    Target,
}

/// A piece of a rule: a basic match, a module, an option or the target, with its values.
#[derive(Clone, Copy)]
struct Piece<'a> {
    kind: Kind,
    neg: bool,
    name: &'a str,
    /// Index range of the values in `words`.
    vals: (usize, usize),
}

/// A rule's words as pieces, in the order written, and the protocol (`-p`).
fn pieces<'a>(words: &[&'a str]) -> (Vec<Piece<'a>>, &'a str) {
    let mut pieces: Vec<Piece<'a>> = Vec::with_capacity(12);
    let mut proto: &str = "";
    let mut neg = false;
    let mut in_target = false;
    let mut have_module = false;
    let mut i = 0;
    let piece = |kind, neg, name, vals| Piece {
        kind,
        neg,
        name,
        vals,
    };
    while i < words.len() {
        let w = words[i];
        let (p, next) = if w == "!" {
            neg = true;
            i += 1;
            continue;
        } else if w == "-c" {
            i += 3;
            continue;
        } else if let (false, Some((rank, name))) = (in_target, basic_rank(w)) {
            let n = if name == "-f" { 0 } else { 1 };
            if name == "-p" {
                proto = words.get(i + 1).copied().unwrap_or("");
            }
            let vals = (i + 1, (i + 1 + n).min(words.len()));
            (piece(Kind::Basic(rank, name), neg, name, vals), i + 1 + n)
        } else if w == "-m" || w == "--match" {
            have_module = true;
            let name = words.get(i + 1).copied().unwrap_or("");
            (piece(Kind::Module, false, name, (0, 0)), i + 2)
        } else if matches!(w, "-j" | "-g" | "--jump" | "--goto") {
            let name = if matches!(w, "-g" | "--goto") {
                "-g"
            } else {
                "-j"
            };
            in_target = true;
            let vals = (i + 1, (i + 2).min(words.len()));
            (piece(Kind::Target, false, name, vals), i + 2)
        } else {
            // An option and its values (the words up to the next option or '!').
            let mut j = i + 1;
            while j < words.len() && !words[j].starts_with('-') && words[j] != "!" {
                j += 1;
            }
            if !in_target && !have_module {
                // `-p tcp --dport 80` without `-m tcp`: iptables loads the protocol's module.
                pieces.push(piece(Kind::Module, false, "", (0, 0)));
                have_module = true;
            }
            (piece(Kind::Opt, neg, w, (i + 1, j)), j)
        };
        pieces.push(p);
        neg = false;
        i = next;
    }
    (pieces, proto)
}

/// Writes pieces in canonical spelling.
struct Writer<'o, 'w, 'f, 'm> {
    out: &'o mut String,
    words: &'w [&'w str],
    proto: &'w str,
    map: &'f mut dyn FnMut(&str, &str) -> Option<Cow<'m, str>>,
    /// Past the target: its options follow.
    target_opts: bool,
}

impl Writer<'_, '_, '_, '_> {
    fn piece(&mut self, p: &Piece<'_>) {
        if p.neg {
            push_word(self.out, "!", false);
        }
        let vals = &self.words[p.vals.0..p.vals.1];
        match p.kind {
            Kind::Basic(_, name) => {
                push_word(self.out, name, false);
                for v in vals {
                    match (self.map)(name, v) {
                        Some(m) => push_word(self.out, &m, false),
                        None if name == "-s" || name == "-d" => {
                            push_word(self.out, &with_prefix(v), false)
                        }
                        None if name == "-p" => push_word(self.out, &lowercase(v), false),
                        None => push_word(self.out, v, false),
                    }
                }
            }
            Kind::Module => {
                push_word(self.out, "-m", false);
                if p.name.is_empty() {
                    push_word(self.out, &lowercase(self.proto), false);
                } else {
                    push_word(self.out, p.name, false);
                }
            }
            Kind::Target => {
                push_word(self.out, p.name, false);
                for v in vals {
                    let m = (self.map)(p.name, v);
                    push_word(self.out, m.as_deref().unwrap_or(v), false);
                }
                self.target_opts = true;
            }
            Kind::Opt => self.option(p.name, vals),
        }
    }

    fn option(&mut self, name: &str, vals: &[&str]) {
        if self.target_opts
            && vals.len() == 1
            && let Some(x) = mark_xmark(name, vals[0])
        {
            push_word(self.out, "--set-xmark", false);
            push_word(self.out, &x, false);
            return;
        }
        push_word(self.out, name, false);
        for v in vals {
            if name == "--probability" {
                match v.parse::<f64>() {
                    Ok(f) => {
                        use std::fmt::Write;
                        if !self.out.is_empty() {
                            self.out.push(' ');
                        }
                        let _ = write!(self.out, "{f:.5}");
                    }
                    Err(_) => push_word(self.out, v, false),
                }
            } else {
                let m = (self.map)(name, v);
                push_word(self.out, m.as_deref().unwrap_or(v), name == "--comment");
            }
        }
    }
}

/// An nftables rule in the spelling `nft list` prints, whether it was listed or written as
/// knftables writes it (kube-proxy's `add rule` lines, `nft -f` input): `mark` is `meta mark`,
/// `or`/`and`/`xor` are `|`/`&`/`^`, a mark's values are 32-bit hex (`0x00004000`), a set of one
/// element is that element (`{ x }` is `x`), single spaces, `a, b` in lists. Quoted strings are
/// kept as written. Borrowed when nothing is to change.
pub fn nft_spelling(text: &str) -> Cow<'_, str> {
    let has = |n: &str| memchr::memmem::find(text.as_bytes(), n.as_bytes()).is_some();
    // `mark` as a word (not `mark-for-masquerade`, which most rules jump to).
    let mark = has(" mark ") || text.starts_with("mark ") || text.ends_with(" mark");
    let maybe = ["{", " or ", " and ", " xor ", "  ", "\t", " ,"];
    if !mark && !maybe.iter().any(|n| has(n)) {
        return Cow::Borrowed(text);
    }
    let tokens = nft_tokens(text);
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(tokens.len() + 4);
    let mut in_mark = false;
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        // `{ x }`, a set of one element (not a map's `{ k : v }`, nor a verdict map's).
        let prev = out.last().map(|p| p.as_ref());
        if t == "{"
            && tokens.get(i + 2) == Some(&"}")
            && !matches!(tokens.get(i + 1), Some(&("}" | "," | ":")) | None)
            && !matches!(prev, Some("vmap" | "map"))
        {
            out.push(Cow::Borrowed(tokens[i + 1]));
            i += 3;
            continue;
        }
        let word: Cow<'_, str> = match t {
            "mark" if !matches!(prev, Some("meta" | "ct")) => {
                out.push(Cow::Borrowed("meta"));
                Cow::Borrowed("mark")
            }
            "or" => Cow::Borrowed("|"),
            "and" => Cow::Borrowed("&"),
            "xor" => Cow::Borrowed("^"),
            _ => match (in_mark, mark_value(t)) {
                (true, Some(v)) => Cow::Owned(format!("{v:#010x}")),
                _ => Cow::Borrowed(t),
            },
        };
        in_mark = match word.as_ref() {
            "mark" => true,
            "set" | "meta" | "ct" | "|" | "&" | "^" | "==" | "!=" => in_mark,
            w => in_mark && mark_value(w).is_some(),
        };
        out.push(word);
        i += 1;
    }
    let mut s = String::with_capacity(text.len() + 16);
    for w in &out {
        if !s.is_empty() && w != "," {
            s.push(' ');
        }
        s.push_str(w);
    }
    if s == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(s)
    }
}

/// A number as nft writes marks (`0x4000`, `16384`).
fn mark_value(w: &str) -> Option<u32> {
    match w.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None if w.bytes().all(|c| c.is_ascii_digit()) => w.parse().ok(),
        None => None,
    }
}

/// An nftables rule's tokens: words, quoted strings (with their quotes), and `{`, `}`, `,` each
/// a token of its own.
fn nft_tokens(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(24);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' => i += 1,
            b'{' | b'}' | b',' => {
                out.push(&text[i..i + 1]);
                i += 1;
            }
            _ => {
                let start = i;
                let mut quoted = false;
                while i < b.len() {
                    match b[i] {
                        b'"' => quoted = !quoted,
                        b' ' | b'\t' | b'{' | b'}' | b',' if !quoted => break,
                        _ => {}
                    }
                    i += 1;
                }
                out.push(&text[start..i]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(s: &str) -> String {
        canonical(&split(s), &mut |_, _| None)
    }

    #[test]
    fn split_handles_quotes() {
        assert_eq!(
            split(r#"-m comment --comment "a b" -j X"#),
            vec!["-m", "comment", "--comment", "a b", "-j", "X"]
        );
        assert_eq!(split(r#"--comment "x \"y\"" -j Z"#)[1], r#"x \"y\""#);
    }

    #[test]
    fn comment_and_target() {
        let b = r#"-p tcp -m comment --comment "default/echo: has no local endpoints" -j KUBE-MARK-DROP"#;
        assert_eq!(comment(b), Some("default/echo: has no local endpoints"));
        assert_eq!(jump_target(b), Some("KUBE-MARK-DROP"));
        assert_eq!(
            comment("-m comment --comment ns1/svc1:p80 -j X"),
            Some("ns1/svc1:p80")
        );
        assert_eq!(jump_target("-m comment --comment \"x\""), None);
        assert_eq!(jump_target("-s 1.2.3.4 -g KUBE-SVC-A"), Some("KUBE-SVC-A"));
    }

    #[test]
    fn restore_input_and_save_output_agree() {
        // kube-proxy's restore input vs what iptables-save prints back.
        let restore = r#"-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"#;
        let saved = r#"! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ"#;
        // Basic matches move to the front in one order, `-d` gets its /32; the modules keep
        // the order both wrote them in: the two spellings are one rule.
        let a = canon(restore);
        assert!(
            a.starts_with("! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp"),
            "{a}"
        );
        assert_ne!(restore, saved);
        assert_eq!(a, canon(saved));
        // And a real difference stays one.
        assert_ne!(a, canon(&saved.replace("--dport 80", "--dport 81")));
        assert_eq!(
            canon("-j MARK --or-mark 0x4000"),
            canon("-j MARK --set-xmark 0x4000/0x4000")
        );
        assert_eq!(
            canon("-m statistic --mode random --probability 0.5000000000 -j A"),
            canon("-m statistic --mode random --probability 0.50000000000 -j A")
        );
        assert_eq!(
            canon("-p tcp -c 1 2 --dport 80 -j A"),
            canon("-p tcp -m tcp --dport 80 -j A")
        );
    }

    #[test]
    fn nft_spelling_of_knftables_and_nft_list_is_one() {
        for (knft, listed) in [
            (
                "mark set mark or 0x4000",
                "meta mark set meta mark | 0x00004000",
            ),
            (
                "mark and 0x4000 == 0 return",
                "meta mark & 0x00004000 == 0x00000000 return",
            ),
            (
                "mark set mark xor 0x4000",
                "meta mark set meta mark ^ 0x00004000",
            ),
            (
                "ip daddr { 172.30.0.0/16 } drop comment \"Drop  { x } mark or\"",
                "ip daddr 172.30.0.0/16 drop comment \"Drop  { x } mark or\"",
            ),
            (
                "ip saddr != { 203.0.113.0/25 } drop",
                "ip saddr != 203.0.113.0/25 drop",
            ),
            (
                "numgen random mod 2 vmap { 0 : goto a , 1 : goto b }",
                "numgen random mod 2 vmap { 0 : goto a, 1 : goto b }",
            ),
            (
                "ip daddr  {1.2.3.4,5.6.7.8}  drop",
                "ip daddr { 1.2.3.4, 5.6.7.8 } drop",
            ),
            ("ct mark set mark", "ct mark set meta mark"),
        ] {
            assert_eq!(nft_spelling(knft), listed, "{knft}");
            assert_eq!(nft_spelling(listed), listed, "{listed}");
            assert!(matches!(nft_spelling(listed), Cow::Borrowed(_)), "{listed}");
        }
        assert!(matches!(
            nft_spelling("jump mark-for-masquerade"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            nft_spelling("numgen random mod 1 vmap { 0 : goto x }"),
            "numgen random mod 1 vmap { 0 : goto x }"
        );
        assert_eq!(
            nft_spelling("meta mark 4 accept"),
            "meta mark 0x00000004 accept"
        );
    }
}
