//! The logical job graph: nodes (sources and operators) joined by edges that say how records
//! are partitioned. The typed API builds it; [`plan`] turns it into chained, parallel tasks.
//!
//! Nodes are type-erased so one graph can hold streams of any record type. Each output port
//! keeps a [`StreamType`], a small vtable made while the type was still known, which builds the
//! typed plumbing (fan-outs, channels, input gates) when the job is planned. Types are checked
//! once there, never per record.

pub mod plan;

use std::any::Any;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::exchange::{CHANNEL_CAPACITY, ChannelWriter, Event, InputGate, KeyHashFn, Partitioner};
use crate::output::{Discard, Fanout, Output};
use crate::task::{InputTask, Task, TaskCounters, TaskInfo};
use rheo_network::{ChannelId, NetworkEnvironment, NetworkError};

pub use rheo_types::Data;

pub use crate::output::NodeId;

/// What an operator factory knows when it builds one subtask's operator.
pub struct OperatorContext<'a> {
    pub info: &'a TaskInfo,
    pub node: NodeId,
}

impl OperatorContext<'_> {
    /// This subtask's key-group range.
    pub fn key_groups(&self) -> rheo_types::keygroups::KeyGroupRange {
        rheo_types::keygroups::KeyGroupRange::for_subtask(
            self.info.max_parallelism,
            self.info.parallelism,
            self.info.subtask_index,
        )
    }

    /// Restores keyed entries of this operator for this subtask's key groups (empty when
    /// the run does not restore). A checkpoint that cannot be decoded fails the task.
    pub fn restore_keyed<E: serde::de::DeserializeOwned, K: std::hash::Hash>(
        &self,
        key_of: impl Fn(&E) -> &K,
    ) -> Vec<E> {
        match &self.info.restored {
            None => Vec::new(),
            Some(restored) => restored
                .keyed(self.node, self.key_groups(), self.info.max_parallelism, key_of)
                .unwrap_or_else(|e| panic!("{}: {e}", self.info.task_name)),
        }
    }

    /// This subtask's keyed entries of the change files of this operator (incremental
    /// checkpoints), in the order they apply; then [`restore_keyed_full`](Self::restore_keyed_full)
    /// streams those of the full snapshots.
    pub fn restore_keyed_changes<E: serde::de::DeserializeOwned, K: std::hash::Hash>(
        &self,
        key_of: impl Fn(&E) -> &K,
    ) -> Vec<E> {
        match &self.info.restored {
            None => Vec::new(),
            Some(restored) => restored
                .keyed_changes(self.node, self.key_groups(), self.info.max_parallelism, key_of)
                .unwrap_or_else(|e| panic!("{}: {e}", self.info.task_name)),
        }
    }

    /// Calls `visit` with each of this subtask's keyed entries of the full snapshots of this
    /// operator, decoded one at a time.
    pub fn restore_keyed_full<E: serde::de::DeserializeOwned, K: std::hash::Hash>(
        &self,
        key_of: impl Fn(&E) -> &K,
        visit: impl FnMut(E),
    ) {
        if let Some(restored) = &self.info.restored {
            restored
                .for_each_keyed_full(self.node, self.key_groups(), self.info.max_parallelism, key_of, visit)
                .unwrap_or_else(|e| panic!("{}: {e}", self.info.task_name));
        }
    }

    /// Every old subtask's non-keyed state of this operator (union redistribution), for
    /// sources that rescale by skipping what any old subtask already emitted.
    pub fn restore_operator_all<E: serde::de::DeserializeOwned>(&self) -> Vec<E> {
        match &self.info.restored {
            None => Vec::new(),
            Some(restored) => {
                restored.operator(self.node, 0, 1).unwrap_or_else(|e| panic!("{}: {e}", self.info.task_name))
            }
        }
    }

    /// Restores this subtask's non-keyed state entries of this operator.
    pub fn restore_operator<E: serde::de::DeserializeOwned>(&self) -> Vec<E> {
        match &self.info.restored {
            None => Vec::new(),
            Some(restored) => restored
                .operator(self.node, self.info.subtask_index, self.info.parallelism)
                .unwrap_or_else(|e| panic!("{}: {e}", self.info.task_name)),
        }
    }
}

/// An output of some type, boxed as `Box<dyn Output<T>>` inside `Box<dyn Any>`.
pub type ErasedOutput = Box<dyn Any>;

pub fn erase<T: 'static>(out: Box<dyn Output<T>>) -> ErasedOutput {
    Box::new(out)
}

pub fn unerase<T: 'static>(out: ErasedOutput) -> Box<dyn Output<T>> {
    *out.downcast::<Box<dyn Output<T>>>().expect("job graph joins streams of different record types")
}

/// Builds a source task from the outputs of its ports.
pub type SourceFactory = Arc<dyn Fn(&OperatorContext, Vec<ErasedOutput>) -> Box<dyn Task> + Send + Sync>;
/// Builds an operator (as the input side of a chain) from the outputs of its ports.
pub type OperatorFactory = Arc<dyn Fn(&OperatorContext, Vec<ErasedOutput>) -> ErasedOutput + Send + Sync>;

pub enum NodeKind {
    Source(SourceFactory),
    Operator(OperatorFactory),
}

/// How records travel along an edge.
#[derive(Clone)]
pub enum Partitioning {
    /// To the subtask with the same index; chained when parallelism matches.
    Forward,
    /// Round-robin to all subtasks.
    Rebalance,
    /// By key: a [`KeyHashFn`] of the upstream record type, erased.
    Hash(Arc<dyn Any + Send + Sync>),
}

pub struct Edge {
    pub from: NodeId,
    pub port: usize,
    pub partitioning: Partitioning,
}

