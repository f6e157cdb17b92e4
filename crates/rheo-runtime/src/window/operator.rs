//! The window operator: keeps an accumulator per (key, window), fires windows when the
//! watermark (event time) or the clock (processing time) passes their end, and routes late
//! records to the late-data side output or drops them.
//!
//! Its state lives on the keyed state backend, laid out as Flink's window operator lays it out:
//! for each key the windows it has open (bounds, accumulator, whether it fired) in one value,
//! and a timer per key and window end (and, with allowed lateness, per cleanup time). So windows
//! checkpoint as every keyed operator does: a copy-on-write view at the barrier written off the
//! task thread, incremental checkpoints that write only the keys that changed, the disk tier
//! with `state.backend.type: disk`, restore and rescale by key group. Firing a window pops the
//! due timers of its keys, each key's windows found with its id, never by a scan.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::checkpoint::metadata::WINDOWS_ON_KEYED_BACKEND_SINCE;
use crate::graph::{Data, OperatorContext};
use crate::keyed::snapshot as keyed_snapshot;
use crate::output::{CheckpointBarrier, Collector, NodeId, Output, TaskSnapshot, Timestamp, earliest};
use crate::state::keys::KeyId;
use crate::state::{BackendOptions, KeyedStateBackend, ValueState};
use crate::task::now_ms;
use crate::window::functions::WindowAggregation;
use crate::window::{TimeDomain, TimeWindow, WindowAssigner};

pub use rheo_types::Key;

/// The name of the window operator's state in checkpoints: each key's open windows.
pub const WINDOWS_STATE: &str = "windows";

/// One open window of a key.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct OpenWindow<Acc> {
    pub(crate) window: TimeWindow,
    pub(crate) fired: bool,
    pub(crate) acc: Acc,
}

/// A key's open windows: usually one (a tumbling window, a session), so it lives inline.
type KeyWindows<Acc> = SmallVec<[OpenWindow<Acc>; 1]>;

/// One restorable piece of window state as written before checkpoint metadata version
/// [`WINDOWS_ON_KEYED_BACKEND_SINCE`]: a key's accumulator in one window.
#[derive(serde::Deserialize)]
struct OldWindowEntry<K, Acc> {
    key: K,
    start: Timestamp,
    end: Timestamp,
    fired: bool,
    acc: Acc,
}

pub struct WindowOperator<K, I, O, A: WindowAggregation<K, I, O>> {
    name: String,
    node: NodeId,
    key_of: Arc<dyn Fn(&I) -> K + Send + Sync>,
    assigner: WindowAssigner,
    aggregation: Arc<A>,
    allowed_lateness: i64,
    out: Box<dyn Output<O>>,
    late_out: Box<dyn Output<I>>,
    watermark: Timestamp,
    processing_now: Timestamp,
    /// Processing-time windows ending at or before this time have fired: a record is never
    /// assigned to one of them again, however stale the clock it reads.
    fired_through: Timestamp,
    /// Every key's open windows, and their timers.
    state: KeyedStateBackend<K>,
    windows: ValueState<KeyWindows<A::Acc>>,
}

