//! The RPC between the JobManager (port 6123) and its TaskManagers: one TCP connection per
//! TaskManager, opened by the TaskManager, carrying length-prefixed postcard messages both ways.
//!
//! Written on plain `std::net` rather than a gRPC stack: the conversation is a handful of
//! messages over one long-lived connection per TaskManager, both ends are this binary, and a
//! closed connection is itself the fastest failure signal (a killed TaskManager's socket is
//! closed by its kernel). Heartbeats cover what a socket does not show: a hung or partitioned
//! peer.

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::jobspec::JobSpec;
use rheo_runtime::checkpoint::metadata::StateHandle;
use rheo_runtime::task::{Control, TaskMetrics, TaskOutcome};

/// First bytes a TaskManager sends: protocol name and version.
const MAGIC: &[u8; 8] = b"RHEORPC1";
/// Larger messages are refused as malformed instead of allocated.
const MAX_MESSAGE: usize = 64 << 20;

/// What a TaskManager tells the JobManager.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ToJobManager {
    Register(Registration),
    /// Sent every `heartbeat.interval`, with the counters of the subtasks it runs:
    /// (vertex index, subtask index, metrics).
    Heartbeat {
        attempt: Option<u64>,
        subtasks: Vec<(usize, usize, TaskMetrics)>,
    },
    /// A source reached the end of its input (waits for the final checkpoint).
    EndOfInput {
        attempt: u64,
        task: usize,
    },
    /// A task passed a barrier and the TaskManager uploaded its state (or could not).
    Uploaded {
        attempt: u64,
        task: usize,
        checkpoint_id: u64,
        states: Result<Vec<StateHandle>, String>,
    },
    /// A task started running (its source opened): the attempt runs once all of its tasks do.
    TaskRunning {
        attempt: u64,
        task: usize,
    },
    TaskEnded {
        attempt: u64,
        task: usize,
        outcome: TaskOutcome,
    },
    /// The TaskManager could not deploy its part of an attempt.
    DeployFailed {
        attempt: u64,
        message: String,
    },
    /// The TaskManager is shutting down (SIGTERM): schedule nothing more on it and move its
    /// tasks elsewhere; this is no failure of the job.
    Leaving,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Registration {
    /// Where other TaskManagers reach its data port.
    pub data_address: SocketAddr,
    pub slots: usize,
    pub cpu_cores: usize,
    pub physical_memory: u64,
}

/// What the JobManager tells a TaskManager.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum ToTaskManager {
    Registered {
        resource_id: String,
    },
    HeartbeatAck,
    /// Run this TaskManager's slots of an attempt.
    Deploy(Deployment),
    /// Where the state of checkpoint `checkpoint_id` goes (sent before its barriers).
    CheckpointTarget {
        attempt: u64,
        checkpoint_id: u64,
        dir: String,
    },
    Control {
        attempt: u64,
        task: usize,
        control: Control,
    },
    /// Cancel every task of the attempt.
    Cancel {
        attempt: u64,
    },
}

/// One attempt of a job, as one TaskManager runs it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Deployment {
    pub attempt: u64,
    pub job_id: String,
    pub job: JobSpec,
    /// The parallelism the scheduler chose (reactive mode), else the spec's.
    pub parallelism: Option<usize>,
    /// Data address of the TaskManager holding each slot; slot `s` runs subtask `s` of every task.
    pub slots: Vec<SocketAddr>,
    /// The checkpoint or savepoint directory to restore from.
    pub restore: Option<String>,
    /// Whether tasks report to a checkpoint coordinator.
    pub checkpointing: bool,
}

/// A malformed or broken RPC connection.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("connection to {peer} failed: {source}")]
    Io { peer: String, source: std::io::Error },
    #[error("{peer} sent a malformed message: {message}")]
    Malformed { peer: String, message: String },
}

/// Writes messages to one connection.
pub struct RpcWriter {
    stream: TcpStream,
    peer: String,
    buf: Vec<u8>,
}

impl RpcWriter {
    pub fn send<M: serde::Serialize>(&mut self, message: &M) -> Result<(), RpcError> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        let encoded = postcard::to_extend(message, std::mem::take(&mut self.buf))
            .map_err(|e| RpcError::Malformed { peer: self.peer.clone(), message: e.to_string() })?;
        self.buf = encoded;
        let len = (self.buf.len() - 4) as u32;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.stream.write_all(&self.buf).map_err(|source| RpcError::Io { peer: self.peer.clone(), source })
    }

    /// Closes both directions (the reader on the other thread sees the end).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

/// Reads messages from one connection.
pub struct RpcReader {
    stream: BufReader<TcpStream>,
    peer: String,
    buf: Vec<u8>,
}

impl RpcReader {
    /// How long `recv` waits for the next message before failing (`None`: forever).
    pub fn set_timeout(&mut self, timeout: Option<std::time::Duration>) {
        let _ = self.stream.get_ref().set_read_timeout(timeout);
    }

    /// The next message; `Ok(None)` when the peer closed the connection.
    pub fn recv<M: serde::de::DeserializeOwned>(&mut self) -> Result<Option<M>, RpcError> {
        let io = |source| RpcError::Io { peer: self.peer.clone(), source };
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(io(e)),
        }
        let len = u32::from_le_bytes(len) as usize;
        if len > MAX_MESSAGE {
            return Err(RpcError::Malformed {
                peer: self.peer.clone(),
                message: format!("a message of {len} bytes (at most {MAX_MESSAGE})"),
            });
        }
        self.buf.resize(len, 0);
        self.stream.read_exact(&mut self.buf).map_err(|e| RpcError::Io { peer: self.peer.clone(), source: e })?;
        postcard::from_bytes(&self.buf)
            .map(Some)
            .map_err(|e| RpcError::Malformed { peer: self.peer.clone(), message: e.to_string() })
    }
}

fn split(stream: TcpStream, peer: String) -> Result<(RpcReader, RpcWriter), RpcError> {
    let _ = stream.set_nodelay(true);
    let write = stream.try_clone().map_err(|source| RpcError::Io { peer: peer.clone(), source })?;
    Ok((
        RpcReader { stream: BufReader::new(stream), peer: peer.clone(), buf: Vec::new() },
        RpcWriter { stream: write, peer, buf: Vec::new() },
    ))
}

/// The TaskManager's side: connects and introduces itself.
pub fn connect(addr: &str, timeout: std::time::Duration) -> Result<(RpcReader, RpcWriter), RpcError> {
    let io = |source| RpcError::Io { peer: addr.to_string(), source };
    let target = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .map_err(io)?
        .next()
        .ok_or_else(|| io(std::io::Error::new(std::io::ErrorKind::NotFound, "the address does not resolve")))?;
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(io)?;
    stream.write_all(MAGIC).map_err(io)?;
    split(stream, addr.to_string())
}

/// The JobManager's side: checks the introduction of an accepted connection.
pub fn accept(mut stream: TcpStream) -> Result<(RpcReader, RpcWriter), RpcError> {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "a TaskManager".into());
    let mut magic = [0u8; 8];
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    stream.read_exact(&mut magic).map_err(|source| RpcError::Io { peer: peer.clone(), source })?;
    if &magic != MAGIC {
        return Err(RpcError::Malformed { peer, message: "not a Rheo TaskManager (bad greeting)".into() });
    }
    let _ = stream.set_read_timeout(None);
    split(stream, peer)
}

/// The local address of a connected socket's side, e.g. what a TaskManager advertises.
pub fn local_ip(writer: &RpcWriter) -> Option<std::net::IpAddr> {
    writer.stream.local_addr().ok().map(|a| a.ip())
}
