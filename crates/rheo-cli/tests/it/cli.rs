//! The `rheo` binary end to end: job listing, the built-in jobs on small inputs, and errors.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn rheo(args: &[&str]) -> Output {
    // `rheo run` checkpoints into ./rheo-data: give every run its own working directory.
    let cwd = tempfile::tempdir().expect("temp dir");
    Command::new(env!("CARGO_BIN_EXE_rheo"))
        .current_dir(cwd.path())
        .args(args)
        .env("RHEO_LOG", "warn")
        .env_remove("RHEO_CONF_DIR")
        .env_remove("RHEO_PARALLELISM_DEFAULT")
        .output()
        .expect("run rheo")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Strips Flink's `N> ` subtask prefix of the print sink.
fn strip_prefix(line: &str) -> &str {
    match line.split_once("> ") {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => line,
    }
}

/// `word : count` lines as a map (each word printed once).
fn counts(out: &str) -> BTreeMap<String, u64> {
    let mut map = BTreeMap::new();
    for line in out.lines().map(strip_prefix) {
        let (word, count) = line.split_once(" : ").unwrap_or_else(|| panic!("not 'word : count': {line:?}"));
        assert!(map.insert(word.to_string(), count.parse().unwrap()).is_none(), "{word} printed twice");
    }
    map
}

fn expected(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(w, c)| (w.to_string(), *c)).collect()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn jobs_lists_the_builtin_jobs() {
    let out = rheo(&["jobs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for job in ["socket-window-word-count", "word-count", "datagen-word-count"] {
        assert!(text.lines().any(|l| l.starts_with(job) && l.len() > job.len() + 10), "{job} missing in {text}");
    }
}

const TEXT: &str = "To be, or not to be: that is the question\nto be\n\n  whether tis nobler\r\nto be\n";

fn text_counts() -> BTreeMap<String, u64> {
    expected(&[
        ("To", 1),
        ("be,", 1),
        ("or", 1),
        ("not", 1),
        ("to", 3),
        ("be:", 1),
        ("that", 1),
        ("is", 1),
        ("the", 1),
        ("question", 1),
        ("be", 2),
        ("whether", 1),
        ("tis", 1),
        ("nobler", 1),
    ])
}

#[test]
fn word_count_prints_the_counts_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "input.txt", TEXT);
    let out = rheo(&["run", "word-count", "--input", &input]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(counts(&stdout(&out)), text_counts());
}

#[test]
fn word_count_is_the_same_at_any_parallelism_and_flag_position() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "input.txt", &TEXT.repeat(50));
    let want: BTreeMap<String, u64> = text_counts().into_iter().map(|(w, c)| (w, c * 50)).collect();
    for p in ["1", "2", "4"] {
        // Global flags before the job name, and after the job's own arguments.
        for args in [
            vec!["run", "-p", p, "word-count", "--input", &input],
            vec!["run", "word-count", "--input", &input, "-p", p],
        ] {
            let out = rheo(&args);
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            assert_eq!(counts(&stdout(&out)), want, "{args:?}");
            if p != "1" {
                assert!(stdout(&out).lines().all(|l| l.contains("> ")), "prefixed at parallelism {p}");
            }
        }
    }
}

/// `[start, end) word : count` lines as a map.
fn window_counts(out: &str) -> BTreeMap<(i64, i64, String), u64> {
    let mut map = BTreeMap::new();
    for line in out.lines().map(strip_prefix) {
        let rest = line.strip_prefix('[').unwrap_or_else(|| panic!("no window in {line:?}"));
        let (window, rest) = rest.split_once(") ").unwrap();
        let (start, end) = window.split_once(", ").unwrap();
        let (word, count) = rest.split_once(" : ").unwrap();
        let key = (start.parse().unwrap(), end.parse().unwrap(), word.to_string());
        assert!(map.insert(key, count.parse().unwrap()).is_none(), "{line} printed twice");
    }
    map
}

