//! Wire format of the data connection between two TaskManagers.
//!
//! A connection starts with [`MAGIC`] from the connecting side. Then both directions carry
//! length-prefixed frames: `[u32 LE length of the rest][u8 kind][channel id: 28 bytes][payload]`.
//! Sender to receiver: `OPEN`, the events of a channel (`RECORDS` .. `END`) and `CLOSE` (the
//! writer went away without `End`). Receiver to sender: `CREDIT` (u32 LE: more batches it has
//! room for) and `CANCEL` (the consumer went away).

use std::io::Read;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::ChannelId;
use rheo_types::Event;
use rheo_types::{CheckpointBarrier, Timestamp};

/// First bytes of every connection: protocol name and version.
pub const MAGIC: &[u8; 8] = b"RHEONET2";
/// Bytes of the channel id in a frame.
pub const ID_LEN: usize = 28;
/// Length prefix, kind and channel id.
pub const HEADER_LEN: usize = 4 + 1 + ID_LEN;
/// Larger frames are refused as malformed instead of allocated.
pub const MAX_FRAME: usize = 256 << 20;

pub const OPEN: u8 = 1;
pub const CREDIT: u8 = 2;
pub const CLOSE: u8 = 3;
pub const CANCEL: u8 = 4;
pub const RECORDS: u8 = 16;
pub const WATERMARK: u8 = 17;
pub const IDLE: u8 = 18;
pub const BARRIER: u8 = 19;
pub const END_OF_DATA: u8 = 20;
pub const END: u8 = 21;

/// Starts a frame in `buf` (cleared): length placeholder, kind and channel id.
pub fn begin(buf: &mut Vec<u8>, kind: u8, id: &ChannelId) {
    buf.clear();
    buf.extend_from_slice(&[0; 4]);
    buf.push(kind);
    buf.extend_from_slice(&id.job);
    buf.extend_from_slice(&id.edge.to_le_bytes());
    buf.extend_from_slice(&id.upstream.to_le_bytes());
    buf.extend_from_slice(&id.downstream.to_le_bytes());
}

/// Writes the length prefix of the frame in `buf`.
pub fn finish(buf: &mut [u8]) {
    let len = (buf.len() - 4) as u32;
    buf[..4].copy_from_slice(&len.to_le_bytes());
}

/// A control frame (no payload, or a u32 payload for credits).
pub fn control(kind: u8, id: &ChannelId, value: Option<u32>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(HEADER_LEN + 4);
    begin(&mut buf, kind, id);
    if let Some(value) = value {
        buf.extend_from_slice(&value.to_le_bytes());
    }
    finish(&mut buf);
    buf
}

/// Encodes one event of channel `id` as a whole frame into `buf` (reused between calls).
pub fn encode_event<T: Serialize>(buf: &mut Vec<u8>, id: &ChannelId, event: &Event<T>) -> Result<(), postcard::Error> {
    match event {
        Event::Records(records) => {
            begin(buf, RECORDS, id);
            let taken = std::mem::take(buf);
            *buf = postcard::to_extend(records, taken)?;
        }
        Event::Watermark(watermark) => {
            begin(buf, WATERMARK, id);
            buf.extend_from_slice(&watermark.to_le_bytes());
        }
        Event::Idle(idle) => {
            begin(buf, IDLE, id);
            buf.push(u8::from(*idle));
        }
        Event::Barrier(barrier) => {
            begin(buf, BARRIER, id);
            buf.extend_from_slice(&barrier.id.to_le_bytes());
            buf.extend_from_slice(&barrier.timestamp.to_le_bytes());
            buf.push(u8::from(barrier.incremental) | u8::from(barrier.full) << 1);
        }
        Event::EndOfData => begin(buf, END_OF_DATA, id),
        Event::End => begin(buf, END, id),
    }
    finish(buf);
    Ok(())
}

/// Whether `kind` is one of the event kinds.
pub fn is_event(kind: u8) -> bool {
    (RECORDS..=END).contains(&kind)
}

fn fixed<const N: usize>(payload: &[u8], what: &str) -> Result<[u8; N], String> {
    payload.try_into().map_err(|_| format!("{what} frame with {} payload bytes, expected {N}", payload.len()))
}

/// Decodes the payload of an event frame.
pub fn decode_event<T: DeserializeOwned>(kind: u8, payload: &[u8]) -> Result<Event<T>, String> {
    Ok(match kind {
        RECORDS => Event::Records(
            postcard::from_bytes::<Vec<(T, Timestamp)>>(payload).map_err(|e| format!("undecodable records: {e}"))?,
        ),
        WATERMARK => Event::Watermark(i64::from_le_bytes(fixed(payload, "watermark")?)),
        IDLE => match payload {
            [0] => Event::Idle(false),
            [1] => Event::Idle(true),
            _ => return Err("malformed idle frame".into()),
        },
        BARRIER => {
            let bytes: [u8; 17] = fixed(payload, "barrier")?;
            let (id, rest) = bytes.split_at(8);
            let (timestamp, flags) = rest.split_at(8);
            Event::Barrier(CheckpointBarrier {
                id: u64::from_le_bytes(id.try_into().expect("8 bytes")),
                timestamp: i64::from_le_bytes(timestamp.try_into().expect("8 bytes")),
                incremental: flags[0] & 1 != 0,
                full: flags[0] & 2 != 0,
            })
        }
        END_OF_DATA => Event::EndOfData,
        END => Event::End,
        other => return Err(format!("unknown event kind {other}")),
    })
}

/// Splits a frame body (everything after the length prefix) into kind, channel and payload.
pub fn parse(body: &[u8]) -> Result<(u8, ChannelId, &[u8]), String> {
    if body.len() < 1 + ID_LEN {
        return Err(format!("frame of {} bytes is shorter than its header", body.len()));
    }
    let word = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
    let id = ChannelId {
        job: body[1..17].try_into().expect("16 bytes"),
        edge: word(17),
        upstream: word(21),
        downstream: word(25),
    };
    Ok((body[0], id, &body[1 + ID_LEN..]))
}

/// Reads one frame body into `body`. `Ok(false)` at a clean end of stream between frames.
pub fn read_frame(reader: &mut impl Read, body: &mut Vec<u8>) -> Result<bool, String> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(format!("read failed: {e}")),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(1 + ID_LEN..=MAX_FRAME).contains(&len) {
        return Err(format!("malformed frame length {len}"));
    }
    body.resize(len, 0);
    reader.read_exact(body).map_err(|e| format!("connection broke inside a frame: {e}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_barrier_keeps_its_kind_across_the_wire() {
        let id = ChannelId { job: [7; 16], edge: 1, upstream: 2, downstream: 3 };
        for (incremental, full) in [(false, false), (true, false), (true, true), (false, true)] {
            let barrier = CheckpointBarrier { id: 42, timestamp: -5, incremental, full };
            let mut buf = Vec::new();
            encode_event::<u64>(&mut buf, &id, &Event::Barrier(barrier)).unwrap();
            let (kind, decoded_id, payload) = parse(&buf[4..]).unwrap();
            assert_eq!(decoded_id, id);
            match decode_event::<u64>(kind, payload).unwrap() {
                Event::Barrier(decoded) => assert_eq!(decoded, barrier),
                _ => panic!("not a barrier"),
            }
        }
    }
}
