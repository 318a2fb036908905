//! The results: one sample per round, load and system; printed as medians
//! in a Markdown table that can be pasted into docs/performance.md.

use crate::measure::Totals;

/// One measurement.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// What was delivered (or accepted): messages times recipients; for
    /// idle connections, the connections.
    pub units: usize,
    pub totals: Totals,
    /// Idle connections only: memory added per connection, in KB.
    pub kb_per_connection: Option<f64>,
}

impl Sample {
    fn per_unit(&self, x: f64) -> f64 {
        x / self.units as f64
    }
    fn rate(&self) -> f64 {
        self.units as f64 / self.totals.wall.as_secs_f64()
    }
    fn wall(&self) -> f64 {
        self.totals.wall.as_secs_f64()
    }
    fn user_ms(&self) -> f64 {
        self.per_unit(self.totals.user_usec as f64 / 1000.0)
    }
    fn system_ms(&self) -> f64 {
        self.per_unit(self.totals.system_usec as f64 / 1000.0)
    }
    fn syncs(&self) -> Option<f64> {
        Some(self.per_unit(self.totals.counted?.syncs as f64))
    }
    fn context_switches(&self) -> Option<f64> {
        Some(self.per_unit(self.totals.counted?.context_switches as f64))
    }
    fn peak_mb(&self) -> f64 {
        self.totals.peak_pss_kb as f64 / 1024.0
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The medians of one load and system over its rounds.
#[derive(Clone, Copy, Default)]
pub struct Medians {
    pub failed: usize,
    rate: Option<f64>,
    wall: Option<f64>,
    user_ms: Option<f64>,
    system_ms: Option<f64>,
    syncs: Option<f64>,
    context_switches: Option<f64>,
    peak_mb: Option<f64>,
    kb_per_connection: Option<f64>,
}

impl Medians {
    pub fn of(samples: &[Option<Sample>]) -> Medians {
        let ok: Vec<&Sample> = samples.iter().flatten().collect();
        let m =
            |f: &dyn Fn(&Sample) -> Option<f64>| median(ok.iter().filter_map(|s| f(s)).collect());
        Medians {
            failed: samples.len() - ok.len(),
            rate: m(&|s| Some(s.rate())),
            wall: m(&|s| Some(s.wall())),
            user_ms: m(&|s| Some(s.user_ms())),
            system_ms: m(&|s| Some(s.system_ms())),
            syncs: m(&|s| s.syncs()),
            context_switches: m(&|s| s.context_switches()),
            peak_mb: m(&|s| Some(s.peak_mb())),
            kb_per_connection: m(&|s| s.kb_per_connection),
        }
    }
}

fn cell(v: Option<f64>) -> String {
    match v {
        None => "n/a".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => format!("{:.2}×", a / b),
        _ => "n/a".into(),
    }
}

/// The rows of one load: each system's medians, then qmail-rs / Postfix.
pub fn flow_rows(load: &str, systems: &[(&str, Medians)]) -> Vec<String> {
    let mut rows = Vec::new();
    for (name, m) in systems {
        let failed = if m.failed > 0 {
            format!(" ({} failed)", m.failed)
        } else {
            String::new()
        };
        rows.push(format!(
            "| {load} | {name}{failed} | {} | {} | {} | {} | {} | {} | {} |",
            cell(m.rate),
            cell(m.wall),
            cell(m.user_ms),
            cell(m.system_ms),
            cell(m.syncs),
            cell(m.context_switches),
            cell(m.peak_mb),
        ));
    }
    if let [(_, q), (_, p)] = systems {
        rows.push(format!(
            "| {load} | qmail-rs / Postfix | {} | {} | {} | {} | {} | {} | {} |",
            ratio(q.rate, p.rate),
            ratio(q.wall, p.wall),
            ratio(q.user_ms, p.user_ms),
            ratio(q.system_ms, p.system_ms),
            ratio(q.syncs, p.syncs),
            ratio(q.context_switches, p.context_switches),
            ratio(q.peak_mb, p.peak_mb),
        ));
    }
    rows
}

pub const FLOW_HEADER: &str = "| load | system | msg/s | wall s | user ms/msg | sys ms/msg | syncs/msg | ctx sw/msg | peak MB |\n|---|---|---|---|---|---|---|---|---|";

pub const IDLE_HEADER: &str =
    "| load | system | KB per connection | open s | peak MB |\n|---|---|---|---|---|";

pub fn idle_rows(load: &str, systems: &[(&str, Medians)]) -> Vec<String> {
    let mut rows: Vec<String> = systems
        .iter()
        .map(|(name, m)| {
            format!(
                "| {load} | {name} | {} | {} | {} |",
                cell(m.kb_per_connection),
                cell(m.wall),
                cell(m.peak_mb)
            )
        })
        .collect();
    if let [(_, q), (_, p)] = systems {
        rows.push(format!(
            "| {load} | qmail-rs / Postfix | {} | {} | {} |",
            ratio(q.kb_per_connection, p.kb_per_connection),
            ratio(q.wall, p.wall),
            ratio(q.peak_mb, p.peak_mb)
        ));
    }
    rows
}

/// The rate of every round in order, and the median of the last third of
/// the rounds over the median of the first third: below 1 the rate decays
/// from run to run (needs 3 rounds or more).
pub fn per_round_row(load: &str, system: &str, samples: &[Option<Sample>]) -> String {
    let rates: Vec<Option<f64>> = samples.iter().map(|s| s.map(|s| s.rate())).collect();
    let list: Vec<String> = rates
        .iter()
        .map(|r| r.map_or("failed".into(), |r| cell(Some(r))))
        .collect();
    let third = rates.len() / 3;
    let trend = if third == 0 {
        None
    } else {
        let first = median(rates[..third].iter().flatten().copied().collect());
        let last = median(
            rates[rates.len() - third..]
                .iter()
                .flatten()
                .copied()
                .collect(),
        );
        first.zip(last).map(|(f, l)| l / f)
    };
    format!(
        "| {load} | {system} | {} | {} |",
        list.join(", "),
        trend.map_or("n/a".into(), |t| format!("{t:.2}"))
    )
}

pub const PER_ROUND_HEADER: &str = "| load | system | rate per round, in order (/s) | last third / first third |\n|---|---|---|---|";
