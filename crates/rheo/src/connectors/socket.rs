//! The socket text source (Flink's `socketTextStream`): reads text from a TCP server, one record
//! per line.
//!
//! - Lines end at the delimiter (`\n` by default); a trailing `\r` is stripped, so `\r\n` works.
//! - If nothing listens yet, the source retries every `retry_interval` up to `max_retries` times,
//!   logging a warning naming `host:port` each time, then fails naming `host:port` and the cause
//!   (e.g. "connection refused").
//! - When the server closes the connection, the input ends (the last unterminated line is still
//!   emitted), as in Flink: windows still open fire and the job finishes.
//! - Reads use a short timeout, so `poll` returns `Idle` within ~50 ms when no data arrives.
//!
//! The source is non-parallel: one connection per job.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::api::{DataStream, StreamEnv};
use rheo_runtime::task::{SourceError, SourceFunction, SourceOutput, SourceStatus, TaskInfo};

/// How the socket source connects and splits its input.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketConfig {
    pub host: String,
    pub port: u16,
    /// The byte that ends a record (Flink's `delimiter`).
    pub delimiter: u8,
    /// Connection attempts after the first one when nothing listens; `None` retries forever.
    pub max_retries: Option<u32>,
    /// The pause between connection attempts.
    pub retry_interval: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// How long `poll` waits for data before it reports `Idle`.
    pub read_timeout: Duration,
}

impl SocketConfig {
    /// Defaults: `\n`, 10 retries one second apart, 50 ms reads.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            delimiter: b'\n',
            max_retries: Some(10),
            retry_interval: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_millis(50),
        }
    }

    pub fn with_max_retries(mut self, max_retries: Option<u32>) -> Self {
        self.max_retries = max_retries;
        self
    }

    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    pub fn with_delimiter(mut self, delimiter: u8) -> Self {
        self.delimiter = delimiter;
        self
    }

    fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

enum State {
    /// Not connected; the next attempt is due at the instant.
    Connecting {
        attempt: u32,
        next_at: Instant,
    },
    Reading(TcpStream),
    Done,
}

/// Reads lines from a TCP connection. See the module documentation.
pub struct SocketTextSource {
    config: SocketConfig,
    state: State,
    buffer: Vec<u8>,
    /// Bytes of a line not yet terminated.
    partial: Vec<u8>,
}

const READ_BUFFER: usize = 64 * 1024;

impl SocketTextSource {
    pub fn new(config: SocketConfig) -> Self {
        Self {
            config,
            state: State::Connecting { attempt: 0, next_at: Instant::now() },
            buffer: vec![0; READ_BUFFER],
            partial: Vec::new(),
        }
    }

    fn connect_once(&self) -> std::io::Result<TcpStream> {
        let addrs: Vec<SocketAddr> = (self.config.host.as_str(), self.config.port).to_socket_addrs()?.collect();
        let mut last = std::io::Error::new(ErrorKind::NotFound, "the host name resolves to no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.config.connect_timeout) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// One connection attempt if it is due; sleeps briefly otherwise.
    fn try_connect(&mut self, attempt: u32, next_at: Instant) -> Result<SourceStatus, SourceError> {
        let now = Instant::now();
        if now < next_at {
            std::thread::sleep((next_at - now).min(self.config.read_timeout));
            return Ok(SourceStatus::Idle);
        }
        let endpoint = self.config.endpoint();
        match self.connect_once() {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(self.config.read_timeout.max(Duration::from_millis(1))))
                    .map_err(|e| format!("socket source {endpoint}: cannot set the read timeout: {e}"))?;
                let _ = stream.set_nodelay(true);
                tracing::info!(endpoint = %endpoint, "socket source connected");
                self.state = State::Reading(stream);
                Ok(SourceStatus::More)
            }
            Err(e) => {
                let cause = describe(&e);
                let exhausted = self.config.max_retries.is_some_and(|max| attempt >= max);
                if exhausted {
                    self.state = State::Done;
                    return Err(format!(
                        "socket source: cannot connect to {endpoint}: {cause} (gave up after {} attempts)",
                        attempt + 1
                    )
                    .into());
                }
                let retries = match self.config.max_retries {
                    Some(max) => format!("retry {} of {max}", attempt + 1),
                    None => format!("retry {}", attempt + 1),
                };
                tracing::warn!(
                    "socket source: cannot connect to {endpoint}: {cause}; {retries} in {:?}",
                    self.config.retry_interval
                );
                self.state = State::Connecting { attempt: attempt + 1, next_at: now + self.config.retry_interval };
                Ok(SourceStatus::Idle)
            }
        }
    }

    /// Emits every complete line in `partial`, keeping the unterminated rest.
    fn emit_lines(&mut self, out: &mut SourceOutput<'_, String>) {
        let delimiter = self.config.delimiter;
        let mut start = 0;
        while let Some(pos) = self.partial[start..].iter().position(|&b| b == delimiter) {
            out.collect(decode(&self.partial[start..start + pos]));
            start += pos + 1;
        }
        self.partial.drain(..start);
    }
}

/// The text of a line: lossy UTF-8 without a trailing `\r`.
fn decode(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

fn describe(e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused (is a server listening there?)".to_string(),
        ErrorKind::TimedOut | ErrorKind::WouldBlock => "connection timed out".to_string(),
        _ => e.to_string(),
    }
}

impl SourceFunction<String> for SocketTextSource {
    fn open(&mut self, _info: &TaskInfo) -> Result<(), SourceError> {
        tracing::info!(endpoint = %self.config.endpoint(), "socket source connecting");
        Ok(())
    }

    fn poll(&mut self, out: &mut SourceOutput<'_, String>) -> Result<SourceStatus, SourceError> {
        let stream = match &mut self.state {
            State::Done => return Ok(SourceStatus::Finished),
            State::Connecting { attempt, next_at } => {
                let (attempt, next_at) = (*attempt, *next_at);
                return self.try_connect(attempt, next_at);
            }
            State::Reading(stream) => stream,
        };
        match stream.read(&mut self.buffer) {
            Ok(0) => {
                // The server closed the connection: end of input, like Flink.
                if !self.partial.is_empty() {
                    let rest = std::mem::take(&mut self.partial);
                    out.collect(decode(&rest));
                }
                tracing::info!(endpoint = %self.config.endpoint(), "socket closed by the server: end of input");
                self.state = State::Done;
                Ok(SourceStatus::Finished)
            }
            Ok(n) => {
                self.partial.extend_from_slice(&self.buffer[..n]);
                self.emit_lines(out);
                Ok(SourceStatus::More)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(SourceStatus::Idle),
            Err(e) if e.kind() == ErrorKind::Interrupted => Ok(SourceStatus::More),
            Err(e) => Err(format!("socket source {}: read failed: {e}", self.config.endpoint()).into()),
        }
    }
}

impl StreamEnv {
    /// Lines of text from a TCP server (Flink's `socketTextStream`), with the default retry
    /// policy of [`SocketConfig::new`].
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DataStream<String> {
        self.socket_text_stream_with(SocketConfig::new(host, port))
    }

    /// Lines of text from a TCP server, configured.
    pub fn socket_text_stream_with(&self, config: SocketConfig) -> DataStream<String> {
        self.add_non_parallel_source("Socket Stream", move |_| SocketTextSource::new(config.clone()))
    }
}