impl<K: Key, I: Data, O: 'static, A: WindowAggregation<K, I, O>> WindowOperator<K, I, O, A> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        ctx: &OperatorContext,
        key_of: Arc<dyn Fn(&I) -> K + Send + Sync>,
        assigner: WindowAssigner,
        aggregation: Arc<A>,
        allowed_lateness: i64,
        out: Box<dyn Output<O>>,
        late_out: Box<dyn Output<I>>,
    ) -> Self {
        let options = BackendOptions::from_config(&ctx.info.config);
        let mut state = KeyedStateBackend::new(&options, &ctx.info.display_name())
            .unwrap_or_else(|e| panic!("{}: {e}", ctx.info.task_name));
        let windows = state.value_state(WINDOWS_STATE);
        let mut operator = Self {
            name,
            node: ctx.node,
            key_of,
            assigner,
            aggregation,
            allowed_lateness,
            out,
            late_out,
            watermark: Timestamp::MIN,
            processing_now: now_ms(),
            fired_through: Timestamp::MIN,
            state,
            windows,
        };
        let old_format = ctx.info.restored.as_ref().is_some_and(|restored| {
            restored.metadata_version < WINDOWS_ON_KEYED_BACKEND_SINCE && restored.nodes.contains_key(&ctx.node)
        });
        if old_format {
            operator.restore_old_format(ctx);
        } else {
            keyed_snapshot::restore(&mut operator.state, ctx);
        }
        operator
    }

    /// Restores window state written before [`WINDOWS_ON_KEYED_BACKEND_SINCE`]: each entry
    /// joins its key's windows, with the timers it needs.
    fn restore_old_format(&mut self, ctx: &OperatorContext) {
        let entries: Vec<OldWindowEntry<K, A::Acc>> = ctx.restore_keyed(|e: &OldWindowEntry<K, A::Acc>| &e.key);
        tracing::info!(
            task = %ctx.info.display_name(),
            entries = entries.len(),
            "restoring window state written before checkpoint metadata version {WINDOWS_ON_KEYED_BACKEND_SINCE}"
        );
        for entry in entries {
            let window = TimeWindow::new(entry.start, entry.end);
            let id = self.state.intern(entry.key);
            let open = OpenWindow { window, fired: entry.fired, acc: entry.acc };
            self.state.value_mut(&self.windows, id, KeyWindows::new).push(open);
            self.register_timers(id, window, entry.fired);
            self.state.free_if_unused(id);
        }
    }

    fn event_time(&self) -> bool {
        self.assigner.domain() == TimeDomain::EventTime
    }

    /// How long a window is kept after its end for late records: processing time has none.
    fn lateness(&self) -> i64 {
        if self.event_time() { self.allowed_lateness } else { 0 }
    }

    /// A window whose cleanup time has passed: records for it are late.
    fn is_late(&self, window: &TimeWindow) -> bool {
        self.event_time() && window.max_timestamp().saturating_add(self.allowed_lateness) <= self.watermark
    }

    fn late(&mut self, value: I, timestamp: Timestamp) {
        self.late_out.collect(value, timestamp);
    }

    /// The timers a new window of `id` needs: its end, unless it fired, and its cleanup.
    fn register_timers(&mut self, id: KeyId, window: TimeWindow, fired: bool) {
        let (event_time, lateness) = (self.event_time(), self.lateness());
        register_window_timers(&mut self.state, event_time, lateness, id, window, fired);
    }

    fn add_fixed(&mut self, key: K, value: I, time: Timestamp, timestamp: Timestamp) {
        // Fast path: one window per record.
        if let WindowAssigner::Tumbling { size, offset, .. } = self.assigner {
            let start = crate::window::assigner::window_start(time, offset, size);
            let window = TimeWindow::new(start, start + size);
            if self.is_late(&window) {
                return self.late(value, timestamp);
            }
            let id = self.state.intern(key);
            self.add_to_window(id, window, value);
            // The key holds its window now.
            return self.state.done_with_held(id);
        }
        let windows = self.assigner.assign(time);
        let live = windows.iter().filter(|w| !self.is_late(w)).count();
        if live == 0 {
            return self.late(value, timestamp);
        }
        let id = self.state.intern(key);
        let mut remaining = live;
        let mut value = Some(value);
        for window in windows {
            if self.is_late(&window) {
                continue;
            }
            remaining -= 1;
            let v = if remaining == 0 { value.take().expect("value") } else { value.clone().expect("value") };
            self.add_to_window(id, window, v);
        }
        self.state.free_if_unused(id);
    }

    fn add_to_window(&mut self, id: KeyId, window: TimeWindow, value: I) {
        let (event_time, lateness) = (self.event_time(), self.lateness());
        let aggregation = &*self.aggregation;
        let windows = self.state.value_mut(&self.windows, id, KeyWindows::new);
        // The newest window is last: a key's records mostly go to it.
        let fired = match windows.iter_mut().rev().find(|open| open.window == window) {
            Some(open) => {
                aggregation.add(&mut open.acc, value);
                open.fired
            }
            None => {
                let mut acc = aggregation.create();
                aggregation.add(&mut acc, value);
                // A new window of this key that ended already (a late record within the allowed
                // lateness) fires at once, as Flink's event-time trigger does.
                let fired = event_time && window.max_timestamp() <= self.watermark;
                windows.push(OpenWindow { window, fired, acc });
                register_window_timers(&mut self.state, event_time, lateness, id, window, fired);
                fired
            }
        };
        if fired {
            // A late record within the allowed lateness: fire the updated result at once.
            let (key, windows) = self.state.key_and_value_mut(&self.windows, id);
            let open = windows.and_then(|w| w.iter().find(|open| open.window == window)).expect("the window added to");
            let mut collector = Collector::new(&mut *self.out, window.max_timestamp());
            aggregation.emit(key, &window, &open.acc, &mut collector);
        }
    }

    fn add_session(&mut self, key: K, value: I, time: Timestamp, timestamp: Timestamp) {
        let WindowAssigner::Session { gap, .. } = self.assigner else { unreachable!("session assigner") };
        let new = TimeWindow::new(time, time.saturating_add(gap));
        let id = self.state.intern(key);
        let merged = match self.state.value(&self.windows, id) {
            Some(list) => list.iter().filter(|s| s.window.intersects(&new)).fold(new, |m, s| m.cover(&s.window)),
            None => new,
        };
        if self.is_late(&merged) {
            self.state.free_if_unused(id);
            return self.late(value, timestamp);
        }
        let event_time = self.event_time();
        let due = if event_time { self.watermark } else { self.processing_now };
        let lateness = self.lateness();
        let mut list = self.state.take_value(&self.windows, id).unwrap_or_default();
        let mut acc = self.aggregation.create();
        let mut index = 0;
        // The timers of the sessions merged away: deleted below unless another session needs them.
        let mut merged_away: SmallVec<[Timestamp; 4]> = SmallVec::new();
        while index < list.len() {
            if list[index].window.intersects(&merged) {
                let old = list.swap_remove(index);
                merged_away.push(old.window.max_timestamp());
                if lateness > 0 {
                    merged_away.push(old.window.max_timestamp().saturating_add(lateness));
                }
                self.aggregation.merge(&mut acc, old.acc);
            } else {
                index += 1;
            }
        }
        self.aggregation.add(&mut acc, value);
        let mut session = OpenWindow { window: merged, acc, fired: false };
        if merged.max_timestamp() <= due {
            // Merged into an already fired session within the allowed lateness.
            let mut collector = Collector::new(&mut *self.out, merged.max_timestamp());
            self.aggregation.emit(self.state.key(id), &merged, &session.acc, &mut collector);
            session.fired = true;
        }
        self.register_timers(id, merged, session.fired);
        list.push(session);
        let needs = |s: &OpenWindow<A::Acc>, at: Timestamp| {
            let end = s.window.max_timestamp();
            (!s.fired && end == at) || (lateness > 0 && end.saturating_add(lateness) == at)
        };
        for at in merged_away {
            if !list.iter().any(|s| needs(s, at)) {
                self.state.delete_timer(event_time, at, id);
            }
        }
        self.state.update(&self.windows, id, list);
        self.state.free_if_unused(id);
    }

    /// Fires the windows whose timers are due at `time`, in time order, and drops those past
    /// their lateness.
    fn fire(&mut self, time: Timestamp) {
        let event_time = self.event_time();
        let lateness = self.lateness();
        while let Some((at, id)) = self.state.pop_due_timer(event_time, time) {
            let (key, windows) = self.state.key_and_value_mut(&self.windows, id);
            let Some(windows) = windows else {
                self.state.free_if_unused(id);
                continue;
            };
            for open in windows.iter_mut() {
                if !open.fired && open.window.max_timestamp() <= at {
                    open.fired = true;
                    let mut collector = Collector::new(&mut *self.out, open.window.max_timestamp());
                    self.aggregation.emit(key, &open.window, &open.acc, &mut collector);
                }
            }
            windows.retain(|open| open.window.max_timestamp().saturating_add(lateness) > at);
            if windows.is_empty() {
                self.state.clear_value(&self.windows, id);
            }
            self.state.free_if_unused(id);
        }
    }

    /// The next time a processing-time window needs the clock.
    fn next_processing_timer(&mut self) -> Option<Timestamp> {
        if self.event_time() { None } else { self.state.next_timer(false) }
    }
}

