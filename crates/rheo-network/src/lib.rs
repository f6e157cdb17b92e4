//! Data exchange between TaskManagers over TCP, with credit-based flow control.
//!
//! A [`NetworkEnvironment`] per process (Flink's `NettyShuffleEnvironment`) listens on the
//! data port and opens at most one TCP connection per remote peer address; that connection
//! multiplexes every logical channel ([`ChannelId`]) this process sends to that peer. Both ends
//! hand out plain crossbeam channels of [`Event`], so `ChannelWriter` and `InputGate` use a
//! remote channel exactly like a local one.
//!
//! Flow control (Flink's credit-based protocol): the receiver grants each channel `credits`
//! buffers, one per event it has room for, and returns one credit per event its consumer has
//! taken. The sender sends an event only with a credit in hand. Control events (watermark,
//! barrier, end) consume a credit too, like Flink's aligned barriers: they stay in order behind
//! the records of their channel, and the receiving side never holds more than `credits` events
//! per channel. Hence the connection's reader thread never blocks on a full channel, and one
//! slow channel never stalls the others sharing the connection; a sender without credit makes
//! its writer block, which is how backpressure crosses the network to the sources.
//!
//! Blocking `std::net` with threads rather than tokio: the engine's tasks are blocking threads
//! on crossbeam channels, so threads avoid bridging into a runtime and keep a frame write a
//! plain `write_all`. Threads: per connection one reader on each side; per channel one pump on
//! the sending side (takes events from the writer's channel, waits for credit, writes the frame)
//! and one delivery thread on the receiving side (hands events to the consumer's channel and
//! returns credit). The per-channel threads are what a later change removes by giving the
//! writer and gate a credit-aware handle instead of crossbeam channels.
//!
//! Failures: a broken connection disconnects every channel on it (the writer's `send` fails,
//! the gate sees its upstream gone); a malformed frame closes the connection and is recorded
//! as a [`NetworkError`] naming the peer, never a panic.

mod frame;
mod receive;
mod send;

use receive::{Inbound, InboundChannel, TypedInbound, accept_loop, deliver};
use send::{OutConn, pump, read_credits};

use std::collections::HashMap;
use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use serde::Serialize;
use serde::de::DeserializeOwned;

use rheo_types::{CHANNEL_CAPACITY, Event};

/// Identifies one logical channel: from subtask `upstream` to subtask `downstream` over the
/// edge (result partition) `edge` of job `job`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelId {
    pub job: [u8; 16],
    pub edge: u32,
    pub upstream: u32,
    pub downstream: u32,
}

/// A failure of the data connection with `peer`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("data connection with {peer}: {message}")]
pub struct NetworkError {
    pub peer: SocketAddr,
    pub message: String,
}

/// Sizes of the network buffers.
#[derive(Debug, Clone, Copy)]
pub struct NetworkConfig {
    /// Events the receiving side buffers per channel (Flink's exclusive buffers per channel).
    pub credits: u32,
    /// Capacity of the crossbeam channel a writer sends into on the sending side.
    pub sender_capacity: usize,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self { credits: CHANNEL_CAPACITY as u32, sender_capacity: 1 }
    }
}

/// What can travel over the network.
pub trait WireData: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> WireData for T {}

/// The network stack of one process: the data port, its connections and channels.
pub struct NetworkEnvironment {
    inner: Arc<Inner>,
}

struct Inner {
    local_addr: SocketAddr,
    config: NetworkConfig,
    stopped: AtomicBool,
    outgoing: Mutex<HashMap<SocketAddr, Arc<OutConn>>>,
    inbound: Mutex<Inbound>,
    /// A clone of every open socket, to shut them down with the environment.
    sockets: Mutex<HashMap<u64, TcpStream>>,
    next_socket: AtomicU64,
    incoming_open: AtomicUsize,
    errors: Mutex<Vec<NetworkError>>,
    /// Most events ever buffered by one receiving channel.
    max_buffered: AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn error(&self, peer: SocketAddr, message: String) {
        tracing::warn!(%peer, "data connection: {message}");
        lock(&self.errors).push(NetworkError { peer, message });
    }

    /// Keeps a clone of `stream` for shutdown; `None` if the environment is stopped.
    fn track(&self, stream: &TcpStream) -> Option<u64> {
        let mut sockets = lock(&self.sockets);
        if self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        let key = self.next_socket.fetch_add(1, Ordering::Relaxed);
        sockets.insert(key, stream.try_clone().ok()?);
        Some(key)
    }

