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
    out
}

/// The value of `--comment` in a rule body, if any (without quotes).
pub fn comment(body: &str) -> Option<&str> {
    let i = memchr::memmem::find(body.as_bytes(), b"--comment ")?;
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
    // The target is almost always last; search from the end for " -j " or " -g ".
    let at = memchr::memmem::rfind(b, b"-j ")
        .into_iter()
        .chain(memchr::memmem::rfind(b, b"-g "))
        .filter(|&i| i == 0 || b[i - 1] == b' ')
        .max()?;
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
    if quote || w.contains([' ', '\t']) || w.is_empty() {
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
pub fn canonical(words: &[&str], map: &mut dyn FnMut(&str, &str) -> Option<String>) -> String {
    struct Opt<'a> {
        neg: bool,
        name: &'a str,
        vals: Vec<Cow<'a, str>>,
    }
    let mut basics: Vec<(u8, bool, &'static str, Cow<'_, str>)> = Vec::new();
    let mut modules: Vec<(Cow<'_, str>, Vec<Opt<'_>>)> = Vec::new();
    let mut target: Option<(&str, &str, Vec<Opt<'_>>)> = None;
    let mut proto: Option<&str> = None;
    let mut neg = false;
    let mut i = 0;
    while i < words.len() {
        let w = words[i];
        if w == "!" {
            neg = true;
            i += 1;
            continue;
        }
        if w == "-c" && i + 2 < words.len() + 1 {
            i += 3;
            continue;
        }
        if let Some((rank, name)) = basic_rank(w) {
            let v = words.get(i + 1).copied().unwrap_or("");
            let v: Cow<'_, str> = if name == "-s" || name == "-d" {
                with_prefix(v)
            } else if name == "-p" {
                Cow::Owned(v.to_ascii_lowercase())
            } else {
                Cow::Borrowed(v)
            };
            if name == "-p" {
                proto = Some(words.get(i + 1).copied().unwrap_or(""));
            }
            basics.push((rank, neg, name, v));
            neg = false;
            i += if name == "-f" { 1 } else { 2 };
            continue;
        }
        if w == "-m" || w == "--match" {
            let m = words.get(i + 1).copied().unwrap_or("");
            modules.push((Cow::Borrowed(m), Vec::new()));
            i += 2;
            neg = false;
            continue;
        }
        if w == "-j" || w == "-g" || w == "--jump" || w == "--goto" {
            let kind = if w == "-g" || w == "--goto" {
                "-g"
            } else {
                "-j"
            };
            let t = words.get(i + 1).copied().unwrap_or("");
            target = Some((kind, t, Vec::new()));
            i += 2;
            neg = false;
            continue;
        }
        // An option with its values (all words up to the next option or '!').
        let mut j = i + 1;
        while j < words.len() && !words[j].starts_with('-') && words[j] != "!" {
            j += 1;
        }
        // Negative numbers and a lone "-" policy are values, not options.
        let opt = Opt {
            neg,
            name: w,
            vals: words[i + 1..j].iter().map(|v| Cow::Borrowed(*v)).collect(),
        };
        neg = false;
        if let Some((_, _, opts)) = target.as_mut() {
            opts.push(opt);
        } else {
            if modules.is_empty() {
                // `-p tcp --dport 80` without `-m tcp`: iptables loads the protocol's module.
                let m = proto.unwrap_or("").to_ascii_lowercase();
                modules.push((Cow::Owned(m), Vec::new()));
            }
            modules.last_mut().unwrap().1.push(opt);
        }
        i = j;
    }
    basics.sort_by_key(|b| b.0);

    let mut out = String::with_capacity(words.len() * 12);
    for (_, neg, name, v) in &basics {
        if *neg {
            push_word(&mut out, "!", false);
        }
        push_word(&mut out, name, false);
        if *name != "-f" {
            let v: Cow<'_, str> = map(name, v)
                .map(Cow::Owned)
                .unwrap_or(Cow::Borrowed(v.as_ref()));
            push_word(&mut out, &v, false);
        }
    }
    for (m, opts) in &modules {
        push_word(&mut out, "-m", false);
        push_word(&mut out, m, false);
        for o in opts {
            if o.neg {
                push_word(&mut out, "!", false);
            }
            push_word(&mut out, o.name, false);
            for v in &o.vals {
                let v = if o.name == "--probability" {
                    v.parse::<f64>()
                        .map(|p| Cow::Owned(format!("{p:.5}")))
                        .unwrap_or(v.clone())
                } else {
                    map(o.name, v).map(Cow::Owned).unwrap_or(v.clone())
                };
                push_word(&mut out, &v, o.name == "--comment");
            }
        }
    }
    if let Some((kind, t, opts)) = &target {
        push_word(&mut out, kind, false);
        let t2 = map(kind, t);
        push_word(&mut out, t2.as_deref().unwrap_or(t), false);
        for o in opts {
            if o.neg {
                push_word(&mut out, "!", false);
            }
            if let (1, Some(x)) = (
                o.vals.len(),
                o.vals.first().and_then(|v| mark_xmark(o.name, v)),
            ) {
                push_word(&mut out, "--set-xmark", false);
                push_word(&mut out, &x, false);
                continue;
            }
            push_word(&mut out, o.name, false);
            for v in &o.vals {
                let v2 = map(o.name, v);
                push_word(&mut out, v2.as_deref().unwrap_or(v), false);
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
        // Module order differs (tcp before comment in one): both canonical forms must agree
        // when modules are written in the same order, which iptables-save preserves.
        let a = canon(restore);
        assert!(
            a.starts_with("! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp"),
            "{a}"
        );
        let saved2 = r#"! -s 10.0.0.0/8 -d 172.30.0.41/32 -p tcp -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ"#;
        assert_eq!(canon(saved), canon(saved2));
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
}
