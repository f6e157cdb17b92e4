//! The `my-job` binary end to end: its job runs on the embedded mini-cluster and prints the
//! averages computed here from the input; it carries only its own job; bad input is named.

use std::collections::BTreeMap;
use std::process::{Command, Output};

fn my_job(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_my-job"))
        .current_dir(dir)
        .args(args)
        .env("RHEO_LOG", "warn")
        .env_remove("RHEO_CONF_DIR")
        .output()
        .unwrap()
}

#[test]
fn sensor_averages_per_window_are_printed() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("readings.csv");
    // Three sensors, a reading every 7 ms for 5 s of event time, values that differ per window.
    let mut text = String::new();
    let mut sums: BTreeMap<(i64, String), (f64, u64)> = BTreeMap::new();
    for i in 0..3_000i64 {
        let ts = i * 7 / 4;
        let sensor = format!("s{}", i % 3);
        let value = ((i * 37) % 101) as f64 / 4.0;
        text.push_str(&format!("{ts},{sensor},{value}\n"));
        let entry = sums.entry((ts / 500 * 500 + 500, sensor)).or_default();
        entry.0 += value;
        entry.1 += 1;
    }
    std::fs::write(&input, text).unwrap();
    let out = my_job(
        dir.path(),
        &["run", "sensor-averages", "--input", input.to_str().unwrap(), "--window-ms", "500", "-p", "2"],
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let mut got: BTreeMap<(i64, String), String> = BTreeMap::new();
    for line in stdout.lines() {
        // Flink's `N> ` subtask prefix of the print sink at parallelism 2.
        let record = line.split_once("> ").map_or(line, |(_, r)| r);
        let fields: Vec<&str> = record.split(',').collect();
        assert_eq!(fields.len(), 3, "{line}");
        let previous = got.insert((fields[0].parse().unwrap(), fields[1].to_string()), fields[2].to_string());
        assert!(previous.is_none(), "printed twice: {line}");
    }
    let expected: BTreeMap<(i64, String), String> =
        sums.into_iter().map(|(k, (sum, n))| (k, format!("{:.3}", sum / n as f64))).collect();
    assert_eq!(got.len(), expected.len(), "{stdout}");
    assert_eq!(got, expected);
}

#[test]
fn the_binary_carries_its_own_job_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = my_job(dir.path(), &["jobs"]);
    let listed = String::from_utf8_lossy(&jobs.stdout);
    assert!(jobs.status.success() && listed.contains("sensor-averages"), "{listed}");
    assert!(!listed.contains("word-count"), "only this crate's jobs: {listed}");

    let input = dir.path().join("bad.csv");
    std::fs::write(&input, "0,s1,1.5\n5,s1,lots\n").unwrap();
    let out = my_job(dir.path(), &["run", "sensor-averages", "--input", input.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:2:", input.display())) && stderr.contains("'lots' is not a number"),
        "{stderr}"
    );
}
