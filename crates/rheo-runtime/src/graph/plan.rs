//! From the logical graph to runnable tasks: resolve parallelism, chain operators that can run
//! as plain calls in one thread (Flink's operator chaining), create the channels between tasks,
//! and build every subtask's chain.

use std::any::Any;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::graph::{ErasedOutput, JobGraph, NodeId, NodeKind, OperatorContext, Partitioning};
use crate::state::restore::RestoredState;
use crate::task::{JobShared, Task, TaskInfo};
use rheo_config::Configuration;
use rheo_network::{ChannelId, NetworkEnvironment, NetworkError};

/// A problem with the job graph itself.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the job has no sources")]
    NoSources,
    #[error("operator '{name}': parallelism {parallelism} is larger than max parallelism {max}")]
    ParallelismTooLarge { name: String, parallelism: usize, max: usize },
    #[error("operator '{0}': parallelism must be at least 1")]
    ZeroParallelism(String),
}

/// Settings that shape the plan.
#[derive(Clone, Debug)]
pub struct PlanSettings {
    pub default_parallelism: usize,
    pub max_parallelism: usize,
    /// Flink's `pipeline.operator-chaining.enabled`.
    pub chaining: bool,
}

/// Where the subtasks run when a job spans processes. Slot sharing as in Flink: slot `s` holds
/// subtask `s` of every task, so a subtask's index says which process runs it.
pub struct Remote<'a> {
    pub net: &'a NetworkEnvironment,
    /// The data address of the process running each slot.
    pub slots: &'a [SocketAddr],
    /// This process's data address.
    pub me: SocketAddr,
    /// Tells this attempt's channels apart from those of any earlier attempt.
    pub attempt_key: [u8; 16],
}

impl Remote<'_> {
    fn is_local(&self, subtask: usize) -> bool {
        self.slots.get(subtask) == Some(&self.me)
    }
}

/// The parallel shape of a job: which nodes form a task and how many subtasks each has.
pub struct ExecutionPlan {
    pub parallelism: Vec<usize>,
    /// For each node, whether it is chained to its single upstream node.
    pub chained: Vec<bool>,
    /// The nodes that start a task.
    pub heads: Vec<NodeId>,
    /// Consumers of each (node, port): (consumer, index of the consumer's input edge).
    consumers: HashMap<(NodeId, usize), Vec<(NodeId, usize)>>,
}

