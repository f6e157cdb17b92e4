//! The `rheo` binary: the CLI with the built-in jobs.

fn main() -> std::process::ExitCode {
    rheo::cli::main(rheo::jobs::builtin())
}
