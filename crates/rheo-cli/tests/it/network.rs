//! The TCP data exchange: two network environments in one process over real 127.0.0.1 sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rheo::runtime::exchange::Event;
use rheo::runtime::output::CheckpointBarrier;
use rheo_network::{ChannelId, NetworkConfig, NetworkEnvironment};

fn env(credits: u32) -> NetworkEnvironment {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    NetworkEnvironment::start(addr, NetworkConfig { credits, sender_capacity: 1 }).unwrap()
}

fn id(edge: u32, upstream: u32, downstream: u32) -> ChannelId {
    ChannelId { job: [7; 16], edge, upstream, downstream }
}

/// An event in a comparable form.
#[derive(Debug, PartialEq)]
enum Seen {
    Records(Vec<(u64, i64)>),
    Watermark(i64),
    Idle(bool),
    Barrier(u64, i64),
    EndOfData,
    End,
}

fn seen(event: Event<u64>) -> Seen {
    match event {
        Event::Records(r) => Seen::Records(r),
        Event::Watermark(w) => Seen::Watermark(w),
        Event::Idle(i) => Seen::Idle(i),
        Event::Barrier(b) => Seen::Barrier(b.id, b.timestamp),
        Event::EndOfData => Seen::EndOfData,
        Event::End => Seen::End,
    }
}

