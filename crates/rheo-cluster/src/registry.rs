//! The registry of jobs a worker binary carries.
//!
//! A job is named, not shipped: every process of a job runs the same binary and builds the same
//! graph from the job's name and arguments. A job is a clap `Parser` (its own arguments) that
//! implements [`JobDef`]; [`JobRegistry::register`] adds it to a binary's CLI.

use std::ffi::OsString;

use rheo::api::StreamEnv;

/// A job: its arguments (a clap parser) and how it defines its pipeline.
pub trait JobDef: clap::Parser + 'static {
    /// The name `rheo run NAME` selects.
    const NAME: &'static str;
    /// One line for `rheo jobs`.
    const DESCRIPTION: &'static str;
    /// Defines the pipeline on `env`; the caller executes it.
    fn build(self, env: &StreamEnv) -> anyhow::Result<()>;
}

/// A job as the CLI sees it: type-erased parsing and building.
#[derive(Clone)]
pub struct JobEntry {
    pub name: &'static str,
    pub description: &'static str,
    command: fn() -> clap::Command,
    build: fn(&StreamEnv, &clap::ArgMatches) -> anyhow::Result<()>,
}

impl JobEntry {
    pub fn of<J: JobDef>() -> Self {
        Self {
            name: J::NAME,
            description: J::DESCRIPTION,
            command: || <J as clap::CommandFactory>::command().name(J::NAME).about(J::DESCRIPTION),
            build: |env, matches| {
                let args = <J as clap::FromArgMatches>::from_arg_matches(matches).map_err(|e| anyhow::anyhow!(e))?;
                args.build(env)
            },
        }
    }

    /// The job's argument parser (the CLI adds its global flags to it).
    pub fn command(&self) -> clap::Command {
        (self.command)()
    }

    /// Defines the job's pipeline from arguments parsed by [`command`](Self::command).
    pub fn build(&self, env: &StreamEnv, matches: &clap::ArgMatches) -> anyhow::Result<()> {
        (self.build)(env, matches)
    }

    /// Parses `args` (without the job name) and defines the pipeline.
    pub fn build_from<I, T>(&self, env: &StreamEnv, args: I) -> anyhow::Result<()>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = self
            .command()
            .no_binary_name(true)
            .try_get_matches_from(args)
            .map_err(|e| anyhow::anyhow!("{}", e.render().to_string().lines().next().unwrap_or_default()))?;
        self.build(env, &matches)
    }
}

/// The jobs a worker binary carries, in the order `rheo jobs` lists them.
#[derive(Clone, Default)]
pub struct JobRegistry {
    jobs: Vec<JobEntry>,
}

impl JobRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a job; a later job with the same name replaces the earlier one.
    pub fn register<J: JobDef>(mut self) -> Self {
        self.jobs.retain(|j| j.name != J::NAME);
        self.jobs.push(JobEntry::of::<J>());
        self
    }

    pub fn get(&self, name: &str) -> Option<&JobEntry> {
        self.jobs.iter().find(|j| j.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &JobEntry> {
        self.jobs.iter()
    }
}

/// Parses a duration argument in Flink's notation (`500ms`, `5s`, `1 min`).
pub fn parse_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    match rheo_config::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".to_string()),
        Err(expected) => Err(format!("expected {expected}")),
    }
}

/// Parses a duration argument that may be zero (`0ms`, `500ms`).
pub fn parse_non_negative_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    rheo_config::parse_duration(text).map_err(|expected| format!("expected {expected}"))
}
