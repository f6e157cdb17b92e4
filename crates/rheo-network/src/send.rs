//! The sending side: one outgoing connection per peer, a reader of the credits it returns, and
//! per-channel pumps that send an event only with a credit in hand.

use std::collections::HashMap;
use std::io::BufReader;
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender, select};
use serde::Serialize;

use crate::{ChannelId, FrameWriter, Inner, frame, lock};
use rheo_types::Event;

pub(crate) struct OutConn {
    pub(crate) writer: Arc<FrameWriter>,
    /// Where the credits of each open channel go.
    pub(crate) credits: Mutex<HashMap<ChannelId, Sender<u32>>>,
    /// Never sent on; disconnected when the connection ends, which wakes every pump.
    pub(crate) dead_tx: Mutex<Option<Sender<()>>>,
    pub(crate) dead_rx: Receiver<()>,
    pub(crate) alive: AtomicBool,
}

/// Reads the credits the peer returns until the connection ends.
pub(crate) fn read_credits(conn: &OutConn, stream: TcpStream) -> Result<(), String> {
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
pub(crate) fn pump<T: Serialize>(
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
