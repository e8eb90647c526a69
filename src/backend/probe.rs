//! Probes: curl from a source (a pod, or a node's network namespace) to a target, argv only.

use super::event::{ProbeResult, Try};
use super::tries::{Quantiles, outcome_of};
use crate::model::Outcome;

/// curl's limits for one probe.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Timeouts {
    /// Seconds to connect.
    pub connect: f64,
    /// Seconds for the whole request.
    pub total: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 2.0,
            total: 5.0,
        }
    }
}

/// What one probe asks of curl: the tries, the path of a `host:port` target, curl's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Ask {
    pub repeat: u32,
    pub path: String,
    pub timeouts: Timeouts,
}

impl Ask {
    /// One try of `/hostname` within `timeouts`.
    pub fn once(timeouts: Timeouts) -> Ask {
        Ask {
            repeat: 1,
            path: "/hostname".into(),
            timeouts,
        }
    }

    /// curl's argv for `target`.
    pub fn argv(&self, target: &str) -> Vec<String> {
        curl_argv(target, &self.path, self.repeat, self.timeouts)
    }

    /// The longest the tries may take, one after the other, plus `slack` for the exec.
    pub fn limit(&self, slack: f64) -> std::time::Duration {
        std::time::Duration::from_secs_f64(
            f64::from(self.repeat.max(1)) * self.timeouts.total + slack,
        )
    }
}

/// What curl writes after each transfer (its own line, after the response body): the marker,
/// then the transfer's number, exit code, HTTP status, and connect and total times in seconds.
pub const MARKER: &str = "@kindred-try@";
const WRITE_OUT: &str =
    "\n@kindred-try@ %{urlnum} %{exitcode} %{http_code} %{time_connect} %{time_total}\n";

/// The URL probed: `target` as given when it is a URL, else `http://TARGET` + `path`.
pub fn url(target: &str, path: &str) -> String {
    if target.contains("://") {
        target.to_string()
    } else {
        format!("http://{target}{path}")
    }
}

/// The command run in the source: one curl asking the URL `repeat` times (at least once), each
/// on a new connection (`Connection: close`, so the tries spread over the endpoints), each
/// transfer's body (the endpoint's name) followed by a [`MARKER`] line.
pub fn curl_argv(target: &str, path: &str, repeat: u32, t: Timeouts) -> Vec<String> {
    let mut argv: Vec<String> = [
        "curl",
        "-sS",
        "-H",
        "Connection: close",
        "-w",
        WRITE_OUT,
        "--connect-timeout",
    ]
    .map(String::from)
    .to_vec();
    argv.push(format!("{}", t.connect));
    argv.push("--max-time".into());
    argv.push(format!("{}", t.total));
    let u = url(target, path);
    argv.extend(std::iter::repeat_n(u, repeat.max(1) as usize));
    argv
}

/// The longest endpoint name kept (a DNS subdomain's).
const NAME_MAX: usize = 253;

/// The endpoint's name in a response body: its last line, when it looks like a pod name (at
/// most 253 letters, digits, `-`, `.` or `_`); anything else (a page, control characters) is
/// not a name and is not kept.
fn endpoint_name(body: &[&str]) -> Option<String> {
    let name = body
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())?;
    let ok = name.len() <= NAME_MAX
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    ok.then(|| name.to_string())
}

/// Microseconds of curl's seconds; `None` for 0 (never got that far) or garbage.
fn micros(secs: Option<&str>) -> Option<u64> {
    let s: f64 = secs?.parse().ok()?;
    (s > 0.0 && s.is_finite()).then(|| (s * 1e6).round() as u64)
}

/// One try from its marker line's fields and the body before it; `errors` gives curl's
/// message for a try that failed (its next `curl: (N) ...` line on stderr).
fn one_try<'a>(fields: &[&str], body: &[&str], errors: &mut impl Iterator<Item = &'a str>) -> Try {
    let exit: i64 = fields.get(1).and_then(|s| s.parse().ok()).unwrap_or(-1);
    let http: Option<u16> = fields
        .get(2)
        .and_then(|s| s.parse().ok())
        .filter(|c| *c != 0);
    let (outcome, detail) = match exit {
        0 if http.is_some_and(|h| h < 400) => (Outcome::Ok, None),
        0 => (Outcome::Fail, Some(format!("HTTP {}", http.unwrap_or(0)))),
        code => {
            let o = if code == 28 {
                Outcome::Timeout
            } else {
                Outcome::Fail
            };
            let said = errors
                .next()
                .map(|e| e.chars().filter(|c| !c.is_control()).collect());
            (o, Some(said.unwrap_or_else(|| format!("curl exit {code}"))))
        }
    };
    Try {
        outcome,
        http_status: http,
        connect_us: micros(fields.get(3).copied()),
        total_us: micros(fields.get(4).copied()),
        endpoint: (outcome == Outcome::Ok)
            .then(|| endpoint_name(body))
            .flatten(),
        detail,
    }
}

