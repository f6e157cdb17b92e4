//! `state-memory`: the resident memory that checkpointing and restoring a large keyed state
//! cost, in this process.
//!
//! A keyed count of `RHEO_BENCH_STATE_KEYS` keys (1M by default; one value per key, no timers,
//! so the state is whole when the input ends) on the mini-cluster at parallelism 1:
//! - checkpoint phase: the job loads every key once, checkpointing every second to a local
//!   directory, and ends with a final checkpoint of the whole state;
//! - restore phase: the same job with no input, started from that checkpoint
//!   (`execution.savepoint.path`), without checkpointing: it restores the state and ends.
//!
//! For each phase: the peak resident set (VmHWM of /proc/self/status, reset before the phase
//! through /proc/self/clear_refs), and the peak anonymous resident memory (RssAnon: heap, not
//! file pages; sampled every 2 ms, so a shorter spike can be missed), both less the values just
//! before the phase (what the phase added), plus the checkpoint's size.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use compact_str::{CompactString, format_compact};
use rheo::config::options;
use rheo::connectors::datagen::DatagenConfig;
use rheo::prelude::*;
use rheo::runtime::driver::minicluster::MiniCluster;
use rheo_cli::jobs::words::WordWithCount;

use super::Report;

#[derive(serde::Serialize, serde::Deserialize, Default, Clone)]
pub struct Measured {
    pub keys: u64,
    /// The size of the final checkpoint (the state file).
    pub checkpoint_bytes: u64,
    pub checkpoint_peak_rss_mib: f64,
    pub checkpoint_peak_anon_mib: f64,
    pub restore_peak_rss_mib: f64,
    pub restore_peak_anon_mib: f64,
    pub restore_seconds: f64,
}

/// A count per key, kept: no timer clears it, so the final checkpoint holds every key.
#[derive(Clone, Default)]
struct KeepCount {
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction<CompactString, WordWithCount, WordWithCount> for KeepCount {
    fn open(&mut self, state: &mut KeyedStateBackend<CompactString>) {
        self.count = Some(state.value_state("count"));
    }

    fn process_element(&mut self, value: WordWithCount, ctx: &mut KeyedContext<'_, CompactString, WordWithCount>) {
        let handle = self.count.as_ref().expect("opened");
        let count = ctx.value(handle).copied().unwrap_or(0);
        ctx.update(handle, count + value.count);
    }
}

/// A field of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

const MIB: f64 = 1024.0 * 1024.0;

/// Runs `phase` and returns (peak RSS, peak anonymous RSS) it added, in MiB.
fn measure<T>(phase: impl FnOnce() -> T) -> anyhow::Result<(T, f64, f64)> {
    // Writing 5 resets VmHWM to the current RSS (Linux 4.0 and later).
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS (/proc/self/clear_refs)")?;
    let (rss_before, anon_before) = (status_bytes("VmRSS:"), status_bytes("RssAnon:"));
    let peak_anon = Arc::new(AtomicU64::new(anon_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak_anon, done) = (peak_anon.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak_anon.fetch_max(status_bytes("RssAnon:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let result = phase();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let peak_rss = status_bytes("VmHWM:").saturating_sub(rss_before) as f64 / MIB;
    let peak_anon = peak_anon.load(Ordering::Relaxed).saturating_sub(anon_before) as f64 / MIB;
    Ok((result, peak_rss, peak_anon))
}

/// The job: `keys` keys once each (none in the restore phase), counted and kept.
fn job(config: Configuration, case: &str, keys: u64) -> anyhow::Result<rheo::runtime::driver::minicluster::JobResult> {
    let mut env = StreamEnv::new(config.clone());
    env.set_parallelism(1);
    env.datagen(
        DatagenConfig { count: Some(keys), rate: None },
        Arc::new(move |i: u64| WordWithCount { word: format_compact!("k{i:x}"), count: 1 }),
    )
    .key_by(|wc: &WordWithCount| wc.word.clone())
    .process(KeepCount::default())
    .discard();
    let graph = std::mem::take(&mut *env.graph());
    Ok(MiniCluster::new(config).run(case, graph, &env.plan_settings()?)?)
}

pub fn run(report: &mut Report) -> anyhow::Result<()> {
    let keys = std::env::var("RHEO_BENCH_STATE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("rheo-bench-memory-{}", std::process::id()));
    let (taken, restored) = (dir.join("taken"), dir.join("restored"));
    let measured = (|| {
        let mut config = Configuration::new();
        config.set(options::CHECKPOINT_INTERVAL.key, "1 s");
        config.set(options::CHECKPOINTS_DIR.key, taken.to_str().context("temp dir")?);
        config.set(options::INCREMENTAL_CHECKPOINTS.key, "false");
        let (result, checkpoint_peak_rss_mib, checkpoint_peak_anon_mib) = measure(|| job(config, &report.case, keys))?;
        let result = result?;
        let checkpoint_bytes = result.checkpoints.last_size;
        // The job's directory: its newest checkpoint is the final one, with every key.
        let job_dir = taken.join(&result.job_id);

        let mut config = Configuration::new();
        config.set(options::SAVEPOINT_PATH.key, job_dir.to_str().context("temp dir")?);
        config.set(options::CHECKPOINTS_DIR.key, restored.to_str().context("temp dir")?);
        let started = std::time::Instant::now();
        let (result, restore_peak_rss_mib, restore_peak_anon_mib) = measure(|| job(config, &report.case, 0))?;
        let restore_seconds = started.elapsed().as_secs_f64();
        anyhow::ensure!(result?.restored_from.is_some(), "the restore phase restored nothing");
        anyhow::Ok(Measured {
            keys,
            checkpoint_bytes,
            checkpoint_peak_rss_mib,
            checkpoint_peak_anon_mib,
            restore_peak_rss_mib,
            restore_peak_anon_mib,
            restore_seconds,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    report.state_memory = Some(measured?);
    Ok(())
}

pub fn print(reports: &[Report]) {
    let measured: Vec<&Measured> = reports.iter().filter_map(|r| r.state_memory.as_ref()).collect();
    if measured.is_empty() {
        return;
    }
    println!(
        "memory of checkpointing and restoring a keyed state (what each phase added; peak RSS: VmHWM, anon: \
         sampled RssAnon; see crates/rheo-bench/src/state_memory.rs):"
    );
    println!(
        "{:>10} {:>10} {:>14} {:>15} {:>14} {:>15} {:>10}",
        "keys", "chk MiB", "chk peak RSS", "chk peak anon", "restore RSS", "restore anon", "restore s"
    );
    for m in measured {
        println!(
            "{:>10} {:>10.1} {:>14.1} {:>15.1} {:>14.1} {:>15.1} {:>10.2}",
            m.keys,
            m.checkpoint_bytes as f64 / MIB,
            m.checkpoint_peak_rss_mib,
            m.checkpoint_peak_anon_mib,
            m.restore_peak_rss_mib,
            m.restore_peak_anon_mib,
            m.restore_seconds,
        );
    }
}
