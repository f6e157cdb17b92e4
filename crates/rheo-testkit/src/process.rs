//! One child process with its stderr in a log file; killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{DEFAULT_TIMEOUT, HarnessError, Poll, wait_for};

/// A running (or exited) process started by the harness. Its stderr goes to `<dir>/<name>.log`
/// and its stdout to `<dir>/<name>.out`.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    out: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `program args` in `dir`. The child's environment loses every `RHEO_*` variable of
    /// this process (a test's configuration must not leak in) and gets `env` instead.
    pub fn spawn(
        name: &str,
        program: &Path,
        dir: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Process, HarnessError> {
        let (log, out) = (dir.join(format!("{name}.log")), dir.join(format!("{name}.out")));
        let file = |path: &Path| {
            std::fs::File::create(path)
                .map_err(|source| HarnessError::Io { context: format!("cannot create {}", path.display()), source })
        };
        let mut command = Command::new(program);
        command.current_dir(dir).args(args).stdin(Stdio::null()).stdout(file(&out)?).stderr(file(&log)?);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RHEO_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        let child = command.spawn().map_err(|source| HarnessError::Spawn {
            name: name.to_string(),
            program: program.display().to_string(),
            source,
        })?;
        Ok(Process { name: name.to_string(), child, log, out, exited: None })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, once it has exited (reaps it without blocking).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// SIGKILL, then reaps it: the process is gone when this returns.
    pub fn kill(&mut self) -> Result<ExitStatus, HarnessError> {
        if let Some(status) = self.exit_status() {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL)?;
        let status = self
            .child
            .wait()
            .map_err(|source| HarnessError::Io { context: format!("cannot reap {}", self.name), source })?;
        self.exited = Some(status);
        Ok(status)
    }

    /// SIGTERM: asks the process to shut down; see [`Process::await_exit`].
    pub fn terminate(&mut self) -> Result<(), HarnessError> {
        if self.exit_status().is_some() {
            return Ok(());
        }
        self.signal(Signal::SIGTERM)
    }

    fn signal(&self, signal: Signal) -> Result<(), HarnessError> {
        let pid = self.child.id();
        let raw = i32::try_from(pid).expect("a pid fits in i32");
        kill(Pid::from_raw(raw), signal).map_err(|source| HarnessError::Signal { name: self.name.clone(), pid, source })
    }

    /// Waits for the process to exit by itself.
    pub fn await_exit(&mut self, within: Duration) -> Result<ExitStatus, HarnessError> {
        let what = format!("{} to exit", self.name);
        let mut probe = || match self.exit_status() {
            Some(status) => Poll::Ready(status),
            None => Poll::Pending("still running".into()),
        };
        let result = wait_for(&what, within, Duration::from_millis(20), &mut probe, String::new);
        result.map_err(|e| match e {
            HarnessError::Timeout { what, waited, last, .. } => {
                HarnessError::Timeout { what, waited, last, logs: self.log_tail(40) }
            }
            other => other,
        })
    }

    /// [`Process::await_exit`] with [`DEFAULT_TIMEOUT`].
    pub fn wait(&mut self) -> Result<ExitStatus, HarnessError> {
        self.await_exit(DEFAULT_TIMEOUT)
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The last `lines` lines of its log under a header naming it.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        let mut text = format!("==> {} ({}) <==\n", self.name, self.log.display());
        for line in tail.into_iter().rev() {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
