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

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, select, unbounded};
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

// ---------------------------------------------------------------------------------------------
// Receiving side.

struct Inbound {
    /// Channels a consumer waits on whose sender has not opened them yet.
    registered: HashMap<ChannelId, Box<dyn InboundChannel>>,
    /// Channels a sender opened before their consumer registered.
    pending: HashMap<ChannelId, Arc<InConn>>,
}

/// An accepted connection, as seen by `remote_receiver`.
struct InConn {
    writer: Arc<FrameWriter>,
    /// Hands a channel registered late to the connection's reader thread.
    adopt: Sender<(ChannelId, Box<dyn InboundChannel>)>,
}

/// A receiving channel with its element type erased, owned by a connection's reader.
trait InboundChannel: Send {
    /// The channel is bound to the connection `writer` writes to (for credits).
    fn bind(&mut self, writer: Arc<FrameWriter>);
    /// Decodes and queues one event; `Ok(true)` when it was `End`.
    fn push(&mut self, kind: u8, payload: &[u8]) -> Result<bool, String>;
}

enum Delivery<T> {
    Bind(Arc<FrameWriter>),
    Event(Event<T>),
}

struct TypedInbound<T> {
    queue: Sender<Delivery<T>>,
    buffered: Arc<AtomicUsize>,
    credits: usize,
    inner: Arc<Inner>,
}

impl<T: WireData> InboundChannel for TypedInbound<T> {
    fn bind(&mut self, writer: Arc<FrameWriter>) {
        let _ = self.queue.send(Delivery::Bind(writer));
    }