#[test]
fn word_count_per_event_time_window() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "events.txt",
        "1000\tto be\n1500\tor not\n1999\tto\n2000\tbe that\n\n2999\tis\n5200\tto be\n",
    );
    let want: BTreeMap<(i64, i64, String), u64> = [
        ((1000, 2000, "to"), 2),
        ((1000, 2000, "be"), 1),
        ((1000, 2000, "or"), 1),
        ((1000, 2000, "not"), 1),
        ((2000, 3000, "be"), 1),
        ((2000, 3000, "that"), 1),
        ((2000, 3000, "is"), 1),
        ((5000, 6000, "to"), 1),
        ((5000, 6000, "be"), 1),
    ]
    .into_iter()
    .map(|((s, e, w), c)| ((s, e, w.to_string()), c))
    .collect();
    for p in ["1", "2", "3"] {
        let out = rheo(&["run", "word-count", "--input", &input, "--event-time", "--window", "1s", "-p", p]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(window_counts(&stdout(&out)), want, "parallelism {p}");
    }
}

#[test]
fn malformed_event_time_line_fails_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "events.txt", "1000\tto be\n1500\tor not\nnot a timestamp\n");
    let out = rheo(&["run", "word-count", "--input", &input, "--event-time"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line in {err}"));
    assert!(line.contains(&format!("{input}:3:")), "{line}");
    assert!(line.contains("TIMESTAMP_MS<TAB>TEXT"), "{line}");

    let input = write(dir.path(), "bad-ts.txt", "1000\tto be\n12x\tor not\n");
    let out = rheo(&["run", "word-count", "--input", &input, "--event-time", "-p", "2"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&format!("{input}:2:")) && err.contains("'12x' is not a timestamp"), "{err}");
    assert!(!err.contains("panicked"), "cancelled tasks stay quiet: {err}");
}

/// The error output is exactly one line naming the problem.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{err}");
}

#[test]
fn unknown_jobs_and_bad_arguments_fail_with_one_line() {
    assert_one_line_error(&rheo(&["run", "foo"]), "unknown job 'foo' (see 'rheo jobs')");
    assert_one_line_error(&rheo(&["run", "word-count"]), "--input");
    assert_one_line_error(&rheo(&["run", "word-count", "--input", "x", "--bogus"]), "--bogus");
    assert_one_line_error(&rheo(&["run", "socket-window-word-count", "--port", "http"]), "http");
    assert_one_line_error(
        &rheo(&["run", "socket-window-word-count", "--port", "1", "--window", "5 parsecs"]),
        "duration",
    );
    assert_one_line_error(&rheo(&["run", "-p", "0", "word-count", "--input", "x"]), "parallelism");
    assert_one_line_error(&rheo(&["run", "-D", "novalue", "word-count", "--input", "x"]), "key=value");
    assert_one_line_error(&rheo(&["frobnicate"]), "frobnicate");
    let out = rheo(&["run", "word-count", "--input", "/no/such/file.txt"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot open /no/such/file.txt"), "{}", stderr(&out));
}

#[test]
fn socket_window_word_count_counts_until_the_server_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for _ in 0..3 {
            conn.write_all(b"to be or not to be\nthat is the question\r\n").unwrap();
        }
        conn.write_all(b"to be").unwrap();
        // Closing the connection ends the input; the last windows fire and the job exits.
    });
    let out = rheo(&[
        "run",
        "socket-window-word-count",
        "--hostname",
        "127.0.0.1",
        "--port",
        &port,
        "--window",
        "500ms",
        "-p",
        "2",
    ]);
    server.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // Windows may split the input at any point: sum the counts of each word over the windows.
    let mut totals = BTreeMap::new();
    for line in stdout(&out).lines() {
        assert!(!line.contains("> "), "the print sink has parallelism 1, as in Flink's example");
        let (word, count) = line.split_once(" : ").unwrap();
        *totals.entry(word.to_string()).or_insert(0) += count.parse::<u64>().unwrap();
    }
    let want =
        expected(&[("to", 7), ("be", 7), ("or", 3), ("not", 3), ("that", 3), ("is", 3), ("the", 3), ("question", 3)]);
    assert_eq!(totals, want);
}

