//! Streams and their transformations. Each call adds a node to the job graph and returns a
//! handle to its output; nothing runs until [`StreamEnv::execute`](super::StreamEnv::execute).

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rheo_runtime::exchange::KeyHashFn;
use rheo_runtime::graph::{
    Data, Edge, JobGraph, Node, NodeId, NodeKind, OperatorContext, Partitioning, StreamType, TypeOf, erase, unerase,
};
use rheo_runtime::keyed::{KeySelector, KeyedProcessFunction, KeyedProcessOperator, rolling_aggregate, rolling_reduce};
use rheo_runtime::operators::{
    FilterOperator, FlatMapOperator, IdentityOperator, MapOperator, TimestampsAndWatermarks, WatermarkEmission,
    WatermarkStrategy,
};
use rheo_runtime::output::{Chained, Collector, Operator, Output};
use rheo_runtime::sink::{SinkFunction, SinkOutput};
use rheo_runtime::window::functions::{
    AggregateAggregation, AggregateThenProcess, ProcessAggregation, ReduceAggregation, WindowAggregation,
};
use rheo_runtime::window::operator::{Key, WindowOperator};
use rheo_runtime::window::{AggregateFunction, ProcessWindowFunction, WindowAssigner};
use rheo_types::keygroups::hash_key;

/// A stream of records of type `T` (Flink's `DataStream<T>`).
pub struct DataStream<T> {
    graph: Rc<RefCell<JobGraph>>,
    node: NodeId,
    port: usize,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for DataStream<T> {
    fn clone(&self) -> Self {
        Self { graph: self.graph.clone(), node: self.node, port: self.port, _type: PhantomData }
    }
}

/// Names a side output (Flink's `OutputTag`), e.g. the late records of a window.
pub struct OutputTag<T> {
    pub name: String,
    _type: PhantomData<fn() -> T>,
}

impl<T> OutputTag<T> {
    pub fn new(name: &str) -> Self {
        Self { name: name.to_string(), _type: PhantomData }
    }
}

/// Builds an operator node's chain input from its port outputs.
type Build = dyn Fn(&OperatorContext, Vec<Box<dyn Any>>) -> Box<dyn Any> + Send + Sync;

impl<T: Data> DataStream<T> {
    pub(crate) fn new(graph: Rc<RefCell<JobGraph>>, node: NodeId, port: usize) -> Self {
        Self { graph, node, port, _type: PhantomData }
    }

    /// Registers a check of an output this stream is written to, run before the job starts.
    pub fn add_output_check(&self, check: rheo_runtime::graph::OutputCheck) {
        self.graph.borrow_mut().output_checks.push(check);
    }

    fn add_node(
        &self,
        name: String,
        partitioning: Partitioning,
        ports: Vec<Arc<dyn StreamType>>,
        build: Arc<Build>,
    ) -> NodeId {
        self.graph.borrow_mut().add(Node {
            name,
            parallelism: None,
            non_parallel: false,
            kind: NodeKind::Operator(build),
            inputs: vec![Edge { from: self.node, port: self.port, partitioning }],
            ports,
        })
    }

    /// Adds an operator with one output; `make` builds it for each subtask.
    pub fn transform<U: Data, Op: Operator<T, U>>(
        &self,
        name: &str,
        make: impl Fn(&OperatorContext) -> Op + Send + Sync + 'static,
    ) -> DataStream<U> {
        self.transform_partitioned(name, Partitioning::Forward, make)
    }

    fn transform_partitioned<U: Data, Op: Operator<T, U>>(
        &self,
        name: &str,
        partitioning: Partitioning,
        make: impl Fn(&OperatorContext) -> Op + Send + Sync + 'static,
    ) -> DataStream<U> {
        let build = Arc::new(move |ctx: &OperatorContext, mut outs: Vec<Box<dyn Any>>| {
            let out = unerase::<U>(outs.remove(0));
            let chained: Box<dyn Output<T>> = Box::new(Chained { op: make(ctx), node: ctx.node, out });
            erase(chained)
        });
        let id = self.add_node(name.to_string(), partitioning, vec![TypeOf::<U>::arc()], build);
        DataStream::new(self.graph.clone(), id, 0)
    }

    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> DataStream<U> {
        let f = Arc::new(f);
        self.transform("Map", move |_| MapOperator(f.clone()))
    }

    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> DataStream<T> {
        let f = Arc::new(f);
        self.transform("Filter", move |_| FilterOperator(f.clone()))
    }

