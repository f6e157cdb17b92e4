//! The receiving side: accepted connections, their reader threads, and per-channel delivery
//! threads that hand events to the consumer and return credits.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, unbounded};

use crate::{ChannelId, FrameWriter, Inner, WireData, frame, lock};
use rheo_types::Event;

pub(crate) struct Inbound {
    /// Channels a consumer waits on whose sender has not opened them yet.
    pub(crate) registered: HashMap<ChannelId, Box<dyn InboundChannel>>,
    /// Channels a sender opened before their consumer registered.
    pub(crate) pending: HashMap<ChannelId, Arc<InConn>>,
}

/// An accepted connection, as seen by `remote_receiver`.
pub(crate) struct InConn {
    pub(crate) writer: Arc<FrameWriter>,
    /// Hands a channel registered late to the connection's reader thread.
    pub(crate) adopt: Sender<(ChannelId, Box<dyn InboundChannel>)>,
}

/// A receiving channel with its element type erased, owned by a connection's reader.
pub(crate) trait InboundChannel: Send {
    /// The channel is bound to the connection `writer` writes to (for credits).
    fn bind(&mut self, writer: Arc<FrameWriter>);
    /// Decodes and queues one event; `Ok(true)` when it was `End`.
    fn push(&mut self, kind: u8, payload: &[u8]) -> Result<bool, String>;
}

pub(crate) enum Delivery<T> {
    Bind(Arc<FrameWriter>),
    Event(Event<T>),
}

pub(crate) struct TypedInbound<T> {
    pub(crate) queue: Sender<Delivery<T>>,
    pub(crate) buffered: Arc<AtomicUsize>,
    pub(crate) credits: usize,
    pub(crate) inner: Arc<Inner>,
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
pub(crate) fn deliver<T>(
    id: ChannelId,
    queue: Receiver<Delivery<T>>,
    out: Sender<Event<T>>,
    buffered: Arc<AtomicUsize>,
) {
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
pub(crate) fn serve_incoming(
    inner: &Arc<Inner>,
    stream: TcpStream,
    peer: SocketAddr,
    conn_slot: &mut Option<Arc<InConn>>,
) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(1 << 16, stream.try_clone().map_err(|e| e.to_string())?);
    // A connection closed before its first byte is a TCP probe (the kubelet's liveness and
    // readiness checks, a port scan), not a peer: nothing to serve and nothing to report.
    if reader.fill_buf().map_err(|e| format!("no handshake: {e}"))?.is_empty() {
        tracing::debug!(%peer, "connection closed before a handshake (a TCP probe)");
        return Ok(());
    }
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

pub(crate) fn accept_loop(inner: Arc<Inner>, listener: TcpListener) {
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
