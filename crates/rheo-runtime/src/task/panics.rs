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

    /// Measured in a process of its own started with `RUST_BACKTRACE=1`: the standard library
    /// reads that variable once per process.
    #[test]
    fn a_task_panic_costs_no_backtrace_symbolisation() {
        const CHILD: &str = "RHEO_PANIC_TIMING_CHILD";
        if std::env::var_os(CHILD).is_some() {
            // The first panic of a process is the costly one: symbolising loads the debug info.
            let started = Instant::now();
            let caught = std::panic::catch_unwind(|| as_task("Map (1/1)", || panic!("injected")));
            let took = started.elapsed();
            assert!(caught.is_err());
            assert_eq!(TASK.with_borrow(|t| t.clone()), None, "the thread runs no task after the panic");
            eprintln!("a task panic took {took:?}");
            assert!(took < Duration::from_millis(40), "a task panic took {took:?}");
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
    }
}
