//! Panics inside tasks: reported through `tracing`, with the backtrace symbolised off the
//! restart path.
//!
//! The standard panic hook captures and symbolises a backtrace on the panicking thread when
//! `RUST_BACKTRACE` is set, which takes hundreds of milliseconds before the task can report its
//! failure, so a recovery would take as long as the backtrace. A task's panic is a failure the
//! restart strategy handles: its hook captures the frames only (cheap) and leaves turning them
//! into text to a thread of its own.

use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::panic::PanicHookInfo;
use std::sync::Once;

thread_local! {
    /// The name of the task this thread runs, while it runs it.
    static TASK: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `body` as task `name`: a panic in it is reported by [`task_panic_hook`].
pub(super) fn as_task<R>(name: &str, body: impl FnOnce() -> R) -> R {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !task_panic_hook(info) {
                default(info);
            }
        }));
    });
    /// Ends the thread's task on return and on unwinding alike.
    struct Running(Option<String>);
    impl Drop for Running {
        fn drop(&mut self) {
            TASK.set(self.0.take());
        }
    }
    let _running = Running(TASK.replace(Some(name.to_string())));
    body()
}

/// Reports a panic of a task thread and returns true; false for any other thread.
fn task_panic_hook(info: &PanicHookInfo<'_>) -> bool {
    let Some(task) = TASK.with_borrow(|t| t.clone()) else { return false };
    let message = super::panic_message(info.payload());
    let location = info.location().map(|l| l.to_string()).unwrap_or_default();
    // Honours RUST_BACKTRACE / RUST_LIB_BACKTRACE; unresolved frames cost microseconds.
    let backtrace = Backtrace::capture();
    tracing::error!(%task, %location, "task panicked: {message}");
    if backtrace.status() == BacktraceStatus::Captured {
        let _ = std::thread::Builder::new().name("panic-backtrace".into()).spawn(move || {
            tracing::error!(%task, "backtrace of the panic:\n{backtrace}");
        });
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// The CPU time (user and system) this thread has used, from `/proc/thread-self/stat`, in
    /// clock ticks of 10 ms; `None` where that file cannot be read.
    fn thread_cpu_time() -> Option<Duration> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // After the command name in parentheses: state, ppid, ..., utime (14th field), stime.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_millis(ticks * 10))
    }

    /// Measured in a process of its own started with `RUST_BACKTRACE=1`: the standard library
    /// reads that variable once per process. Symbolising the backtrace on the panicking thread
    /// (what the standard hook does) made the first panic take 240–310 ms of wall-clock time and
    /// 70 ms of CPU time on that thread (measured with this test), against under 1 ms and 0–10 ms
    /// for a task's panic. The limit is on that CPU time, which a loaded machine does not
    /// inflate as it does wall-clock time (a wall-clock limit applies only where the CPU time
    /// cannot be read). And the standard hook, which prints `stack backtrace:`, must not run.
    #[test]
    fn a_task_panic_costs_no_backtrace_symbolisation() {
        const CHILD: &str = "RHEO_PANIC_TIMING_CHILD";
        if std::env::var_os(CHILD).is_some() {
            // The first panic of a process is the costly one: symbolising loads the debug info.
            let (cpu, started) = (thread_cpu_time(), Instant::now());
            let caught = std::panic::catch_unwind(|| as_task("Map (1/1)", || panic!("injected")));
            let took = started.elapsed();
            let cpu = cpu.zip(thread_cpu_time()).map(|(before, after)| after - before);
            assert!(caught.is_err());
            assert_eq!(TASK.with_borrow(|t| t.clone()), None, "the thread runs no task after the panic");
            eprintln!("a task panic took {took:?}, {cpu:?} of CPU time on its thread");
            match cpu {
                Some(cpu) => assert!(cpu <= Duration::from_millis(30), "a task panic took {cpu:?} of CPU time"),
                None => assert!(took < Duration::from_millis(100), "a task panic took {took:?}"),
            }
            return;
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "task::panics::tests::a_task_panic_costs_no_backtrace_symbolisation", "--nocapture"])
            .env(CHILD, "1")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "the measuring test did not run:\n{stdout}");
        assert!(!stderr.contains("stack backtrace:"), "the standard hook symbolised the task's panic:\n{stderr}");
    }
}
