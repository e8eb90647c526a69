//! Repeated probes summed up (pure): how many tries answered, which endpoints answered, the
//! latency quantiles, and whether a result meets an expectation (met, missed or flaky).

use std::collections::BTreeMap;

use serde::Serialize;

use super::event::{ProbeResult, Try};
use crate::model::{Outcome, Rate};

/// p50 and p99 of some times, in microseconds (nearest rank: p99 of fewer than 100 samples is
/// the largest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Quantiles {
    pub p50_us: u64,
    pub p99_us: u64,
}

impl Quantiles {
    /// The quantiles of `samples` (any order); `None` when there is none.
    pub fn of(mut samples: Vec<u64>) -> Option<Quantiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        Some(Quantiles {
            p50_us: nearest_rank(&samples, 0.50),
            p99_us: nearest_rank(&samples, 0.99),
        })
    }
}

/// The sample at quantile `q` of sorted, non-empty `sorted`: the smallest with at least `q` of
/// the samples at or below it.
fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One probe's tries summed up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub tries: u32,
    /// Tries that got an answer (HTTP below 400).
    pub passes: u32,
    /// Tries that timed out.
    pub timeouts: u32,
    /// Answers per endpoint (the echo server's pod name), by name.
    pub endpoints: BTreeMap<String, u32>,
    /// Endpoints ready behind the target when probed, when known.
    pub ready_endpoints: Option<u32>,
    /// Connect and total times of the tries that answered.
    pub connect: Option<Quantiles>,
    pub total: Option<Quantiles>,
}

impl Summary {
    /// A result's tries summed up; a result without tries (one curl, or a recording made before
    /// probes were repeated) counts as one try of its outcome and latency.
    pub fn of(r: &ProbeResult) -> Summary {
        if r.tries.is_empty() {
            let pass = r.outcome == Outcome::Ok;
            return Summary {
                tries: 1,
                passes: pass as u32,
                timeouts: (r.outcome == Outcome::Timeout) as u32,
                endpoints: BTreeMap::new(),
                ready_endpoints: r.ready_endpoints,
                connect: None,
                total: r
                    .latency_ms
                    .filter(|_| pass)
                    .and_then(|ms| Quantiles::of(vec![ms * 1000])),
            };
        }
        let answered = || r.tries.iter().filter(|t| t.outcome == Outcome::Ok);
        let mut endpoints = BTreeMap::new();
        for e in answered().filter_map(|t| t.endpoint.as_ref()) {
            *endpoints.entry(e.clone()).or_insert(0) += 1;
        }
        Summary {
            tries: r.tries.len() as u32,
            passes: answered().count() as u32,
            timeouts: r
                .tries
                .iter()
                .filter(|t| t.outcome == Outcome::Timeout)
                .count() as u32,
            endpoints,
            ready_endpoints: r.ready_endpoints,
            connect: Quantiles::of(answered().filter_map(|t| t.connect_us).collect()),
            total: Quantiles::of(answered().filter_map(|t| t.total_us).collect()),
        }
    }

    /// The share of tries that answered.
    pub fn rate(&self) -> f64 {
        if self.tries == 0 {
            0.0
        } else {
            f64::from(self.passes) / f64::from(self.tries)
        }
    }

    /// "2/3 endpoints answered in 30 tries" ("2 endpoints …" when the ready ones are not
    /// known); `None` when no answer named its endpoint.
    pub fn spread(&self) -> Option<String> {
        if self.endpoints.is_empty() {
            return None;
        }
        let n = self.endpoints.len();
        let of = match self.ready_endpoints {
            Some(ready) => format!("{n}/{ready}"),
            None => n.to_string(),
        };
        let word = if n == 1 && self.ready_endpoints.is_none() {
            "endpoint"
        } else {
            "endpoints"
        };
        Some(format!("{of} {word} answered in {} tries", self.tries))
    }
}

/// Milliseconds, with a tenth below 10 ms: "0.4", "2", "2.5", "38".
fn ms(us: u64) -> String {
    if us >= 10_000 {
        return format!("{}", (us + 500) / 1000);
    }
    let tenth = format!("{:.1}", us as f64 / 1000.0);
    match tenth.strip_suffix(".0") {
        Some(whole) => whole.to_string(),
        None => tenth,
    }
}

/// p50/p99 as a cell: "2/38ms", one number when they are the same ("2ms"), `-` for none.
pub fn quantiles(q: Option<Quantiles>) -> String {
    match q {
        None => "-".into(),
        Some(q) if ms(q.p50_us) == ms(q.p99_us) => format!("{}ms", ms(q.p50_us)),
        Some(q) => format!("{}/{}ms", ms(q.p50_us), ms(q.p99_us)),
    }
}

/// What tries add up to: Ok when all answered, Timeout when all timed out, Fail when none
/// answered, Flaky when some did and some did not. `None` for no tries.
pub fn outcome_of(tries: &[Try]) -> Option<Outcome> {
    let first = tries.first()?.outcome;
    let ok = tries.iter().filter(|t| t.outcome == Outcome::Ok).count();
    Some(if tries.iter().all(|t| t.outcome == first) {
        first
    } else if ok == 0 {
        Outcome::Fail
    } else {
        Outcome::Flaky
    })
}

