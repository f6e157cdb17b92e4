//! The functions a windowed stream can apply, and the one internal shape they all take: an
//! accumulator per (key, window), filled incrementally and turned into results when it fires.

use crate::graph::Data;
use crate::output::Collector;
use crate::window::TimeWindow;

/// Flink's `AggregateFunction`: incremental aggregation through an accumulator.
pub trait AggregateFunction<I>: Send + Sync + 'static {
    type Acc: crate::state::KeyedValue;
    type Out: Data;
    fn create_accumulator(&self) -> Self::Acc;
    fn add(&self, value: I, acc: &mut Self::Acc);
    fn get_result(&self, acc: &Self::Acc) -> Self::Out;
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
}

/// Flink's `ProcessWindowFunction`: sees all elements of a window with its key and bounds.
pub trait ProcessWindowFunction<K, I, O>: Send + Sync + 'static {
    fn process(&self, key: &K, window: &TimeWindow, elements: &[I], out: &mut Collector<'_, O>);
}

impl<K, I, O, F> ProcessWindowFunction<K, I, O> for F
where
    F: Fn(&K, &TimeWindow, &[I], &mut Collector<'_, O>) + Send + Sync + 'static,
{
    fn process(&self, key: &K, window: &TimeWindow, elements: &[I], out: &mut Collector<'_, O>) {
        self(key, window, elements, out)
    }
}

/// What the window operator needs from any window function.
pub trait WindowAggregation<K, I, O>: Send + Sync + 'static {
    type Acc: crate::state::KeyedValue;
    fn create(&self) -> Self::Acc;
    fn add(&self, acc: &mut Self::Acc, value: I);
    fn merge(&self, into: &mut Self::Acc, other: Self::Acc);
    fn emit(&self, key: &K, window: &TimeWindow, acc: &Self::Acc, out: &mut Collector<'_, O>);
}

/// `reduce`: combine two elements into one of the same type.
pub struct ReduceAggregation<F>(pub F);

impl<K, I: Data, F: Fn(I, I) -> I + Send + Sync + 'static> WindowAggregation<K, I, I> for ReduceAggregation<F> {
    type Acc = Option<I>;
    fn create(&self) -> Option<I> {
        None
    }
    #[inline]
    fn add(&self, acc: &mut Option<I>, value: I) {
        *acc = Some(match acc.take() {
            None => value,
            Some(previous) => (self.0)(previous, value),
        });
    }
    fn merge(&self, into: &mut Option<I>, other: Option<I>) {
        if let Some(value) = other {
            <Self as WindowAggregation<K, I, I>>::add(self, into, value);
        }
    }
    fn emit(&self, _key: &K, _window: &TimeWindow, acc: &Option<I>, out: &mut Collector<'_, I>) {
        if let Some(value) = acc {
            out.collect(value.clone());
        }
    }
}

/// Merges `other` into `into` with the function's by-value `merge`.
fn merge_into<I, A: AggregateFunction<I>>(function: &A, into: &mut A::Acc, other: A::Acc) {
    let current = std::mem::replace(into, function.create_accumulator());
    *into = function.merge(current, other);
}

/// `aggregate`: a user [`AggregateFunction`].
pub struct AggregateAggregation<A>(pub A);

impl<K, I, A: AggregateFunction<I>> WindowAggregation<K, I, A::Out> for AggregateAggregation<A> {
    type Acc = A::Acc;
    fn create(&self) -> A::Acc {
        self.0.create_accumulator()
    }
    fn add(&self, acc: &mut A::Acc, value: I) {
        self.0.add(value, acc);
    }
    fn merge(&self, into: &mut A::Acc, other: A::Acc) {
        merge_into(&self.0, into, other);
    }
    fn emit(&self, _key: &K, _window: &TimeWindow, acc: &A::Acc, out: &mut Collector<'_, A::Out>) {
        out.collect(self.0.get_result(acc));
    }
}

/// `process`: buffer every element and hand them to a [`ProcessWindowFunction`].
pub struct ProcessAggregation<P>(pub P);

impl<K, I: Data, O, P: ProcessWindowFunction<K, I, O>> WindowAggregation<K, I, O> for ProcessAggregation<P> {
    type Acc = Vec<I>;
    fn create(&self) -> Vec<I> {
        Vec::new()
    }
    fn add(&self, acc: &mut Vec<I>, value: I) {
        acc.push(value);
    }
    fn merge(&self, into: &mut Vec<I>, other: Vec<I>) {
        into.extend(other);
    }
    fn emit(&self, key: &K, window: &TimeWindow, acc: &Vec<I>, out: &mut Collector<'_, O>) {
        self.0.process(key, window, acc, out);
    }
}

/// `aggregate` followed by a [`ProcessWindowFunction`] that sees the single aggregate with the
/// window's key and bounds (Flink's `aggregate(aggFn, windowFn)`).
pub struct AggregateThenProcess<A, P>(pub A, pub P);

impl<K, I, O, A, P> WindowAggregation<K, I, O> for AggregateThenProcess<A, P>
where
    A: AggregateFunction<I>,
    P: ProcessWindowFunction<K, A::Out, O>,
{
    type Acc = A::Acc;
    fn create(&self) -> A::Acc {
        self.0.create_accumulator()
    }
    fn add(&self, acc: &mut A::Acc, value: I) {
        self.0.add(value, acc);
    }
    fn merge(&self, into: &mut A::Acc, other: A::Acc) {
        merge_into(&self.0, into, other);
    }
    fn emit(&self, key: &K, window: &TimeWindow, acc: &A::Acc, out: &mut Collector<'_, O>) {
        let result = [self.0.get_result(acc)];
        self.1.process(key, window, &result, out);
    }
}
