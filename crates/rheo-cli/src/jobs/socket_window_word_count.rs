//! Flink's `SocketWindowWordCount`: words from a socket, counted per tumbling processing-time
//! window. Start a server first, e.g. `nc -lk 9000`, then
//! `rheo run socket-window-word-count --port 9000`.

use std::time::Duration;

use rheo::api::StreamEnv;
use rheo::connectors::socket::SocketConfig;
use rheo_runtime::window::TumblingProcessingTimeWindows;

use super::words::{WordWithCount, sum, tokenize};
use super::{JobDef, parse_duration_arg};

#[derive(Debug, Clone, clap::Parser)]
pub struct SocketWindowWordCount {
    /// The host of the text server.
    #[arg(long, default_value = "localhost")]
    pub hostname: String,
    /// The port of the text server.
    #[arg(long)]
    pub port: u16,
    /// The size of the tumbling processing-time windows.
    #[arg(long, default_value = "5s", value_parser = parse_duration_arg)]
    pub window: Duration,
    /// Connection attempts after the first while nothing listens (-1: forever).
    #[arg(long, default_value_t = 10, allow_negative_numbers = true)]
    pub max_retries: i64,
    /// The pause between connection attempts.
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg)]
    pub retry_interval: Duration,
}

impl JobDef for SocketWindowWordCount {
    const NAME: &'static str = "socket-window-word-count";
    const DESCRIPTION: &'static str =
        "Flink's SocketWindowWordCount: counts words from a socket per tumbling processing-time window";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        let max_retries = if self.max_retries < 0 { None } else { Some(self.max_retries as u32) };
        let config = SocketConfig::new(self.hostname, self.port)
            .with_max_retries(max_retries)
            .with_retry_interval(self.retry_interval);
        env.socket_text_stream_with(config)
            .flat_map(|line: String, out| tokenize(&line, out))
            .key_by(|wc: &WordWithCount| wc.word.clone())
            .window(TumblingProcessingTimeWindows::of(self.window))
            .reduce(sum)
            .print()
            .set_parallelism(1);
        Ok(())
    }
}