/// Each try curl reported in `stdout` (see [`curl_argv`]), in order; stderr's `curl: (N)`
/// lines go to the tries that failed, in order.
pub fn parse_tries(stdout: &str, stderr: &str) -> Vec<Try> {
    let mut errors = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("curl: ("));
    let mut tries = Vec::new();
    let mut body = Vec::new();
    for line in stdout.lines() {
        match line.strip_prefix(MARKER) {
            Some(rest) => {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                tries.push(one_try(&fields, &body, &mut errors));
                body.clear();
            }
            None => body.push(line),
        }
    }
    tries
}

/// Read curl's result (see [`curl_argv`]): its tries, summed up (`Flaky` when they disagree);
/// a curl that reported no try at all (not found, killed) is a failure with what it said.
pub fn parse_curl(
    source: &str,
    target: &str,
    stdout: &str,
    stderr: &str,
    code: i64,
) -> ProbeResult {
    let tries = parse_tries(stdout, stderr);
    let mut r = ProbeResult {
        source: source.to_string(),
        target: target.to_string(),
        outcome: outcome_of(&tries).unwrap_or(Outcome::Fail),
        http_status: None,
        latency_ms: None,
        detail: None,
        scenario_target: None,
        tries: Vec::new(),
        ready_endpoints: None,
    };
    if tries.is_empty() {
        let e = stderr.trim();
        r.detail = Some(if e.is_empty() {
            format!("curl exit {code}, no result")
        } else {
            e.chars().filter(|c| !c.is_control()).collect()
        });
        return r;
    }
    let answered = || tries.iter().filter(|t| t.outcome == Outcome::Ok);
    r.http_status = answered().chain(tries.iter()).find_map(|t| t.http_status);
    let totals: Vec<u64> = answered().filter_map(|t| t.total_us).collect();
    let totals = if totals.is_empty() {
        tries.iter().filter_map(|t| t.total_us).collect()
    } else {
        totals
    };
    r.latency_ms = Quantiles::of(totals).map(|q| (q.p50_us + 500) / 1000);
    r.detail = failure_detail(&tries);
    r.tries = tries;
    r
}

