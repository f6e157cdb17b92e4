//! Numbers that arrive at a rate read from a schedule file, through a map costing a fixed time
//! per record, into part files: a load whose rate can be stepped while the job runs (the
//! autoscaler's end-to-end test and demo).
//!
//! The schedule is lines of `<epoch milliseconds> <records per second>`, in time order: from each
//! line's time the rate is its rate (0 before the first line). Record `i` has arrived once the
//! rate integrated up to now exceeds `i`. Every subtask of every process re-reads the file and
//! computes the same integral from the same lines and the wall clock, so a rate is changed by
//! rewriting the lines from some time on (atomically, by a rename), and the arrivals before
//! that time do not move. A rate of 0 from some time on freezes the number that ever arrives.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rheo::api::StreamEnv;
use rheo::connectors::datagen::{Arrivals, DatagenConfig};
use rheo::prelude::{SinkError, SinkFunction, Timestamp};

use super::JobDef;

#[derive(Debug, Clone, clap::Parser)]
pub struct ArrivingNumbers {
    /// The schedule file: `<epoch ms> <records per second>` lines.
    #[arg(long)]
    pub schedule: PathBuf,
    /// Microseconds each record costs the map (a sleep: busy time, no CPU).
    #[arg(long, default_value_t = 1_000)]
    pub cost_us: u64,
    /// Where the numbers go, one per line, exactly once (a directory URL); default: discarded.
    #[arg(long)]
    pub output: Option<String>,
    /// Also write each number to stdout the moment the map emits it, as `<number> <epoch ms>`
    /// (when the map emitted it), one unbuffered line each. Not transactional, and unlike the
    /// print sink nothing waits for a checkpoint: a number processed twice is printed twice
    /// (how the rescale test and benchmark count replayed records and time the pause).
    #[arg(long)]
    pub print: bool,
}

/// A parsed schedule: `(epoch ms, records per second)` in time order.
pub type Schedule = Vec<(u64, f64)>;

/// Parses a schedule file's text; an error names the line and what was expected.
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let mut schedule: Schedule = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("schedule line {}: expected '<epoch ms> <records per second>', got '{line}'", n + 1);
        let mut fields = line.split_whitespace();
        let (Some(at), Some(rate), None) = (fields.next(), fields.next(), fields.next()) else { return Err(bad()) };
        let at: u64 = at.parse().map_err(|_| bad())?;
        let rate: f64 = rate.parse().map_err(|_| bad())?;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(bad());
        }
        if schedule.last().is_some_and(|&(last, _)| at < last) {
            return Err(format!("schedule line {}: time {at} is before the line above", n + 1));
        }
        schedule.push((at, rate));
    }
    Ok(schedule)
}

/// How many records have arrived by `now_ms`: the schedule's rate integrated up to it.
pub fn arrived_by(schedule: &[(u64, f64)], now_ms: u64) -> u64 {
    let mut total = 0.0;
    for (k, &(from, rate)) in schedule.iter().enumerate() {
        if from >= now_ms {
            break;
        }
        let to = schedule.get(k + 1).map_or(now_ms, |&(next, _)| next.min(now_ms));
        total += rate * (to - from) as f64 / 1000.0;
    }
    total as u64
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// How often a source re-reads the schedule: a change takes effect this late at most, so a
/// writer changes rates at least this far in the future.
pub const SCHEDULE_REFRESH: Duration = Duration::from_millis(100);

/// Writes each record to stdout at once, a line each: nothing is held back until a checkpoint
/// (as the print sink holds its buffer), so what a restart replays is written again.
struct Unbuffered;

impl SinkFunction<String> for Unbuffered {
    fn invoke(&mut self, value: String, _timestamp: Timestamp) -> Result<(), SinkError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{value}").and_then(|()| out.flush()).map_err(|e| SinkError::io("cannot write to stdout", e))
    }
}

fn arrivals_from(path: PathBuf) -> Arrivals {
    let cache: Mutex<(Option<Instant>, Schedule)> = Mutex::new((None, Vec::new()));
    Arc::new(move || {
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.0.is_none_or(|read| read.elapsed() >= SCHEDULE_REFRESH) {
            // A missing or malformed file keeps the last good schedule (a writer mid-rename).
            match std::fs::read_to_string(&path).map_err(|e| e.to_string()).and_then(|t| parse_schedule(&t)) {
                Ok(schedule) => cache.1 = schedule,
                Err(e) => tracing::warn!(schedule = %path.display(), error = %e, "cannot read the schedule"),
            }
            cache.0 = Some(Instant::now());
        }
        arrived_by(&cache.1, now_ms())
    })
}

impl JobDef for ArrivingNumbers {
    const NAME: &'static str = "arriving-numbers";
    const DESCRIPTION: &'static str =
        "numbers arriving at rates read from a schedule file, through a map of fixed cost per record";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        let text = std::fs::read_to_string(&self.schedule)
            .map_err(|e| anyhow::anyhow!("--schedule {}: {e}", self.schedule.display()))?;
        parse_schedule(&text).map_err(|e| anyhow::anyhow!("--schedule {}: {e}", self.schedule.display()))?;
        let cost = Duration::from_micros(self.cost_us);
        let numbers = env
            .datagen_arriving(
                DatagenConfig { count: None, rate: None },
                Some(arrivals_from(self.schedule.clone())),
                Arc::new(|i| i),
            )
            .rebalance()
            .map(move |i: u64| {
                std::thread::sleep(cost);
                i
            });
        if self.print {
            numbers
                .map(|i: u64| format!("{i} {}", now_ms()))
                .name("Timestamp")
                .add_sink("Stdout, unbuffered", |_| Unbuffered);
        }
        match &self.output {
            Some(url) => {
                numbers.sink_to_files(url, |i: &u64, out: &mut String| {
                    out.push_str(&i.to_string());
                    out.push('\n');
                })?;
            }
            None if self.print => {}
            None => {
                numbers.discard();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrivals_integrate_the_schedule() {
        let schedule = parse_schedule("1000 100\n# a step\n3000 1000\n4000 0\n").unwrap();
        assert_eq!(arrived_by(&schedule, 500), 0);
        assert_eq!(arrived_by(&schedule, 2000), 100);
        assert_eq!(arrived_by(&schedule, 3500), 700);
        assert_eq!(arrived_by(&schedule, 9000), 1200);
        let e = parse_schedule("1000 100\n500 3\n").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_schedule("1000 fast\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("records per second"), "{e}");
    }
}