/// Waits for `condition`, failing after `within`.
fn await_true(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn batch(channel: u64, i: u64) -> Vec<(u64, i64)> {
    (0..8).map(|k| (channel * 1_000_000 + i * 8 + k, i as i64)).collect()
}

fn script(channel: u64) -> Vec<Seen> {
    let mut events = Vec::new();
    for i in 0..50 {
        events.push(Seen::Records(batch(channel, i)));
        if i == 20 {
            events.push(Seen::Barrier(1, 99));
        }
        if i % 10 == 9 {
            events.push(Seen::Watermark(i as i64));
        }
    }
    events.extend([Seen::Idle(true), Seen::Idle(false), Seen::EndOfData, Seen::End]);
    events
}

fn to_event(seen: &Seen) -> Event<u64> {
    match seen {
        Seen::Records(r) => Event::Records(r.clone()),
        Seen::Watermark(w) => Event::Watermark(*w),
        Seen::Idle(i) => Event::Idle(*i),
        Seen::Barrier(id, timestamp) => {
            Event::Barrier(CheckpointBarrier { id: *id, timestamp: *timestamp, incremental: true, full: false })
        }
        Seen::EndOfData => Event::EndOfData,
        Seen::End => Event::End,
    }
}

#[test]
fn many_channels_share_one_connection_and_keep_their_order() {
    let (sending, receiving) = (env(4), env(4));
    let channels = 16u32;
    // Half the consumers register before their sender opens the channel, half after.
    let mut receivers: Vec<(u32, Receiver<Event<u64>>)> = Vec::new();
    for c in 0..channels / 2 {
        receivers.push((c, receiving.remote_receiver(id(3, c, c % 4)).unwrap()));
    }
    let senders: Vec<(u32, Sender<Event<u64>>)> =
        (0..channels).map(|c| (c, sending.remote_sender(receiving.local_addr(), id(3, c, c % 4)).unwrap())).collect();
    for c in channels / 2..channels {
        receivers.push((c, receiving.remote_receiver(id(3, c, c % 4)).unwrap()));
    }
    let writers: Vec<_> = senders
        .into_iter()
        .map(|(c, tx)| {
            std::thread::spawn(move || {
                for event in script(u64::from(c)) {
                    tx.send(to_event(&event)).unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = receivers
        .into_iter()
        .map(|(c, rx)| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while let Ok(event) = rx.recv_timeout(Duration::from_secs(20)) {
                    let end = matches!(event, Event::End);
                    got.push(seen(event));
                    if end {
                        break;
                    }
                }
                assert_eq!(got, script(u64::from(c)), "channel {c}");
            })
        })
        .collect();
    for t in writers.into_iter().chain(readers) {
        t.join().unwrap();
    }
    assert_eq!(sending.outgoing_connections(), 1);
    assert_eq!(sending.incoming_connections(), 0);
    assert_eq!(receiving.incoming_connections(), 1);
    assert_eq!(receiving.outgoing_connections(), 0);
    assert!(receiving.max_buffered_per_channel() <= 4);
    assert!(sending.errors().is_empty() && receiving.errors().is_empty());
}

#[test]
fn a_stalled_channel_blocks_only_its_own_sender() {
    let credits = 3u32;
    let (sending, receiving) = (env(credits), env(credits));
    let slow_rx = receiving.remote_receiver::<u64>(id(1, 0, 0)).unwrap();
    let fast_rx = receiving.remote_receiver::<u64>(id(1, 1, 0)).unwrap();
    let slow_tx = sending.remote_sender::<u64>(receiving.local_addr(), id(1, 0, 0)).unwrap();
    let fast_tx = sending.remote_sender::<u64>(receiving.local_addr(), id(1, 1, 0)).unwrap();

    let sent = Arc::new(AtomicUsize::new(0));
    let total = 100u64;
    let counter = sent.clone();
    let slow_writer = std::thread::spawn(move || {
        for i in 0..total {
            slow_tx.send(Event::Records(batch(0, i))).unwrap();
            counter.fetch_add(1, Ordering::SeqCst);
        }
        slow_tx.send(Event::End).unwrap();
    });
    // Nobody reads the slow channel. What it can hold: `credits` on the receiving side, one in
    // the pump waiting for a credit, `sender_capacity` (1) in the writer's channel.
    let bound = credits as usize + 1 + 1;
    await_true(Duration::from_secs(10), "the slow sender to fill its buffers", || sent.load(Ordering::SeqCst) >= bound);

    // Meanwhile the fast channel on the same connection flows end to end.
    let fast_writer = std::thread::spawn(move || {
        for i in 0..500 {
            fast_tx.send(Event::Records(batch(1, i))).unwrap();
        }
        fast_tx.send(Event::End).unwrap();
    });
    for i in 0..500 {
        let event = fast_rx.recv_timeout(Duration::from_secs(10)).expect("fast channel stalled");
        assert_eq!(seen(event), Seen::Records(batch(1, i)));
    }
    assert_eq!(seen(fast_rx.recv_timeout(Duration::from_secs(10)).unwrap()), Seen::End);
    fast_writer.join().unwrap();

    // Progress cannot be awaited when the claim is that there is none: by now the fast channel
    // moved 500 batches, and the slow sender is still held at its bound.
    assert_eq!(sent.load(Ordering::SeqCst), bound, "the slow sender went past its credits");
    assert!(receiving.max_buffered_per_channel() <= credits as usize);

    // Reading the slow channel releases its sender; everything arrives in order.
    for i in 0..total {
        let event = slow_rx.recv_timeout(Duration::from_secs(10)).expect("slow channel stalled");
        assert_eq!(seen(event), Seen::Records(batch(0, i)));
    }
    assert_eq!(seen(slow_rx.recv_timeout(Duration::from_secs(10)).unwrap()), Seen::End);
    slow_writer.join().unwrap();
    assert_eq!(sending.outgoing_connections(), 1);
    assert!(receiving.max_buffered_per_channel() <= credits as usize);
}

#[test]
fn buffers_stay_within_credits_under_a_slow_consumer() {
    let credits = 2u32;
    let (sending, receiving) = (env(credits), env(credits));
    let channels = 8u32;
    let mut threads = Vec::new();
    for c in 0..channels {
        let rx = receiving.remote_receiver::<u64>(id(2, c, 0)).unwrap();
        let tx = sending.remote_sender::<u64>(receiving.local_addr(), id(2, c, 0)).unwrap();
        threads.push(std::thread::spawn(move || {
            for i in 0..200 {
                tx.send(Event::Records(batch(u64::from(c), i))).unwrap();
            }
            tx.send(Event::End).unwrap();
        }));
        threads.push(std::thread::spawn(move || {
            let mut n = 0;
            loop {
                match seen(rx.recv_timeout(Duration::from_secs(10)).unwrap()) {
                    Seen::End => break,
                    _ => n += 1,
                }
                if n % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(1)); // a slow consumer
                }
            }
            assert_eq!(n, 200);
        }));
    }
    for t in threads {
        t.join().unwrap();
    }
    let max = receiving.max_buffered_per_channel();
    assert!(max >= 1 && max <= credits as usize, "buffered {max} events with {credits} credits");
    assert!(receiving.errors().is_empty(), "{:?}", receiving.errors());
}

#[test]
fn a_lost_connection_disconnects_the_sender() {
    let (sending, receiving) = (env(2), env(2));
    let _rx = receiving.remote_receiver::<u64>(id(4, 0, 0)).unwrap();
    let tx = sending.remote_sender::<u64>(receiving.local_addr(), id(4, 0, 0)).unwrap();
    await_true(Duration::from_secs(10), "the connection", || receiving.incoming_connections() == 1);
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let writer = std::thread::spawn(move || {
        // Nobody reads: the writer blocks on credits until the connection goes away.
        let mut i = 0;
        while tx.send(Event::Records(batch(0, i))).is_ok() {
            i += 1;
        }
        done_tx.send(i).unwrap();
    });
    let started = Instant::now();
    drop(receiving);
    let sent = done_rx.recv_timeout(Duration::from_secs(10)).expect("the sender never saw the connection drop");
    assert!(sent <= 2 + 1 + 1, "sent {sent} batches with 2 credits");
    assert!(started.elapsed() < Duration::from_secs(10));
    writer.join().unwrap();
    await_true(Duration::from_secs(10), "the connection to close", || sending.outgoing_connections() == 0);
}

#[test]
fn a_dropped_consumer_disconnects_the_sender() {
    let (sending, receiving) = (env(2), env(2));
    let rx = receiving.remote_receiver::<u64>(id(5, 0, 0)).unwrap();
    let tx = sending.remote_sender::<u64>(receiving.local_addr(), id(5, 0, 0)).unwrap();
    tx.send(Event::Records(batch(0, 0))).unwrap();
    assert_eq!(seen(rx.recv_timeout(Duration::from_secs(10)).unwrap()), Seen::Records(batch(0, 0)));
    drop(rx);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut i = 1;
    while tx.send(Event::Records(batch(0, i))).is_ok() {
        i += 1;
        assert!(Instant::now() < deadline, "the sender never saw the consumer go");
    }
}

#[test]
fn a_sender_gone_without_end_disconnects_the_receiver() {
    let (sending, receiving) = (env(2), env(2));
    let rx = receiving.remote_receiver::<u64>(id(6, 0, 0)).unwrap();
    let tx = sending.remote_sender::<u64>(receiving.local_addr(), id(6, 0, 0)).unwrap();
    tx.send(Event::Watermark(5)).unwrap();
    drop(tx);
    assert_eq!(seen(rx.recv_timeout(Duration::from_secs(10)).unwrap()), Seen::Watermark(5));
    assert!(matches!(rx.recv_timeout(Duration::from_secs(10)), Err(crossbeam_channel::RecvTimeoutError::Disconnected)));
}

#[test]
fn malformed_frames_are_errors_naming_the_peer() {
    use std::io::Write;
    let receiving = env(2);
    let rx = receiving.remote_receiver::<u64>(id(7, 0, 0)).unwrap();
    // A bad handshake.
    let mut stranger = std::net::TcpStream::connect(receiving.local_addr()).unwrap();
    stranger.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let peer = stranger.local_addr().unwrap();
    await_true(Duration::from_secs(10), "the handshake error", || receiving.errors().iter().any(|e| e.peer == peer));
    // A good handshake, then an event for a channel that was never granted credit, then garbage.
    let mut rogue = std::net::TcpStream::connect(receiving.local_addr()).unwrap();
    let mut frame = b"RHEONET2".to_vec();
    frame.extend_from_slice(&33u32.to_le_bytes());
    frame.push(16); // records
    frame.extend_from_slice(&[7; 16]);
    frame.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&[0xff; 4]);
    rogue.write_all(&frame).unwrap();
    let peer = rogue.local_addr().unwrap();
    await_true(Duration::from_secs(10), "the frame error", || receiving.errors().iter().any(|e| e.peer == peer));
    let message = receiving.errors().iter().find(|e| e.peer == peer).unwrap().to_string();
    assert!(message.contains(&peer.to_string()), "{message}");
    // The environment still serves real channels.
    let sending = env(2);
    let tx = sending.remote_sender::<u64>(receiving.local_addr(), id(7, 0, 0)).unwrap();
    tx.send(Event::End).unwrap();
    assert_eq!(seen(rx.recv_timeout(Duration::from_secs(10)).unwrap()), Seen::End);
}

/// Not a benchmark (`make bench` is): prints events/s over one connection for the report.
#[test]
#[ignore]
fn throughput_over_one_connection() {
    let (sending, receiving) = (env(4), env(4));
    let rx = receiving.remote_receiver::<u64>(id(9, 0, 0)).unwrap();
    let tx = sending.remote_sender::<u64>(receiving.local_addr(), id(9, 0, 0)).unwrap();
    let batches = 20_000u64;
    let started = Instant::now();
    let writer = std::thread::spawn(move || {
        for i in 0..batches {
            tx.send(Event::Records((0..1024).map(|k| (i * 1024 + k, k as i64)).collect())).unwrap();
        }
        tx.send(Event::End).unwrap();
    });
    let mut records = 0usize;
    loop {
        match rx.recv().unwrap() {
            Event::Records(r) => records += r.len(),
            Event::End => break,
            _ => {}
        }
    }
    writer.join().unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{records} records in {secs:.2}s: {:.1} M records/s, {:.0} batches/s",
        records as f64 / secs / 1e6,
        batches as f64 / secs
    );
}