/// What a result says of its failed tries: the first failure's detail, with how many of the
/// tries failed when they are not all one.
fn failure_detail(tries: &[Try]) -> Option<String> {
    let failed: Vec<&Try> = tries.iter().filter(|t| t.outcome != Outcome::Ok).collect();
    let first = failed.first()?.detail.clone().unwrap_or_default();
    Some(if tries.len() == 1 {
        first
    } else {
        format!("{} of {} tries failed: {first}", failed.len(), tries.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What curl 7.88 printed for `curl_argv` to four URLs (a server answering its name, the
    /// same server's 404 page, a closed port), and a timeout's line as curl writes it.
    const STDOUT: &str = "echo-x-worker2\n@kindred-try@ 0 0 200 0.000182 0.014095\n<!DOCTYPE HTML>\n<html lang=\"en\">\n    <body>\n        <p>Error code: 404</p>\n    </body>\n</html>\n\n@kindred-try@ 1 0 404 0.000140 0.001850\n\n@kindred-try@ 2 7 000 0.000000 0.000117\n\n@kindred-try@ 3 28 000 0.000000 1.001234\n";
    const STDERR: &str = "curl: (7) Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server\ncurl: (28) Connection timed out after 1001 milliseconds\n";

    #[test]
    fn each_try_is_read_with_its_endpoint_times_and_error() {
        let t = parse_tries(STDOUT, STDERR);
        assert_eq!(t.len(), 4);
        assert_eq!(
            t[0],
            Try {
                outcome: Outcome::Ok,
                http_status: Some(200),
                connect_us: Some(182),
                total_us: Some(14095),
                endpoint: Some("echo-x-worker2".into()),
                detail: None,
            }
        );
        assert_eq!(
            (t[1].outcome, t[1].http_status, t[1].endpoint.as_deref()),
            (Outcome::Fail, Some(404), None)
        );
        assert_eq!(t[1].detail.as_deref(), Some("HTTP 404"));
        assert_eq!((t[2].outcome, t[2].http_status), (Outcome::Fail, None));
        assert_eq!((t[2].connect_us, t[2].total_us), (None, Some(117)));
        assert!(t[2].detail.as_deref().unwrap().starts_with("curl: (7)"));
        assert_eq!(t[3].outcome, Outcome::Timeout);
        assert!(t[3].detail.as_deref().unwrap().starts_with("curl: (28)"));
        let r = parse_curl("a", "lb", STDOUT, STDERR, 28);
        assert_eq!(r.outcome, Outcome::Flaky);
        assert_eq!((r.http_status, r.latency_ms), (Some(200), Some(14)));
        assert_eq!(
            r.detail.as_deref(),
            Some("3 of 4 tries failed: HTTP 404"),
            "{r:?}"
        );
        assert_eq!(r.tries, t);
    }

    #[test]
    fn one_try_fills_tries_and_sums_up_as_before() {
        let ok = parse_curl(
            "a",
            "t",
            "echo-a\n@kindred-try@ 0 0 200 0.000500 0.002123\n",
            "",
            0,
        );
        assert_eq!(
            (ok.outcome, ok.http_status, ok.latency_ms, ok.detail),
            (Outcome::Ok, Some(200), Some(2), None)
        );
        assert_eq!(ok.tries.len(), 1);
        let to = parse_curl(
            "a",
            "t",
            "\n@kindred-try@ 0 28 000 0.000000 2.001000\n",
            "curl: (28) Connection timed out after 2001 milliseconds\n",
            28,
        );
        assert_eq!((to.outcome, to.http_status), (Outcome::Timeout, None));
        assert_eq!(
            to.detail.as_deref(),
            Some("curl: (28) Connection timed out after 2001 milliseconds")
        );
        let err = parse_curl("a", "t", "\n@kindred-try@ 0 0 503 0.001 0.01\n", "", 0);
        assert_eq!((err.outcome, err.http_status), (Outcome::Fail, Some(503)));
        // No try reported (curl not there): a failure saying so.
        let gone = parse_curl("a", "t", "", "exec: \"curl\": not found\u{1b}[2J", 127);
        assert_eq!((gone.outcome, gone.tries.len()), (Outcome::Fail, 0));
        assert_eq!(gone.detail.as_deref(), Some("exec: \"curl\": not found[2J"));
    }

    /// A body is a name only when it looks like one: a page, or control characters, are not
    /// kept (they would reach the terminal).
    #[test]
    fn only_a_short_visible_name_is_kept_of_a_body() {
        let name = |body: &str| {
            let out = format!("{body}\n@kindred-try@ 0 0 200 0.001 0.002\n");
            parse_tries(&out, "").remove(0).endpoint
        };
        assert_eq!(name("echo-kp-worker2").as_deref(), Some("echo-kp-worker2"));
        assert_eq!(name("echo\u{1b}]0;owned\u{7}"), None);
        assert_eq!(name("<html>hi</html>"), None);
        assert_eq!(name(&"a".repeat(254)), None);
        assert_eq!(name(""), None);
    }

    #[test]
    fn curl_asks_the_url_n_times_on_new_connections() {
        let t = Timeouts::default();
        let argv = curl_argv("1.2.3.4:80", "/hostname", 3, t);
        assert_eq!(argv[0], "curl");
        assert!(argv.windows(2).any(|w| w == ["-H", "Connection: close"]));
        assert!(argv.windows(2).any(|w| w == ["--connect-timeout", "2"]));
        assert!(argv.windows(2).any(|w| w == ["--max-time", "5"]));
        let urls: Vec<&String> = argv.iter().filter(|a| a.starts_with("http")).collect();
        assert_eq!(urls, ["http://1.2.3.4:80/hostname"; 3]);
        assert!(
            argv.iter()
                .any(|a| a.contains(MARKER) && a.contains("%{exitcode}"))
        );
        let one = curl_argv("https://x.test/a", "/hostname", 0, t);
        assert_eq!(one.last().unwrap(), "https://x.test/a");
        assert_eq!(one.iter().filter(|a| a.contains("://")).count(), 1);
    }
}