    fn push(&mut self, kind: u8, payload: &[u8]) -> Result<bool, String> {
        let event = frame::decode_event::<T>(kind, payload)?;
        let end = matches!(event, Event::End);
        let buffered = self.buffered.fetch_add(1, Ordering::SeqCst) + 1;
        if buffered > self.credits {
            return Err(format!("sender exceeded its {} credits", self.credits));
        }
        self.inner.max_buffered.fetch_max(buffered, Ordering::Relaxed);
        if self.queue.send(Delivery::Event(event)).is_err() {
            // The consumer is gone (its delivery thread sent CANCEL): drop the event.
            self.buffered.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(end)
    }
}

/// Moves the events of one channel to its consumer, returning one credit per event taken.
fn deliver<T>(id: ChannelId, queue: Receiver<Delivery<T>>, out: Sender<Event<T>>, buffered: Arc<AtomicUsize>) {
    let mut writer: Option<Arc<FrameWriter>> = None;
    for item in queue {
        match item {
            Delivery::Bind(w) => writer = Some(w),
            Delivery::Event(event) => {
                // A rendezvous: returns once the consumer has taken the event.
                let gone = out.send(event).is_err();
                buffered.fetch_sub(1, Ordering::SeqCst);
                let kind = if gone { frame::CANCEL } else { frame::CREDIT };
                if let Some(w) = &writer {
                    let _ = w.control(kind, &id, (!gone).then_some(1));
                }
                if gone {
                    return;
                }
            }
        }
    }
}

/// Serves one accepted connection: reads frames and routes them to their channels.
fn serve_incoming(
    inner: &Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    conn_slot: &mut Option<Arc<InConn>>,
) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone().map_err(|e| e.to_string())?);
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(|e| format!("no handshake: {e}"))?;
    if &magic != frame::MAGIC {
        return Err("not a Rheo data connection (bad handshake)".into());
    }
    let writer = Arc::new(FrameWriter { peer, stream: Mutex::new(stream) });
    let (adopt_tx, adopt_rx) = unbounded();
    let conn = Arc::new(InConn { writer: writer.clone(), adopt: adopt_tx });
    *conn_slot = Some(conn.clone());
    let credits = inner.config.credits;
    let mut local: HashMap<ChannelId, Box<dyn InboundChannel>> = HashMap::new();
    let mut body = Vec::new();
    while frame::read_frame(&mut reader, &mut body)? {
        let (kind, id, payload) = frame::parse(&body)?;
        match kind {
            frame::OPEN => {
                let mut inbound = lock(&inner.inbound);
                if let Some(mut channel) = inbound.registered.remove(&id) {
                    drop(inbound);
                    channel.bind(writer.clone());
                    local.insert(id, channel);
                    writer.control(frame::CREDIT, &id, Some(credits)).map_err(|e| e.message)?;
                } else if inbound.pending.insert(id, conn.clone()).is_some() || local.contains_key(&id) {
                    return Err(format!("channel {id:?} opened twice"));
                }
            }
            frame::CLOSE => {
                // The writer went away without `End`: the consumer sees its upstream gone.
                local.remove(&id);
                lock(&inner.inbound).pending.remove(&id);
            }
            kind if frame::is_event(kind) => {
                if !local.contains_key(&id) {
                    local.extend(adopt_rx.try_iter());
                }
                let channel = local.get_mut(&id).ok_or_else(|| format!("event for channel {id:?} without credit"))?;
                if channel.push(kind, payload).map_err(|e| format!("channel {id:?}: {e}"))? {
                    local.remove(&id);
                }
            }
            other => return Err(format!("unknown frame kind {other}")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sending side.

/// A connection this process opened to a peer.
struct OutConn {
    writer: Arc<FrameWriter>,
    /// Where the credits of each open channel go.
    credits: Mutex<HashMap<ChannelId, Sender<u32>>>,
    /// Never sent on; disconnected when the connection ends, which wakes every pump.
    dead_tx: Mutex<Option<Sender<()>>>,
    dead_rx: Receiver<()>,
    alive: AtomicBool,
}

/// Reads the credits the peer returns until the connection ends.
fn read_credits(conn: &OutConn, stream: TcpStream) -> Result<(), String> {
    let mut reader = BufReader::new(stream);
    let mut body = Vec::new();
    while frame::read_frame(&mut reader, &mut body)? {
        let (kind, id, payload) = frame::parse(&body)?;
        match kind {
            frame::CREDIT => {
                let n: [u8; 4] = payload.try_into().map_err(|_| "malformed credit frame".to_string())?;
                // Credits for a channel that already ended are dropped.
                if let Some(credits) = lock(&conn.credits).get(&id) {
                    let _ = credits.send(u32::from_le_bytes(n));
                }
            }
            frame::CANCEL => {
                lock(&conn.credits).remove(&id);
            }
            other => return Err(format!("unexpected frame kind {other} from a receiver")),
        }
    }
    Ok(())
}

/// Sends the events of one channel, each when a credit allows it.
fn pump<T: Serialize>(
    inner: Arc<Inner>,
    conn: Arc<OutConn>,
    id: ChannelId,
    rx: Receiver<Event<T>>,
    credit_rx: Receiver<u32>,
) {
    let dead = conn.dead_rx.clone();
    let mut available: u64 = 0;
    let mut buf = Vec::with_capacity(1 << 16);
    loop {
        let event = select! {
            recv(rx) -> event => match event {
                Ok(event) => event,
                Err(_) => {
                    // The writer went away without `End`.
                    let _ = conn.writer.control(frame::CLOSE, &id, None);
                    break;
                }
            },
            recv(dead) -> _ => break,
        };
        available += credit_rx.try_iter().map(u64::from).sum::<u64>();
        while available == 0 {
            select! {
                recv(credit_rx) -> n => match n {
                    Ok(n) => available += u64::from(n),
                    Err(_) => return, // cancelled by the receiver, or the connection ended
                },
                recv(dead) -> _ => return,
            }
        }
        available -= 1;
        let end = matches!(event, Event::End);
        if let Err(e) = frame::encode_event(&mut buf, &id, &event) {
            inner.error(conn.writer.peer, format!("channel {id:?}: cannot encode an event: {e}"));
            break;
        }
        if conn.writer.write(&buf).is_err() || end {
            break;
        }
    }
    lock(&conn.credits).remove(&id);
}

// ---------------------------------------------------------------------------------------------

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

fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
    for stream in listener.incoming() {
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let Ok(peer) = stream.peer_addr() else { continue };
        let _ = stream.set_nodelay(true);
        let Some(key) = inner.track(&stream) else { return };
        let inner = inner.clone();
        let spawned = std::thread::Builder::new().name("rheo-net-reader".into()).spawn(move || {
            inner.incoming_open.fetch_add(1, Ordering::SeqCst);
            let mut conn = None;
            if let Err(message) = serve_incoming(&inner, stream, peer, &mut conn) {
                inner.error(peer, message);
            }
            if let Some(conn) = conn {
                lock(&inner.inbound).pending.retain(|_, c| !Arc::ptr_eq(c, &conn));
            }
            inner.untrack(key);
            inner.incoming_open.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            tracing::warn!(%peer, "cannot start a thread for a data connection");
        }
    }
}
