//! The `rheo` binary: the CLI with the built-in jobs.

fn main() -> std::process::ExitCode {
    rheo_cli::main(rheo_cli::jobs::builtin())
}
