//! Backpressure across a TCP exchange: a job planned for two "processes" (two network
//! environments on 127.0.0.1, each building only its own subtasks, as two TaskManagers do)
//! with a slow sink on the far side. The source must slow down to the sink's pace, with the
//! records in flight bounded by the buffers on both sides of the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rheo::prelude::*;
use rheo::runtime::exchange::{BATCH_SIZE, CHANNEL_CAPACITY};
use rheo::runtime::graph::plan::{ExecutionPlan, Remote};
use rheo::runtime::task::{JobShared, TaskOutcome};
use rheo_network::{NetworkConfig, NetworkEnvironment};

use crate::slow_sink::{Counter, SlowSink};

const CREDITS: u32 = 4;

#[test]
fn a_slow_sink_behind_tcp_slows_the_source_with_bounded_buffers() {
    let total = 200_000;
    let config = NetworkConfig { credits: CREDITS, sender_capacity: 1 };
    let nets: Vec<NetworkEnvironment> =
        (0..2).map(|_| NetworkEnvironment::start("127.0.0.1:0".parse().unwrap(), config).unwrap()).collect();
    // Slot 0 (the source and sink subtask 0) in the first process, slot 1 (sink 1) in the second.
    let slots: Vec<_> = nets.iter().map(|n| n.local_addr()).collect();
    let received = Arc::new(AtomicU64::new(0));
    let max_in_flight = Arc::new(AtomicU64::new(0));
    let job = Arc::new(JobShared::default());
    let mut threads = Vec::new();
    for net in &nets {
        // Each process builds the same graph and runs only its own subtasks.
        let mut env = StreamEnv::new(Configuration::new());
        env.set_parallelism(2);
        let (r, m) = (received.clone(), max_in_flight.clone());
        env.add_non_parallel_source("counter", move |_| Counter { next: 0, end: total }).rebalance().add_sink(
            "slow",
            move |ctx| SlowSink { received: r.clone(), max_in_flight: m.clone(), job: ctx.info.job.clone() },
        );
        let settings = env.plan_settings().unwrap();
        let graph = std::mem::take(&mut *env.graph());
        let plan = ExecutionPlan::new(&graph, &settings).unwrap();
        let remote = Remote { net, slots: &slots, me: net.local_addr(), attempt_key: [3; 16] };
        let counters: Vec<_> = plan.heads.iter().map(|_| Arc::default()).collect();
        let config = Arc::new(Configuration::new());
        let tasks =
            plan.build_placed_tasks(&graph, &settings, config, job.clone(), None, &counters, Some(&remote)).unwrap();
        assert!(!tasks.is_empty(), "every process runs a subtask");
        for (_, task) in tasks {
            threads.push(std::thread::spawn(move || task.run()));
        }
    }
    for thread in threads {
        let outcome = thread.join().unwrap();
        assert!(matches!(outcome, TaskOutcome::Finished), "{outcome:?}");
    }
    assert_eq!(received.load(Ordering::Relaxed), total, "every record arrived once");
    // In flight at most, per channel: the writer's batch, the local channel's batches or, across
    // TCP, the sender's queue, the batch being written and the receiver's credits; plus the
    // source's batch.
    let local = (CHANNEL_CAPACITY + 1) * BATCH_SIZE;
    let remote = (1 + 1 + CREDITS as usize + 1) * BATCH_SIZE;
    let bound = local + remote + BATCH_SIZE;
    let seen = max_in_flight.load(Ordering::Relaxed);
    eprintln!("at most {seen} records in flight (bound {bound})");
    assert!(seen <= bound as u64, "{seen} records in flight, bound {bound}");
    assert!(seen >= BATCH_SIZE as u64, "the source never ran ahead ({seen} in flight): the check is vacuous");
    let buffered = nets[1].max_buffered_per_channel();
    assert!(buffered <= CREDITS as usize, "the receiver buffered {buffered} batches on one channel");
    assert!(nets.iter().all(|n| n.errors().is_empty()), "connection errors");
}