    /// Emits any number of records per input record through the collector.
    pub fn flat_map<U: Data>(&self, f: impl Fn(T, &mut Collector<'_, U>) + Send + Sync + 'static) -> DataStream<U> {
        let f = Arc::new(f);
        self.transform("Flat Map", move |_| FlatMapOperator(f.clone()))
    }

    /// Partitions the stream by key: records with the same key reach the same subtask, and
    /// keyed state and windows are scoped to the key.
    pub fn key_by<K: Key + std::hash::Hash>(
        &self,
        key_of: impl Fn(&T) -> K + Send + Sync + 'static,
    ) -> KeyedStream<K, T> {
        let key_of: KeySelector<T, K> = Arc::new(key_of);
        let selector = key_of.clone();
        let key_hash: KeyHashFn<T> = Arc::new(move |value: &T| hash_key(&selector(value)));
        KeyedStream { stream: self.clone(), key_of, key_hash }
    }

    /// Spreads records round-robin over the next operator's subtasks.
    pub fn rebalance(&self) -> DataStream<T> {
        self.transform_partitioned("Rebalance", Partitioning::Rebalance, |_| IdentityOperator)
    }

    /// Merges streams of the same type.
    pub fn union(&self, others: &[&DataStream<T>]) -> DataStream<T> {
        let build: Arc<Build> = Arc::new(|ctx, mut outs| {
            let out = unerase::<T>(outs.remove(0));
            erase::<T>(Box::new(Chained { op: IdentityOperator, node: ctx.node, out }))
        });
        let id = self.add_node("Union".to_string(), Partitioning::Forward, vec![TypeOf::<T>::arc()], build);
        let mut graph = self.graph.borrow_mut();
        for other in others {
            assert!(Rc::ptr_eq(&self.graph, &other.graph), "union of streams from different environments");
            graph.nodes[id].inputs.push(Edge {
                from: other.node,
                port: other.port,
                partitioning: Partitioning::Forward,
            });
        }
        DataStream::new(self.graph.clone(), id, 0)
    }

    /// Assigns event timestamps and generates watermarks (Flink's
    /// `assignTimestampsAndWatermarks`).
    pub fn assign_timestamps_and_watermarks(&self, strategy: WatermarkStrategy<T>) -> DataStream<T> {
        self.transform("Timestamps/Watermarks", move |ctx| {
            // The job driver validated the configuration before building any task.
            let option = &rheo_config::options::AUTO_WATERMARK_INTERVAL;
            let interval = ctx.info.config.get(option).unwrap_or_else(|_| option.default_value());
            TimestampsAndWatermarks::new(strategy.clone(), WatermarkEmission::Periodic(interval))
        })
    }

    /// Sets the parallelism of the operator that produces this stream.
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        {
            let mut graph = self.graph.borrow_mut();
            let node = &mut graph.nodes[self.node];
            assert!(!node.non_parallel || parallelism == 1, "'{}' is a non-parallel source", node.name);
            node.parallelism = Some(parallelism);
        }
        self
    }

    /// Renames the operator that produces this stream (shown in task names and logs).
    pub fn name(self, name: &str) -> Self {
        {
            let mut graph = self.graph.borrow_mut();
            let node = &mut graph.nodes[self.node];
            node.name =
                if matches!(node.kind, NodeKind::Source(_)) { format!("Source: {name}") } else { name.to_string() };
        }
        self
    }

    /// The records of a side output of the operator that produced this stream.
    pub fn side_output<U: Data>(&self, tag: &OutputTag<U>) -> DataStream<U> {
        let graph = self.graph.borrow();
        let node = &graph.nodes[self.node];
        let port = 1;
        assert!(
            node.ports.len() > port && node.ports[port].record_type() == TypeId::of::<U>(),
            "'{}' has no side output '{}' of this record type",
            node.name,
            tag.name
        );
        DataStream::new(self.graph.clone(), self.node, port)
    }

    /// Sends the stream to a sink; `make` builds the sink of each subtask.
    pub fn add_sink<S: SinkFunction<T>>(
        &self,
        name: &str,
        make: impl Fn(&OperatorContext) -> S + Send + Sync + 'static,
    ) -> DataSink {
        let node_name = format!("Sink: {name}");
        let sink_name = node_name.clone();
        let build: Arc<Build> = Arc::new(move |ctx, _outs| {
            let sink = SinkOutput::new(make(ctx), sink_name.as_str(), ctx.node, ctx.info.job.clone());
            let sink: Box<dyn Output<T>> = Box::new(sink);
            erase(sink)
        });
        let id = self.add_node(node_name, Partitioning::Forward, Vec::new(), build);
        DataSink { graph: self.graph.clone(), node: id }
    }
}

/// A sink in the job graph, to set its parallelism or name.
pub struct DataSink {
    graph: Rc<RefCell<JobGraph>>,
    node: NodeId,
}

impl DataSink {
    pub fn set_parallelism(self, parallelism: usize) -> Self {
        self.graph.borrow_mut().nodes[self.node].parallelism = Some(parallelism);
        self
    }