/// The latency of a side (or any set of results): the quantiles over every try that answered.
pub fn latency_of<'a>(
    results: impl IntoIterator<Item = &'a ProbeResult>,
) -> (Option<Quantiles>, Option<Quantiles>) {
    let (mut connect, mut total) = (Vec::new(), Vec::new());
    for r in results {
        if r.tries.is_empty() {
            if r.outcome == Outcome::Ok {
                total.extend(r.latency_ms.map(|ms| ms * 1000));
            }
            continue;
        }
        for t in r.tries.iter().filter(|t| t.outcome == Outcome::Ok) {
            connect.extend(t.connect_us);
            total.extend(t.total_us);
        }
    }
    (Quantiles::of(connect), Quantiles::of(total))
}

/// Whether the PR side's p99 is more than `factor` times the base's.
pub fn slower(base: Quantiles, pr: Quantiles, factor: f64) -> bool {
    pr.p99_us as f64 > base.p99_us as f64 * factor
}

/// How a result stands against an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Judged {
    Met,
    Missed,
    /// The tries disagree and the expectation asks for all of them: neither met nor missed,
    /// never a pass.
    Flaky,
}

/// Judge `r` against the expected `outcome` (with `min_rate`: `ok >= RATE`, met when at least
/// that share of the tries answered).
pub fn judge(outcome: Outcome, min_rate: Option<Rate>, r: &ProbeResult) -> Judged {
    if let Some(Rate(min)) = min_rate {
        return if Summary::of(r).rate() >= min {
            Judged::Met
        } else {
            Judged::Missed
        };
    }
    if r.outcome == Outcome::Flaky {
        Judged::Flaky
    } else if outcome.met_by(r.outcome) {
        Judged::Met
    } else {
        Judged::Missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(outcome: Outcome, total_us: u64, endpoint: Option<&str>) -> Try {
        Try {
            outcome,
            http_status: (outcome == Outcome::Ok).then_some(200),
            connect_us: Some(total_us / 2),
            total_us: Some(total_us),
            endpoint: endpoint.map(Into::into),
            detail: None,
        }
    }

    fn result(tries: Vec<Try>) -> ProbeResult {
        let mut r = ProbeResult::bare("a", "lb", outcome_of(&tries).unwrap());
        r.tries = tries;
        r
    }

    #[test]
    fn times_in_milliseconds_with_a_tenth_below_ten() {
        assert_eq!(ms(2000), "2");
        assert_eq!(ms(2450), "2.5");
        assert_eq!(ms(9990), "10");
        assert_eq!(ms(31_000), "31");
        assert_eq!(ms(31_600), "32");
        let q = |p50_us, p99_us| Some(Quantiles { p50_us, p99_us });
        assert_eq!(quantiles(q(1200, 6100)), "1.2/6.1ms");
        assert_eq!(quantiles(q(4000, 4010)), "4ms");
        assert_eq!(quantiles(None), "-");
    }

    #[test]
    fn nearest_rank_quantiles() {
        let q = Quantiles::of((1..=100).collect()).unwrap();
        assert_eq!((q.p50_us, q.p99_us), (50, 99));
        let q = Quantiles::of(vec![7, 1, 3]).unwrap();
        assert_eq!((q.p50_us, q.p99_us), (3, 7));
        assert_eq!(Quantiles::of(vec![]), None);
    }

    #[test]
    fn tries_that_disagree_are_flaky_and_never_met() {
        let tries: Vec<Try> = (0..30)
            .map(|i| match i % 3 {
                0 => t(Outcome::Ok, 1000, Some("echo-a")),
                1 => t(Outcome::Ok, 3000, Some("echo-b")),
                _ => t(Outcome::Timeout, 2_000_000, None),
            })
            .collect();
        let mut r = result(tries);
        r.ready_endpoints = Some(3);
        assert_eq!(r.outcome, Outcome::Flaky);
        let s = Summary::of(&r);
        assert_eq!((s.passes, s.tries, s.timeouts), (20, 30, 10));
        assert_eq!(
            s.spread().as_deref(),
            Some("2/3 endpoints answered in 30 tries")
        );
        assert_eq!(s.total.unwrap().p99_us, 3000);
        assert_eq!(judge(Outcome::Ok, None, &r), Judged::Flaky);
        assert_eq!(judge(Outcome::Fail, None, &r), Judged::Flaky);
        assert_eq!(judge(Outcome::Ok, Some(Rate(0.6)), &r), Judged::Met);
        assert_eq!(judge(Outcome::Ok, Some(Rate(0.99)), &r), Judged::Missed);
    }

    #[test]
    fn tries_that_agree_sum_up_to_their_outcome() {
        let all = |o| result(vec![t(o, 1, None), t(o, 2, None)]).outcome;
        assert_eq!(all(Outcome::Ok), Outcome::Ok);
        assert_eq!(all(Outcome::Timeout), Outcome::Timeout);
        let none = result(vec![
            t(Outcome::Fail, 1, None),
            t(Outcome::Timeout, 1, None),
        ]);
        assert_eq!(none.outcome, Outcome::Fail);
        assert_eq!(judge(Outcome::Fail, None, &none), Judged::Met);
        assert_eq!(judge(Outcome::Ok, None, &none), Judged::Missed);
    }

    #[test]
    fn a_side_is_slower_past_the_factor() {
        let (_, base) = latency_of(&[result(vec![t(Outcome::Ok, 1000, None)])]);
        let (_, pr) = latency_of(&[result(vec![t(Outcome::Ok, 2500, None)])]);
        assert!(slower(base.unwrap(), pr.unwrap(), 2.0));
        assert!(!slower(base.unwrap(), pr.unwrap(), 3.0));
    }
}