#[test]
fn datagen_word_count_counts_every_generated_word() {
    let out = rheo(&["run", "datagen-word-count", "--count", "1000", "--window", "1h", "-p", "2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // One window of an hour: at most two firings if the run straddles an hour boundary.
    let total: u64 = text.lines().map(|l| strip_prefix(l).split_once(" : ").unwrap().1.parse::<u64>().unwrap()).sum();
    assert_eq!(total, 8_000, "1000 lines of 8 words");
    let out = rheo(&["run", "datagen-word-count", "--count", "1000", "--sink", "discard"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn job_help_shows_the_job_arguments() {
    let out = rheo(&["run", "word-count", "--help"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("counts the words of a text file") && text.contains("--input"), "{text}");
    assert!(text.contains("--parallelism"), "global flags are listed too: {text}");
}

#[test]
fn configuration_from_conf_dir_and_dynamic_flags() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "input.txt", TEXT);
    write(dir.path(), "rheo.yaml", "parallelism:\n  default: 3\n");
    let conf_dir = dir.path().display().to_string();
    let prefixes = |out: &Output| -> std::collections::BTreeSet<String> {
        stdout(out).lines().map(|l| l.split_once("> ").map(|(n, _)| n.to_string()).unwrap_or_default()).collect()
    };
    let out = rheo(&["run", "--conf-dir", &conf_dir, "word-count", "--input", &input]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(counts(&stdout(&out)), text_counts());
    assert!(prefixes(&out).iter().all(|p| ["1", "2", "3"].contains(&p.as_str())), "parallelism 3 from rheo.yaml");
    // -D overrides the file, -p overrides both.
    let out = rheo(&["run", "--conf-dir", &conf_dir, "-D", "parallelism.default=1", "word-count", "--input", &input]);
    assert_eq!(prefixes(&out), [String::new()].into(), "{}", stdout(&out));
    let out = rheo(&["run", "-D", "parallelism.default=1", "word-count", "--input", &input, "-p", "2"]);
    assert!(prefixes(&out).iter().all(|p| ["1", "2"].contains(&p.as_str())), "{}", stdout(&out));
    assert_eq!(counts(&stdout(&out)), text_counts());
}

/// `rheo run ... | head -3`: once the reader has closed the pipe, the job ends at once and
/// cleanly, instead of restarting to write into a pipe nobody reads.
#[test]
fn a_closed_stdout_ends_an_unbounded_job_within_seconds() {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let cwd = tempfile::tempdir().expect("temp dir");
    let log = cwd.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rheo"))
        .current_dir(cwd.path())
        .args(["run", "datagen-word-count", "--window", "50ms", "--vocabulary", "100"])
        .env("RHEO_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run rheo");
    let lines: Vec<String> =
        std::io::BufReader::new(child.stdout.take().unwrap()).lines().take(3).map(|l| l.unwrap()).collect();
    assert_eq!(lines.len(), 3);
    // The reader (and with it the pipe) is gone here, as `head` exits.
    let closed = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if closed.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("rheo run still runs 20 s after its stdout closed:\n{}", std::fs::read_to_string(&log).unwrap());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let err = std::fs::read_to_string(&log).unwrap();
    eprintln!("rheo run ended {:?} after its stdout closed ({status})", closed.elapsed());
    assert!(status.success(), "{status}:\n{err}");
    assert!(!err.contains("restarting") && !err.contains("error:") && !err.contains("panicked"), "{err}");
}

/// Configuration errors exit with status 2 (a usage error, as for bad arguments), on one
/// `error:` line naming the key; a misspelled key is ignored with a warning that names the key
/// it probably means.
#[test]
fn configuration_errors_exit_2_and_a_misspelled_key_names_the_closest_one() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(dir.path(), "input.txt", TEXT);
    let cases = [
        ("taskmanager.numberOfTaskSlots=0", "at least 1"),
        // 2^64 ms and one second more: wrapped around to a few seconds before it was checked.
        ("execution.checkpointing.interval=18446744073709552s", "at most"),
    ];
    for (flag, why) in cases {
        let key = flag.split_once('=').unwrap().0;
        for args in [
            vec!["run", "-D", flag, "word-count", "--input", &input],
            vec!["taskmanager", "-D", flag],
            vec!["jobmanager", "-D", flag],
        ] {
            // The processes that would run for good get a deadline.
            let out = super::common::rheo(&args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
            assert_one_line_error(&out, key);
            assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
        }
    }
    let out = rheo(&["run", "-D", "paralelism.default=2", "word-count", "--input", &input]);
    assert!(out.status.success(), "a misspelled key is ignored: {}", stderr(&out));
    assert!(stderr(&out).contains("did you mean 'parallelism.default'"), "{}", stderr(&out));
    assert_eq!(counts(&stdout(&out)), text_counts());
}