impl ExecutionPlan {
    pub fn new(graph: &JobGraph, settings: &PlanSettings) -> Result<Self, PlanError> {
        let mut parallelism = Vec::with_capacity(graph.nodes.len());
        for node in &graph.nodes {
            let p = if node.non_parallel { 1 } else { node.parallelism.unwrap_or(settings.default_parallelism) };
            if p == 0 {
                return Err(PlanError::ZeroParallelism(node.name.clone()));
            }
            if p > settings.max_parallelism {
                return Err(PlanError::ParallelismTooLarge {
                    name: node.name.clone(),
                    parallelism: p,
                    max: settings.max_parallelism,
                });
            }
            parallelism.push(p);
        }
        let mut consumers: HashMap<(NodeId, usize), Vec<(NodeId, usize)>> = HashMap::new();
        for (id, node) in graph.nodes.iter().enumerate() {
            for (k, edge) in node.inputs.iter().enumerate() {
                consumers.entry((edge.from, edge.port)).or_default().push((id, k));
            }
        }
        let chained: Vec<bool> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(id, node)| {
                settings.chaining
                    && matches!(node.kind, NodeKind::Operator(_))
                    && node.inputs.len() == 1
                    && matches!(node.inputs[0].partitioning, Partitioning::Forward)
                    && parallelism[node.inputs[0].from] == parallelism[id]
            })
            .collect();
        let heads: Vec<NodeId> = (0..graph.nodes.len()).filter(|&id| !chained[id]).collect();
        if !graph.nodes.iter().any(|n| matches!(n.kind, NodeKind::Source(_))) {
            return Err(PlanError::NoSources);
        }
        Ok(Self { parallelism, chained, heads, consumers })
    }

    fn consumers_of(&self, node: NodeId, port: usize) -> &[(NodeId, usize)] {
        self.consumers.get(&(node, port)).map(Vec::as_slice).unwrap_or(&[])
    }

    /// `Source: Socket Stream -> Flat Map`: the names of a task's chained nodes.
    pub fn task_name(&self, graph: &JobGraph, head: NodeId) -> String {
        let mut names = Vec::new();
        let mut stack = vec![head];
        while let Some(id) = stack.pop() {
            names.push(graph.nodes[id].name.clone());
            for port in (0..graph.nodes[id].ports.len()).rev() {
                for &(c, _) in self.consumers_of(id, port).iter().rev() {
                    if self.chained[c] {
                        stack.push(c);
                    }
                }
            }
        }
        names.join(" -> ")
    }

    /// Slots the job needs: its largest parallelism (slot sharing puts one subtask of every
    /// task in each slot).
    pub fn slots_needed(&self) -> usize {
        self.heads.iter().map(|&h| self.parallelism[h]).max().unwrap_or(0)
    }

    /// Every subtask as (task head, subtask index), in the order of their global task index.
    pub fn subtasks(&self) -> Vec<(NodeId, usize)> {
        self.heads.iter().flat_map(|&h| (0..self.parallelism[h]).map(move |s| (h, s))).collect()
    }

    /// Builds every subtask of every task, wired together by channels.
    pub fn build_tasks(
        &self,
        graph: &JobGraph,
        settings: &PlanSettings,
        config: Arc<Configuration>,
        job: Arc<JobShared>,
        restored: Option<Arc<RestoredState>>,
        counters: &[Arc<crate::task::VertexCounters>],
    ) -> Vec<Box<dyn Task>> {
        self.build_placed_tasks(graph, settings, config, job, restored, counters, None)
            .expect("local channels cannot fail")
            .into_iter()
            .map(|(_, task)| task)
            .collect()
    }

    /// Builds the subtasks this process runs, with their global task index (see
    /// [`subtasks`](Self::subtasks)); channels to subtasks elsewhere go through `remote`.
    #[allow(clippy::too_many_arguments)]
    pub fn build_placed_tasks(
        &self,
        graph: &JobGraph,
        settings: &PlanSettings,
        config: Arc<Configuration>,
        job: Arc<JobShared>,
        restored: Option<Arc<RestoredState>>,
        counters: &[Arc<crate::task::VertexCounters>],
        remote: Option<&Remote>,
    ) -> Result<Vec<PlacedTask>, NetworkError> {
        let is_local = |subtask: usize| remote.is_none_or(|r| r.is_local(subtask));
        let mut wiring = Wiring::default();
        for (id, node) in graph.nodes.iter().enumerate() {
            if self.chained[id] {
                continue;
            }
            for (k, edge) in node.inputs.iter().enumerate() {
                let (up, down) = (self.parallelism[edge.from], self.parallelism[id]);
                let one_to_one = matches!(edge.partitioning, Partitioning::Forward) && up == down;
                let stream_type = &graph.nodes[edge.from].ports[edge.port];
                for i in 0..up {
                    for j in 0..down {
                        if one_to_one && i != j {
                            continue;
                        }
                        let (tx, rx) = match (remote, is_local(i), is_local(j)) {
                            (_, true, true) | (None, _, _) => {
                                let (tx, rx) = stream_type.channel();
                                (Some(tx), Some(rx))
                            }
                            (Some(_), false, false) => (None, None),
                            (Some(r), true, false) => {
                                let id = channel_id(r, id, k, i, j);
                                (Some(stream_type.remote_sender(r.net, r.slots[j], id)?), None)
                            }
                            (Some(r), false, true) => {
                                let id = channel_id(r, id, k, i, j);
                                (None, Some(stream_type.remote_receiver(r.net, id)?))
                            }
                        };
                        if let Some(tx) = tx {
                            wiring.senders.entry((id, k, i)).or_default().push(tx);
                        }
                        if let Some(rx) = rx {
                            wiring.receivers.entry((id, j)).or_default().push(rx);
                        }
                    }
                }
            }
        }
        let mut tasks = Vec::new();
        let mut global_index = 0;
        for (index, &head) in self.heads.iter().enumerate() {
            let task_name = self.task_name(graph, head);
            let vertex_counters = counters.get(index).cloned().unwrap_or_default();
            for subtask in 0..self.parallelism[head] {
                global_index += 1;
                if !is_local(subtask) {
                    continue;
                }
                let info = TaskInfo {
                    task_name: task_name.clone(),
                    subtask_index: subtask,
                    parallelism: self.parallelism[head],
                    max_parallelism: settings.max_parallelism,
                    config: config.clone(),
                    job: job.clone(),
                    restored: restored.clone(),
                    counters: vertex_counters.subtask(subtask),
                };
                let node = &graph.nodes[head];
                let task = match &node.kind {
                    NodeKind::Source(factory) => {
                        let outs = self.port_outputs(graph, settings, head, &info, &mut wiring);
                        factory(&OperatorContext { info: &info, node: head }, outs)
                    }
                    NodeKind::Operator(_) => {
                        let chain = self.build_node(graph, settings, head, &info, &mut wiring);
                        let receivers = wiring.receivers.remove(&(head, subtask)).unwrap_or_default();
                        let input = &node.inputs[0];
                        graph.nodes[input.from].ports[input.port].input_task(info, receivers, chain)
                    }
                };
                tasks.push((global_index - 1, task));
            }
        }
        Ok(tasks)
    }

    /// The chain that starts at `id`, as the erased input of that node.
    fn build_node(
        &self,
        graph: &JobGraph,
        settings: &PlanSettings,
        id: NodeId,
        info: &TaskInfo,
        wiring: &mut Wiring,
    ) -> ErasedOutput {
        let outs = self.port_outputs(graph, settings, id, info, wiring);
        match &graph.nodes[id].kind {
            NodeKind::Operator(factory) => factory(&OperatorContext { info, node: id }, outs),
            NodeKind::Source(_) => unreachable!("sources have no inputs and are never chained"),
        }
    }

    /// One output per port of `id`: chained consumers are built inline, the others are reached
    /// through channel writers.
    fn port_outputs(
        &self,
        graph: &JobGraph,
        settings: &PlanSettings,
        id: NodeId,
        info: &TaskInfo,
        wiring: &mut Wiring,
    ) -> Vec<ErasedOutput> {
        let node = &graph.nodes[id];
        (0..node.ports.len())
            .map(|port| {
                let stream_type = &node.ports[port];
                let mut outs: Vec<ErasedOutput> = self
                    .consumers_of(id, port)
                    .iter()
                    .map(|&(c, k)| {
                        if self.chained[c] {
                            self.build_node(graph, settings, c, info, wiring)
                        } else {
                            let senders = wiring.senders.remove(&(c, k, info.subtask_index)).unwrap_or_default();
                            let edge = &graph.nodes[c].inputs[k];
                            let partitioning = match edge.partitioning {
                                // A forward edge between different parallelisms spreads evenly.
                                Partitioning::Forward if senders.len() > 1 => Partitioning::Rebalance,
                                ref p => p.clone(),
                            };
                            stream_type.writer(&partitioning, settings.max_parallelism, senders, info.counters.clone())
                        }
                    })
                    .collect();
                match outs.len() {
                    0 => stream_type.discard(),
                    1 => outs.pop().expect("one output"),
                    _ => stream_type.fanout(outs),
                }
            })
            .collect()
    }
}

/// A task built for this process, with its global task index.
pub type PlacedTask = (usize, Box<dyn Task>);

/// Names the channel from subtask `up` to subtask `down` of input edge `k` of node `consumer`.
fn channel_id(remote: &Remote, consumer: NodeId, k: usize, up: usize, down: usize) -> ChannelId {
    ChannelId {
        job: remote.attempt_key,
        edge: (consumer << 8 | k) as u32,
        upstream: up as u32,
        downstream: down as u32,
    }
}

/// Channel ends created for the non-chained edges, taken as tasks are built.
#[derive(Default)]
struct Wiring {
    /// (consumer, input edge, upstream subtask) → senders, one per downstream subtask.
    senders: HashMap<(NodeId, usize, usize), Vec<Box<dyn Any>>>,
    /// (consumer, downstream subtask) → receivers from all upstream subtasks of all inputs.
    receivers: HashMap<(NodeId, usize), Vec<Box<dyn Any>>>,
}