/// Sets the timers of a new window of `id`: its end, unless it fired, and its cleanup time.
fn register_window_timers<K: Key>(
    state: &mut KeyedStateBackend<K>,
    event_time: bool,
    lateness: i64,
    id: KeyId,
    window: TimeWindow,
    fired: bool,
) {
    if !fired {
        state.register_timer(event_time, window.max_timestamp(), id);
    }
    if lateness > 0 {
        state.register_timer(event_time, window.max_timestamp().saturating_add(lateness), id);
    }
}

impl<K: Key, I: Data, O: 'static, A: WindowAggregation<K, I, O>> Output<I> for WindowOperator<K, I, O, A> {
    #[inline]
    fn collect(&mut self, value: I, timestamp: Timestamp) {
        let time = if self.event_time() {
            if timestamp == crate::output::NO_TIMESTAMP {
                panic!(
                    "{}: an event-time window received a record without a timestamp; \
                     assign timestamps with assign_timestamps_and_watermarks before key_by",
                    self.name
                );
            }
            timestamp
        } else {
            // The clock read at the last tick may be the very millisecond whose windows just
            // fired; such a record belongs to the next one.
            self.processing_now.max(self.fired_through.saturating_add(1))
        };
        let key = (self.key_of)(&value);
        if self.assigner.is_merging() {
            self.add_session(key, value, time, timestamp);
        } else {
            self.add_fixed(key, value, time, timestamp);
        }
    }

    fn watermark(&mut self, watermark: Timestamp) {
        self.watermark = watermark;
        if self.event_time() {
            self.fire(watermark);
        }
        self.out.watermark(watermark);
        self.late_out.watermark(watermark);
    }

    fn idle(&mut self, idle: bool) {
        self.out.idle(idle);
        self.late_out.idle(idle);
    }

    fn tick(&mut self, now: Timestamp) -> Option<Timestamp> {
        self.processing_now = now;
        if !self.event_time() {
            self.fire(now);
            self.fired_through = self.fired_through.max(now);
        }
        let downstream = earliest(self.out.tick(now), self.late_out.tick(now));
        earliest(self.next_processing_timer(), downstream)
    }

    fn flush(&mut self) {
        self.out.flush();
        self.late_out.flush();
    }

    fn finish(&mut self) {
        // End of input fires every window that is left, as Flink's final watermark does.
        self.allowed_lateness = 0;
        self.fire(Timestamp::MAX);
        self.out.finish();
        self.late_out.finish();
    }

    fn barrier(&mut self, barrier: &CheckpointBarrier, snapshot: &mut TaskSnapshot) {
        snapshot.put_state(self.node, keyed_snapshot::state(&mut self.state, barrier));
        self.out.barrier(barrier, snapshot);
        self.late_out.barrier(barrier, snapshot);
    }

    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.state.increments().completed(checkpoint_id);
        self.out.checkpoint_complete(checkpoint_id);
        self.late_out.checkpoint_complete(checkpoint_id);
    }

    fn close(&mut self) {
        self.out.close();
        self.late_out.close();
    }
}