    fn untrack(&self, key: u64) {
        if let Some(stream) = lock(&self.sockets).remove(&key) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Writes whole frames to one socket, shared by the threads of a connection.
struct FrameWriter {
    peer: SocketAddr,
    stream: Mutex<TcpStream>,
}

impl FrameWriter {
    fn write(&self, frame: &[u8]) -> Result<(), NetworkError> {
        let mut stream = lock(&self.stream);
        stream.write_all(frame).map_err(|e| {
            // A broken socket ends the connection: its reader notices and cleans up.
            let _ = stream.shutdown(Shutdown::Both);
            NetworkError { peer: self.peer, message: format!("write failed: {e}") }
        })
    }

    fn control(&self, kind: u8, id: &ChannelId, value: Option<u32>) -> Result<(), NetworkError> {
        self.write(&frame::control(kind, id, value))
    }
}

impl NetworkEnvironment {
    /// Listens on `addr` (`127.0.0.1:0` picks a free port).
    pub fn start(addr: SocketAddr, config: NetworkConfig) -> std::io::Result<Self> {
        assert!(config.credits > 0, "a channel needs at least one credit");
        let listener = TcpListener::bind(addr)?;
        let inner = Arc::new(Inner {
            local_addr: listener.local_addr()?,
            config,
            stopped: AtomicBool::new(false),
            outgoing: Mutex::new(HashMap::new()),
            inbound: Mutex::new(Inbound { registered: HashMap::new(), pending: HashMap::new() }),
            sockets: Mutex::new(HashMap::new()),
            next_socket: AtomicU64::new(0),
            incoming_open: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
            max_buffered: AtomicUsize::new(0),
        });
        let acceptor = inner.clone();
        std::thread::Builder::new().name("rheo-net-accept".into()).spawn(move || accept_loop(acceptor, listener))?;
        Ok(Self { inner })
    }

    /// The address peers connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// A sender for channel `id` to the environment listening at `peer`. Sending blocks while
    /// the receiver has granted no credit; it fails once the connection or the consumer is gone.
    pub fn remote_sender<T: WireData>(
        &self,
        peer: SocketAddr,
        id: ChannelId,
    ) -> Result<Sender<Event<T>>, NetworkError> {
        let conn = self.connection(peer)?;
        let (credit_tx, credit_rx) = unbounded();
        if lock(&conn.credits).insert(id, credit_tx).is_some() {
            return Err(NetworkError { peer, message: format!("channel {id:?} is already open") });
        }
        conn.writer.control(frame::OPEN, &id, None)?;
        let (tx, rx) = bounded(self.inner.config.sender_capacity);
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("rheo-net-out".into())
            .spawn(move || pump(inner, conn, id, rx, credit_rx))
            .map_err(|e| NetworkError { peer, message: format!("cannot start a sender thread: {e}") })?;
        Ok(tx)
    }

    /// The receiving end of channel `id`, fed by whichever connection the sender opens it on.
    /// Disconnects when that connection breaks or the sender goes away without `End`.
    pub fn remote_receiver<T: WireData>(&self, id: ChannelId) -> Result<Receiver<Event<T>>, NetworkError> {
        let peer = self.inner.local_addr;
        let (out_tx, out_rx) = bounded(0);
        let (queue_tx, queue_rx) = unbounded();
        let buffered = Arc::new(AtomicUsize::new(0));
        let mut channel: Box<dyn InboundChannel> = Box::new(TypedInbound::<T> {
            queue: queue_tx,
            buffered: buffered.clone(),
            credits: self.inner.config.credits as usize,
            inner: self.inner.clone(),
        });
        let mut inbound = lock(&self.inner.inbound);
        if inbound.registered.contains_key(&id) {
            return Err(NetworkError { peer, message: format!("channel {id:?} is already registered") });
        }
        std::thread::Builder::new()
            .name("rheo-net-in".into())
            .spawn(move || deliver(id, queue_rx, out_tx, buffered))
            .map_err(|e| NetworkError { peer, message: format!("cannot start a receiver thread: {e}") })?;
        if let Some(conn) = inbound.pending.remove(&id) {
            drop(inbound);
            channel.bind(conn.writer.clone());
            // The reader adopts the channel before the credit lets any event arrive.
            if conn.adopt.send((id, channel)).is_ok() {
                let _ = conn.writer.control(frame::CREDIT, &id, Some(self.inner.config.credits));
            }
        } else {
            inbound.registered.insert(id, channel);
        }
        Ok(out_rx)
    }

    /// The open connection to `peer`, or a new one.
    fn connection(&self, peer: SocketAddr) -> Result<Arc<OutConn>, NetworkError> {
        let mut outgoing = lock(&self.inner.outgoing);
        if let Some(conn) = outgoing.get(&peer)
            && conn.alive.load(Ordering::SeqCst)
        {
            return Ok(conn.clone());
        }
        let err = |message: String| NetworkError { peer, message };
        let mut stream = TcpStream::connect_timeout(&peer, Duration::from_secs(10))
            .map_err(|e| err(format!("connect failed: {e}")))?;
        let _ = stream.set_nodelay(true);
        stream.write_all(frame::MAGIC).map_err(|e| err(format!("handshake failed: {e}")))?;
        let key = self.inner.track(&stream).ok_or_else(|| err("the network environment is shut down".into()))?;
        let read_half = stream.try_clone().map_err(|e| err(e.to_string()))?;
        let (dead_tx, dead_rx) = bounded(0);
        let conn = Arc::new(OutConn {
            writer: Arc::new(FrameWriter { peer, stream: Mutex::new(stream) }),
            credits: Mutex::new(HashMap::new()),
            dead_tx: Mutex::new(Some(dead_tx)),
            dead_rx,
            alive: AtomicBool::new(true),
        });
        let (inner, reader_conn) = (self.inner.clone(), conn.clone());
        std::thread::Builder::new()
            .name("rheo-net-credits".into())
            .spawn(move || {
                if let Err(message) = read_credits(&reader_conn, read_half) {
                    inner.error(peer, message);
                }
                reader_conn.alive.store(false, Ordering::SeqCst);
                lock(&reader_conn.credits).clear();
                lock(&reader_conn.dead_tx).take();
                let mut outgoing = lock(&inner.outgoing);
                if outgoing.get(&peer).is_some_and(|c| Arc::ptr_eq(c, &reader_conn)) {
                    outgoing.remove(&peer);
                }
                drop(outgoing);
                inner.untrack(key);
            })
            .map_err(|e| err(format!("cannot start a connection thread: {e}")))?;
        outgoing.insert(peer, conn.clone());
        Ok(conn)
    }

    /// Open TCP connections this environment initiated (at most one per peer address).
    pub fn outgoing_connections(&self) -> usize {
        lock(&self.inner.outgoing).values().filter(|c| c.alive.load(Ordering::SeqCst)).count()
    }

    /// Open TCP connections peers initiated to this environment.
    pub fn incoming_connections(&self) -> usize {
        self.inner.incoming_open.load(Ordering::SeqCst)
    }

    /// Most events one receiving channel of this environment ever held (never above `credits`).
    pub fn max_buffered_per_channel(&self) -> usize {
        self.inner.max_buffered.load(Ordering::Relaxed)
    }

    /// Connection failures so far, each naming its peer.
    pub fn errors(&self) -> Vec<NetworkError> {
        lock(&self.inner.errors).clone()
    }

    /// Closes every connection: channels on them disconnect.
    pub fn shutdown(&self) {
        {
            let mut sockets = lock(&self.inner.sockets);
            if self.inner.stopped.swap(true, Ordering::SeqCst) {
                return;
            }
            for (_, stream) in sockets.drain() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        // Wake the acceptor so that it sees the stop flag.
        let _ = TcpStream::connect_timeout(&self.inner.local_addr, Duration::from_secs(1));
        let mut inbound = lock(&self.inner.inbound);
        inbound.registered.clear();
        inbound.pending.clear();
    }
}

impl Drop for NetworkEnvironment {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_tcp_probe_is_not_an_error_but_a_bad_handshake_is() {
        let env = NetworkEnvironment::start("127.0.0.1:0".parse().unwrap(), NetworkConfig::default()).unwrap();
        // The kubelet's TCP probe: connect, close without a byte.
        drop(TcpStream::connect(env.local_addr()).unwrap());
        let mut http = TcpStream::connect(env.local_addr()).unwrap();
        http.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        drop(http);
        let deadline = Instant::now() + Duration::from_secs(30);
        while env.errors().is_empty() || env.incoming_connections() > 0 {
            assert!(Instant::now() < deadline, "the bad handshake was never reported");
            std::thread::sleep(Duration::from_millis(5));
        }
        let errors: Vec<_> = env.errors().into_iter().map(|e| e.message).collect();
        assert_eq!(errors, vec!["not a Rheo data connection (bad handshake)".to_string()]);
    }
}