    pub fn name(self, name: &str) -> Self {
        self.graph.borrow_mut().nodes[self.node].name = format!("Sink: {name}");
        self
    }
}

/// A stream partitioned by key (Flink's `KeyedStream`).
pub struct KeyedStream<K, T> {
    stream: DataStream<T>,
    key_of: KeySelector<T, K>,
    key_hash: KeyHashFn<T>,
}

impl<K, T> Clone for KeyedStream<K, T> {
    fn clone(&self) -> Self {
        Self { stream: self.stream.clone(), key_of: self.key_of.clone(), key_hash: self.key_hash.clone() }
    }
}

impl<K: Key, T: Data> KeyedStream<K, T> {
    fn hash_partitioning(&self) -> Partitioning {
        Partitioning::Hash(Arc::new(self.key_hash.clone()) as Arc<dyn Any + Send + Sync>)
    }

    /// Rolling reduce: emits the running result per key after every record. The result is
    /// keyed state (`Sync`: a checkpoint reads it from another thread).
    pub fn reduce(&self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> DataStream<T>
    where
        T: Sync,
    {
        let (key_of, f) = (self.key_of.clone(), Arc::new(f));
        self.stream.transform_partitioned("Keyed Reduce", self.hash_partitioning(), move |ctx| {
            rolling_reduce(key_of.clone(), f.clone(), ctx)
        })
    }

    /// Rolling aggregate: emits the aggregate per key after every record. The accumulator is
    /// keyed state (`Sync`: a checkpoint reads it from another thread).
    pub fn aggregate<A: AggregateFunction<T>>(&self, aggregate: A) -> DataStream<A::Out>
    where
        A::Acc: Sync,
    {
        let (key_of, aggregate) = (self.key_of.clone(), Arc::new(aggregate));
        self.stream.transform_partitioned("Keyed Aggregate", self.hash_partitioning(), move |ctx| {
            rolling_aggregate(key_of.clone(), aggregate.clone(), ctx)
        })
    }

    /// A keyed process function with keyed state and timers; each subtask gets a clone.
    pub fn process<O: Data, F: KeyedProcessFunction<K, T, O> + Clone + Sync>(&self, function: F) -> DataStream<O> {
        let key_of = self.key_of.clone();
        self.stream.transform_partitioned("Keyed Process", self.hash_partitioning(), move |ctx| {
            KeyedProcessOperator::new(key_of.clone(), function.clone(), ctx)
        })
    }

    /// Groups each key's records into windows.
    pub fn window(&self, assigner: WindowAssigner) -> WindowedStream<K, T> {
        WindowedStream { keyed: self.clone(), assigner, allowed_lateness: Duration::ZERO }
    }
}

/// A keyed stream grouped into windows (Flink's `WindowedStream`).
pub struct WindowedStream<K, T> {
    keyed: KeyedStream<K, T>,
    assigner: WindowAssigner,
    allowed_lateness: Duration,
}

impl<K: Key, T: Data> WindowedStream<K, T> {
    /// Keeps fired event-time windows this long; late records within it update the result.
    pub fn allowed_lateness(mut self, lateness: Duration) -> Self {
        self.allowed_lateness = lateness;
        self
    }

    /// Late records go to this side output (read it with `DataStream::side_output`) instead
    /// of being dropped.
    pub fn side_output_late_data(self, _tag: &OutputTag<T>) -> Self {
        self
    }

    pub fn reduce(self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> DataStream<T> {
        self.apply("Reduce", ReduceAggregation(f))
    }

    pub fn aggregate<A: AggregateFunction<T>>(self, aggregate: A) -> DataStream<A::Out> {
        self.apply("Aggregate", AggregateAggregation(aggregate))
    }

    pub fn process<O: Data>(self, function: impl ProcessWindowFunction<K, T, O>) -> DataStream<O> {
        self.apply("Process", ProcessAggregation(function))
    }

    /// Aggregates incrementally, then passes the result with its key and window to `function`.
    pub fn aggregate_with<A: AggregateFunction<T>, O: Data>(
        self,
        aggregate: A,
        function: impl ProcessWindowFunction<K, A::Out, O>,
    ) -> DataStream<O> {
        self.apply("Aggregate", AggregateThenProcess(aggregate, function))
    }

    fn apply<O: Data, A: WindowAggregation<K, T, O>>(self, function: &str, aggregation: A) -> DataStream<O> {
        let name = format!("Window({:?}, {function})", self.assigner);
        let key_of = self.keyed.key_of.clone();
        let (assigner, aggregation) = (self.assigner, Arc::new(aggregation));
        let lateness = self.allowed_lateness.as_millis() as i64;
        let task_name = name.clone();
        let build: Arc<Build> = Arc::new(move |ctx, mut outs| {
            let late = unerase::<T>(outs.remove(1));
            let out = unerase::<O>(outs.remove(0));
            let op: Box<dyn Output<T>> = Box::new(WindowOperator::new(
                task_name.clone(),
                ctx,
                key_of.clone(),
                assigner,
                aggregation.clone(),
                lateness,
                out,
                late,
            ));
            erase(op)
        });
        let ports = vec![TypeOf::<O>::arc(), TypeOf::<T>::arc()];
        let id = self.keyed.stream.add_node(name, self.keyed.hash_partitioning(), ports, build);
        DataStream::new(self.keyed.stream.graph.clone(), id, 0)
    }
}
