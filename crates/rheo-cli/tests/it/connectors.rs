//! The socket, datagen and text file connectors against real sockets and files.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rheo::connectors::datagen::{DatagenConfig, word_lines};
use rheo::connectors::socket::SocketConfig;
use rheo::prelude::*;

fn env(parallelism: usize) -> StreamEnv {
    let mut env = StreamEnv::new(Configuration::new());
    env.set_parallelism(parallelism);
    env
}

fn multiset<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}

#[test]
fn socket_lines_in_records_out_and_close_ends_the_input() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"first line\r\nsecond").unwrap();
        conn.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        conn.write_all(b" half\n\nlast without newline").unwrap();
        // Dropping the connection closes it: end of input.
    });
    let env = env(2);
    let lines = env.socket_text_stream("127.0.0.1", port).collect();
    env.execute("socket").unwrap();
    server.join().unwrap();
    // The collect sink runs with parallelism 2, so compare without order.
    assert_eq!(
        multiset(lines.values()),
        multiset(["first line", "second half", "", "last without newline"].map(String::from))
    );
}

#[test]
fn socket_with_nothing_listening_fails_after_retries_naming_host_and_port() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let env = env(1);
    let config =
        SocketConfig::new("127.0.0.1", port).with_max_retries(Some(2)).with_retry_interval(Duration::from_millis(50));
    let _ = env.socket_text_stream_with(config).collect();
    let started = Instant::now();
    let err = env.execute("socket").unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(err.contains("3 attempts"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(100), "two pauses of 50 ms between three attempts");
}

#[test]
fn socket_connects_once_the_server_comes_up() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let server = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"late\n").unwrap();
    });
    let env = env(1);
    let config =
        SocketConfig::new("127.0.0.1", port).with_max_retries(Some(50)).with_retry_interval(Duration::from_millis(50));
    let lines = env.socket_text_stream_with(config).collect();
    env.execute("socket").unwrap();
    server.join().unwrap();
    assert_eq!(lines.values(), vec!["late"]);
}

fn datagen_records(parallelism: usize, count: u64) -> Vec<String> {
    let env = env(parallelism);
    let out = env.datagen(DatagenConfig { count: Some(count), rate: None }, word_lines(42, 10_000, 8)).collect();
    env.execute("datagen").unwrap();
    out.values()
}

#[test]
fn datagen_is_deterministic_and_independent_of_parallelism() {
    let one = datagen_records(1, 5_000);
    assert_eq!(one.len(), 5_000);
    assert!(one.iter().all(|line| line.split(' ').count() == 8));
    assert_eq!(one, datagen_records(1, 5_000), "same seed, same records in the same order");
    let generate = word_lines(42, 10_000, 8);
    assert_eq!(one, (0..5_000).map(|i| generate(i)).collect::<Vec<_>>(), "record i is generate(i)");
    let expected = multiset(one);
    for p in [2, 4] {
        assert_eq!(multiset(datagen_records(p, 5_000)), expected, "parallelism {p}");
    }
}

#[test]
fn datagen_rate_limits_over_all_subtasks() {
    let env = env(2);
    let config = DatagenConfig { count: Some(200), rate: Some(1_000.0) };
    let out = env.datagen(config, Arc::new(|i: u64| i)).collect();
    let started = Instant::now();
    env.execute("datagen").unwrap();
    let elapsed = started.elapsed();
    let mut values = out.values();
    values.sort();
    assert_eq!(values, (0..200).collect::<Vec<_>>());
    // 200 records at 1000/s take about 200 ms; allow for slow machines above, none below.
    assert!(elapsed >= Duration::from_millis(150), "finished in {elapsed:?}");
}

#[test]
fn text_file_lines_are_split_over_subtasks_by_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lines.txt");
    let lines: Vec<String> = (0..103).map(|i| format!("line {i}")).collect();
    std::fs::write(&path, lines.join("\r\n") + "\n").unwrap();
    for p in [1, 2, 4] {
        let env = env(p);
        // Tag each line with the subtask that read it.
        let out = env
            .read_text_file(&path)
            .transform("Tag", |ctx| TagSubtask(ctx.info.subtask_index))
            .set_parallelism(p)
            .collect();
        env.execute("file").unwrap();
        let mut got = out.values();
        got.sort_by_key(|(line, _)| line.trim_start_matches("line ").parse::<usize>().unwrap());
        assert_eq!(got.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>(), lines, "parallelism {p}");
        for (n, (_, subtask)) in got.iter().enumerate() {
            assert_eq!(*subtask, n % p, "line {n} at parallelism {p}");
        }
    }
}

struct TagSubtask(usize);

impl rheo::runtime::output::Operator<String, (String, usize)> for TagSubtask {
    fn process(
        &mut self,
        value: String,
        timestamp: Timestamp,
        out: &mut dyn rheo::runtime::output::Output<(String, usize)>,
    ) {
        out.collect((value, self.0), timestamp);
    }
}

#[test]
fn text_file_that_cannot_be_opened_names_the_path() {
    let env = env(2);
    let _ = env.read_text_file("/no/such/dir/input.txt").collect();
    let err = env.execute("file").unwrap_err().to_string();
    assert!(err.contains("/no/such/dir/input.txt"), "{err}");
}

#[test]
fn text_file_parse_errors_name_path_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("numbers.txt");
    std::fs::write(&path, "1\n2\nthree\n4\n").unwrap();
    let env = env(2);
    let parse = Arc::new(|line: &str| line.parse::<u64>().map(|n| (n, NO_TIMESTAMP)).map_err(|e| e.to_string()));
    let _ = env.read_text_file_parsed(&path, parse).collect();
    let err = env.execute("file").unwrap_err().to_string();
    assert!(err.contains(&format!("{}:3:", path.display())), "{err}");
}

#[test]
fn text_file_sink_writes_one_line_per_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.txt");
    let env = env(1);
    env.from_collection(vec![1, 2, 3]).write_as_text(&out);
    env.execute("sink").unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "1\n2\n3\n");
}
