//! Records in/out per second on stderr while a job runs: a live line on a terminal (indicatif),
//! a log line every ten seconds otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use rheo_runtime::task::JobShared;

pub struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(job: Arc<JobShared>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new().name("progress".into()).spawn(move || report(job, stop_flag)).ok();
        Self { stop, thread }
    }

    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn report(job: Arc<JobShared>, stop: Arc<AtomicBool>) {
    let terminal = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("valid template"));
    if !terminal {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let period = if terminal { Duration::from_secs(1) } else { Duration::from_secs(10) };
    let (mut last_in, mut last_out, mut last_at) = (0u64, 0u64, Instant::now());
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last_at.elapsed() < period {
            continue;
        }
        let (records_in, records_out) =
            (job.records_in.load(Ordering::Relaxed), job.records_out.load(Ordering::Relaxed));
        let secs = last_at.elapsed().as_secs_f64();
        let message = format!(
            "{:>6.0}s  in {:>12} ({:>10.0}/s)  out {:>12} ({:>10.0}/s)",
            started.elapsed().as_secs_f64(),
            records_in,
            (records_in - last_in) as f64 / secs,
            records_out,
            (records_out - last_out) as f64 / secs,
        );
        if terminal {
            bar.set_message(message);
            bar.tick();
        } else {
            tracing::info!("{message}");
        }
        (last_in, last_out, last_at) = (records_in, records_out, Instant::now());
    }
    bar.finish_and_clear();
}