pub struct Node {
    pub name: String,
    /// `None`: the job's default parallelism.
    pub parallelism: Option<usize>,
    /// A source that cannot run in parallel (e.g. one socket): always parallelism 1.
    pub non_parallel: bool,
    pub kind: NodeKind,
    pub inputs: Vec<Edge>,
    /// The record type of each output port; port 0 is the main output.
    pub ports: Vec<Arc<dyn StreamType>>,
}

/// Who is about to write a job's outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputClaim<'a> {
    /// The job that starts.
    pub job_id: &'a str,
    /// The job whose checkpoint or savepoint it starts from, if any: the new job continues
    /// that job's output (an upgrade, a resume or a rollback deploys a new job id from it).
    pub restored_from: Option<&'a str>,
}

/// Checks one output of a job before it starts (given who claims it and the configuration):
/// that it can be written and belongs to this job. The error says what is wrong and what to do.
pub type OutputCheck = Arc<dyn Fn(&OutputClaim<'_>, &rheo_config::Configuration) -> Result<(), String> + Send + Sync>;

/// A logical job graph under construction.
#[derive(Default)]
pub struct JobGraph {
    pub nodes: Vec<Node>,
    /// Run by the job driver before the first attempt.
    pub output_checks: Vec<OutputCheck>,
}

impl JobGraph {
    pub fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

/// The typed plumbing of one record type, kept behind a trait object.
pub trait StreamType: Send + Sync {
    /// The record type, to check side outputs when the job is defined.
    fn record_type(&self) -> std::any::TypeId;
    fn discard(&self) -> ErasedOutput;
    fn fanout(&self, outs: Vec<ErasedOutput>) -> ErasedOutput;
    /// A bounded channel: `(Sender<Event<T>>, Receiver<Event<T>>)`, erased.
    fn channel(&self) -> (Box<dyn Any>, Box<dyn Any>);
    /// A writer into `senders`, charging the time it blocks on full channels to `counters`.
    fn writer(
        &self,
        partitioning: &Partitioning,
        max_parallelism: usize,
        senders: Vec<Box<dyn Any>>,
        counters: Arc<TaskCounters>,
    ) -> ErasedOutput;
    fn input_task(&self, info: TaskInfo, receivers: Vec<Box<dyn Any>>, chain: ErasedOutput) -> Box<dyn Task>;
    /// The sending end of a channel to another process: a `Sender<Event<T>>`, erased.
    fn remote_sender(
        &self,
        net: &NetworkEnvironment,
        peer: SocketAddr,
        id: ChannelId,
    ) -> Result<Box<dyn Any>, NetworkError>;
    /// The receiving end of a channel from another process: a `Receiver<Event<T>>`, erased.
    fn remote_receiver(&self, net: &NetworkEnvironment, id: ChannelId) -> Result<Box<dyn Any>, NetworkError>;
}

pub struct TypeOf<T>(PhantomData<fn() -> T>);

impl<T: Data> TypeOf<T> {
    pub fn arc() -> Arc<dyn StreamType> {
        Arc::new(TypeOf::<T>(PhantomData))
    }
}

impl<T: Data> StreamType for TypeOf<T> {
    fn record_type(&self) -> std::any::TypeId {
        std::any::TypeId::of::<T>()
    }

    fn discard(&self) -> ErasedOutput {
        erase::<T>(Box::new(Discard))
    }

    fn fanout(&self, outs: Vec<ErasedOutput>) -> ErasedOutput {
        erase::<T>(Box::new(Fanout { outs: outs.into_iter().map(unerase::<T>).collect() }))
    }

    fn channel(&self) -> (Box<dyn Any>, Box<dyn Any>) {
        let (tx, rx) = crossbeam_channel::bounded::<Event<T>>(CHANNEL_CAPACITY);
        (Box::new(tx), Box::new(rx))
    }

    fn writer(
        &self,
        partitioning: &Partitioning,
        max_parallelism: usize,
        senders: Vec<Box<dyn Any>>,
        counters: Arc<TaskCounters>,
    ) -> ErasedOutput {
        let partitioner = match partitioning {
            Partitioning::Forward => Partitioner::Forward,
            Partitioning::Rebalance => Partitioner::Rebalance { next: 0 },
            Partitioning::Hash(key_hash) => Partitioner::Hash {
                key_hash: key_hash.downcast_ref::<KeyHashFn<T>>().expect("key hash of another record type").clone(),
                max_parallelism,
            },
        };
        let senders = senders
            .into_iter()
            .map(|s| *s.downcast::<crossbeam_channel::Sender<Event<T>>>().expect("channel type"))
            .collect();
        erase::<T>(Box::new(ChannelWriter::new(partitioner, senders).with_counters(counters)))
    }

    fn input_task(&self, info: TaskInfo, receivers: Vec<Box<dyn Any>>, chain: ErasedOutput) -> Box<dyn Task> {
        let receivers = receivers
            .into_iter()
            .map(|r| *r.downcast::<crossbeam_channel::Receiver<Event<T>>>().expect("channel type"))
            .collect();
        Box::new(InputTask { info, gate: InputGate::new(receivers), chain: unerase::<T>(chain), link: None })
    }

    fn remote_sender(
        &self,
        net: &NetworkEnvironment,
        peer: SocketAddr,
        id: ChannelId,
    ) -> Result<Box<dyn Any>, NetworkError> {
        Ok(Box::new(net.remote_sender::<T>(peer, id)?))
    }

    fn remote_receiver(&self, net: &NetworkEnvironment, id: ChannelId) -> Result<Box<dyn Any>, NetworkError> {
        Ok(Box::new(net.remote_receiver::<T>(id)?))
    }
}
