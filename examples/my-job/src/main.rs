//! The `my-job` worker binary: Rheo's command line (`run`, `jobmanager`, `taskmanager`,
//! `submit`, ...) carrying this crate's job. Every process of a cluster runs this binary.

fn main() -> std::process::ExitCode {
    rheo_cli::main(rheo_cli::jobs::JobRegistry::new().register::<my_job::SensorAverages>())
}
