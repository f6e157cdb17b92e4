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

    /// The job id of a run of this job with `matches` (parsed by a command built on
    /// [`command`](Self::command), which may add flags of its own: only the job's own arguments
    /// count). See [`job_id_of`].
    pub fn job_id(&self, matches: &clap::ArgMatches) -> String {
        job_id_of(self.name, &self.command(), matches)
    }

    /// [`job_id`](Self::job_id) of the arguments `args` (without the job name), as
    /// `rheo jobmanager --job NAME -- ARGS` passes them; an error when they do not parse.
    pub fn job_id_from<I, T>(&self, args: I) -> Result<String, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = self.command().no_binary_name(true).try_get_matches_from(args)?;
        Ok(self.job_id(&matches))
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

/// The job id of a job run, shared by `rheo run` and `rheo jobmanager --job`: derived from the
/// job's name and its own arguments as `command` parsed them into `matches` (not `-p` or `-D`,
/// so a rerun at another parallelism resumes the same job). Arguments count by their value, not
/// their spelling: `--input=x` is `--input x`, the order of the flags does not matter, and paths
/// count by what they name ([`canonical_arg`]).
pub fn job_id_of(job: &str, command: &clap::Command, matches: &clap::ArgMatches) -> String {
    let mut identity = job.to_string();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        if let Ok(Some(values)) = matches.try_get_raw(id) {
            identity.push_str(&format!("\u{0}{id}"));
            for value in values {
                identity.push_str(&format!("\u{0}{}", canonical_arg(&value.to_string_lossy())));
            }
        }
    }
    rheo_runtime::driver::minicluster::job_id_for(&identity)
}

/// A path-like argument (one holding a `/`, naming an existing file, or a `file://` URL) as
/// the absolute path it names, with `.`, `..` and symbolic links resolved (lexically for a path
/// that does not exist yet); any other argument as it is. `./in.tsv`, `/tmp/in/./in.tsv` and
/// `file:///tmp/in/in.tsv` are the same input.
pub fn canonical_arg(value: &str) -> String {
    use std::path::{Component, Path, PathBuf};
    let (scheme, path) = match value.strip_prefix("file://") {
        Some(path) => ("file://", path),
        None if value.contains("://") => return value.to_string(),
        None => ("", value),
    };
    if path.is_empty() || (scheme.is_empty() && !path.contains('/') && !Path::new(path).exists()) {
        return value.to_string();
    }
    if let Ok(canonical) = std::fs::canonicalize(path) {
        return format!("{scheme}{}", canonical.display());
    }
    let Ok(absolute) = std::path::absolute(path) else { return value.to_string() };
    let mut normal = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    format!("{scheme}{}", normal.display())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A job with a path argument and a flag, to compare spellings of one run.
    #[derive(Debug, Clone, clap::Parser)]
    struct Files {
        #[arg(long)]
        input: std::path::PathBuf,
        #[arg(long, default_value = "1s")]
        window: String,
    }

    impl JobDef for Files {
        const NAME: &'static str = "files";
        const DESCRIPTION: &'static str = "a test job";
        fn build(self, _env: &StreamEnv) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn path_arguments_count_by_what_they_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.tsv");
        std::fs::write(&file, "x").unwrap();
        let plain = canonical_arg(file.to_str().unwrap());
        let dotted = canonical_arg(&format!("{}/./in.tsv", dir.path().display()));
        let up = canonical_arg(&format!("{}/sub/../in.tsv", dir.path().display()));
        assert_eq!(plain, dotted);
        assert_eq!(plain, up);
        let out = canonical_arg(&format!("file://{}/./out/", dir.path().display()));
        assert_eq!(out, format!("file://{}/out", std::fs::canonicalize(dir.path()).unwrap().display()));
        assert_eq!(canonical_arg("1s"), "1s");
        assert_eq!(canonical_arg("s3://bucket/./x"), "s3://bucket/./x");
    }

    #[test]
    fn a_job_id_does_not_depend_on_how_the_arguments_are_spelled() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("in.tsv");
        std::fs::write(&file, "x").unwrap();
        let entry = JobEntry::of::<Files>();
        let id = |args: &[&str]| entry.job_id_from(args).unwrap();
        let plain = id(&["--input", file.to_str().unwrap()]);
        assert_eq!(id(&[&format!("--input={}", file.display())]), plain);
        assert_eq!(id(&["--input", &format!("{}/./in.tsv", dir.path().display())]), plain);
        assert_eq!(
            id(&["--input", file.to_str().unwrap(), "--window", "1s"]),
            id(&["--window=1s", "--input", file.to_str().unwrap()])
        );
        assert_ne!(id(&["--input", file.to_str().unwrap(), "--window", "2s"]), plain, "another window is another job");
        assert_ne!(id(&["--input", &format!("{}/other.tsv", dir.path().display())]), plain, "another input");
        assert!(entry.job_id_from(["--bogus"]).is_err());
    }
}
