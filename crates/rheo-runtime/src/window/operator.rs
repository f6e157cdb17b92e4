//! The window operator: keeps an accumulator per (key, window), fires windows when the
//! watermark (event time) or the clock (processing time) passes their end, and routes late
//! records to the late-data side output or drops them.
//!
//! Fixed windows (tumbling, sliding) are grouped by window, so one watermark fires a whole
//! window with one ordered-map lookup and no per-key timers. Session windows merge per key and
//! keep one timer per key and session end.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::graph::{Data, OperatorContext};
use crate::output::{CheckpointBarrier, Collector, NodeId, Output, TaskSnapshot, Timestamp, earliest};
use crate::state::restore::encode;
use crate::state::timers::{KeySet, TimerQueue};
use crate::task::now_ms;
use crate::window::functions::WindowAggregation;
use crate::window::{TimeDomain, TimeWindow, WindowAssigner};

pub use rheo_types::Key;

type KeyMap<K, V> = foldhash::HashMap<K, V>;

/// The contents of one fixed window.
struct Pane<K, Acc> {
    fired: bool,
    accs: KeyMap<K, Acc>,
}

/// One session window of one key.
struct Session<Acc> {
    window: TimeWindow,
    acc: Acc,
    fired: bool,
}

/// One restorable piece of window state: a key's accumulator in one window.
#[derive(serde::Serialize, serde::Deserialize)]
struct WindowEntry<K, Acc> {
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
    fixed: BTreeMap<TimeWindow, Pane<K, A::Acc>>,
    sessions: KeyMap<K, Vec<Session<A::Acc>>>,
    /// When some session of these keys fires or expires: at most one timer per key and time,
    /// those of sessions merged away are deleted.
    session_timers: TimerQueue<KeySet<K>>,
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
            fixed: BTreeMap::new(),
            sessions: KeyMap::default(),
            session_timers: TimerQueue::default(),
        };
        for entry in ctx.restore_keyed::<WindowEntry<K, A::Acc>, K>(|e| &e.key) {
            operator.restore(entry);
        }
        operator
    }

    fn restore(&mut self, entry: WindowEntry<K, A::Acc>) {
        let window = TimeWindow::new(entry.start, entry.end);
        if self.assigner.is_merging() {
            let at = window.max_timestamp();
            if !entry.fired {
                self.session_timers.register(at, entry.key.clone());
            }
            if self.allowed_lateness > 0 {
                self.session_timers.register(at.saturating_add(self.allowed_lateness), entry.key.clone());
            }
            let session = Session { window, acc: entry.acc, fired: entry.fired };
            self.sessions.entry(entry.key).or_default().push(session);
        } else {
            let pane = self.fixed.entry(window).or_insert_with(|| Pane { fired: entry.fired, accs: KeyMap::default() });
            pane.accs.insert(entry.key, entry.acc);
        }
    }

    fn snapshot_entries(&self) -> Vec<WindowEntry<&K, &A::Acc>> {
        let mut entries = Vec::new();
        for (window, pane) in &self.fixed {
            entries.extend(pane.accs.iter().map(|(key, acc)| WindowEntry {
                key,
                start: window.start,
                end: window.end,
                fired: pane.fired,
                acc,
            }));
        }
        for (key, sessions) in &self.sessions {
            entries.extend(sessions.iter().map(|s| WindowEntry {
                key,
                start: s.window.start,
                end: s.window.end,
                fired: s.fired,
                acc: &s.acc,
            }));
        }
        entries
    }

    fn event_time(&self) -> bool {
        self.assigner.domain() == TimeDomain::EventTime
    }

    /// A window whose cleanup time has passed: records for it are late.
    fn is_late(&self, window: &TimeWindow) -> bool {
        self.event_time() && window.max_timestamp().saturating_add(self.allowed_lateness) <= self.watermark
    }

    fn late(&mut self, value: I, timestamp: Timestamp) {
        self.late_out.collect(value, timestamp);
    }

    fn add_fixed(&mut self, key: K, value: I, time: Timestamp, timestamp: Timestamp) {
        // Fast path: one window per record, usually the newest open one.
        if let WindowAssigner::Tumbling { size, offset, .. } = self.assigner {
            let start = crate::window::assigner::window_start(time, offset, size);
            let window = TimeWindow::new(start, start + size);
            if !self.is_late(&window) {
                return self.add_to_pane(window, key, value);
            }
        }
        let windows = self.assigner.assign(time);
        let live = windows.iter().filter(|w| !self.is_late(w)).count();
        if live == 0 {
            return self.late(value, timestamp);
        }
        let mut remaining = live;
        let mut value = Some(value);
        let mut key = Some(key);
        for window in windows {
            if self.is_late(&window) {
                continue;
            }
            remaining -= 1;
            let (v, k) = if remaining == 0 {
                (value.take().expect("value"), key.take().expect("key"))
            } else {
                (value.clone().expect("value"), key.clone().expect("key"))
            };
            self.add_to_pane(window, k, v);
        }
    }

    fn add_to_pane(&mut self, window: TimeWindow, key: K, value: I) {
        let pane = match self.fixed.last_entry() {
            Some(last) if *last.key() == window => last.into_mut(),
            _ => self.fixed.entry(window).or_insert_with(|| Pane { fired: false, accs: KeyMap::default() }),
        };
        let aggregation = &self.aggregation;
        let acc = match pane.accs.get_mut(&key) {
            Some(acc) => acc,
            None => pane.accs.entry(key.clone()).or_insert_with(|| aggregation.create()),
        };
        aggregation.add(acc, value);
        if pane.fired {
            // A late record within the allowed lateness: fire the updated result at once.
            let mut collector = Collector::new(&mut *self.out, window.max_timestamp());
            aggregation.emit(&key, &window, acc, &mut collector);
        }
    }

    fn add_session(&mut self, key: K, value: I, time: Timestamp, timestamp: Timestamp) {
        let WindowAssigner::Session { gap, .. } = self.assigner else { unreachable!("session assigner") };
        let new = TimeWindow::new(time, time.saturating_add(gap));
        let merged = match self.sessions.get(&key) {
            Some(list) => list.iter().filter(|s| s.window.intersects(&new)).fold(new, |m, s| m.cover(&s.window)),
            None => new,
        };
        if self.is_late(&merged) {
            return self.late(value, timestamp);
        }
        let due = if self.event_time() { self.watermark } else { self.processing_now };
        let list = self.sessions.entry(key.clone()).or_default();
        let mut acc = self.aggregation.create();
        let mut index = 0;
        // The timers of the sessions merged away: deleted below unless another session needs them.
        let mut merged_away: smallvec::SmallVec<[Timestamp; 4]> = smallvec::SmallVec::new();
        while index < list.len() {
            if list[index].window.intersects(&merged) {
                let old = list.swap_remove(index);
                merged_away.push(old.window.max_timestamp());
                if self.allowed_lateness > 0 {
                    merged_away.push(old.window.max_timestamp().saturating_add(self.allowed_lateness));
                }
                self.aggregation.merge(&mut acc, old.acc);
            } else {
                index += 1;
            }
        }
        self.aggregation.add(&mut acc, value);
        let mut session = Session { window: merged, acc, fired: false };
        if merged.max_timestamp() <= due {
            // Merged into an already fired session within the allowed lateness.
            let mut collector = Collector::new(&mut *self.out, merged.max_timestamp());
            self.aggregation.emit(&key, &merged, &session.acc, &mut collector);
            session.fired = true;
        } else {
            self.session_timers.register(merged.max_timestamp(), key.clone());
        }
        let lateness = self.allowed_lateness;
        if lateness > 0 {
            let cleanup = merged.max_timestamp().saturating_add(lateness);
            self.session_timers.register(cleanup, key.clone());
        }
        list.push(session);
        let needs = |s: &Session<A::Acc>, at: Timestamp| {
            let end = s.window.max_timestamp();
            (!s.fired && end == at) || (lateness > 0 && end.saturating_add(lateness) == at)
        };
        for at in merged_away {
            if !list.iter().any(|s| needs(s, at)) {
                self.session_timers.delete(at, &key);
            }
        }
    }

    /// Fires fixed windows that end at or before `time` and drops those past their lateness.
    fn fire_fixed(&mut self, time: Timestamp) {
        let lateness = if self.event_time() { self.allowed_lateness } else { 0 };
        let due: Vec<TimeWindow> = self.fixed.keys().take_while(|w| w.max_timestamp() <= time).copied().collect();
        for window in due {
            let pane = self.fixed.get_mut(&window).expect("due window");
            if !pane.fired {
                pane.fired = true;
                let mut collector = Collector::new(&mut *self.out, window.max_timestamp());
                for (key, acc) in &pane.accs {
                    self.aggregation.emit(key, &window, acc, &mut collector);
                }
            }
            if window.max_timestamp().saturating_add(lateness) <= time {
                self.fixed.remove(&window);
            }
        }
    }

    /// Fires session windows that end at or before `time` and drops those past their lateness.
    fn fire_sessions(&mut self, time: Timestamp) {
        let lateness = if self.event_time() { self.allowed_lateness } else { 0 };
        while let Some((_, keys)) = self.session_timers.pop_due_time(time) {
            for key in keys {
                let Some(list) = self.sessions.get_mut(&key) else { continue };
                for session in list.iter_mut() {
                    if !session.fired && session.window.max_timestamp() <= time {
                        session.fired = true;
                        let mut collector = Collector::new(&mut *self.out, session.window.max_timestamp());
                        self.aggregation.emit(&key, &session.window, &session.acc, &mut collector);
                    }
                }
                list.retain(|s| s.window.max_timestamp().saturating_add(lateness) > time);
                if list.is_empty() {
                    self.sessions.remove(&key);
                }
            }
        }
    }

    fn fire(&mut self, time: Timestamp) {
        if self.assigner.is_merging() {
            self.fire_sessions(time);
        } else {
            self.fire_fixed(time);
        }
    }

    /// The next time a processing-time window needs the clock.
    fn next_processing_timer(&self) -> Option<Timestamp> {
        if self.event_time() {
            return None;
        }
        if self.assigner.is_merging() {
            self.session_timers.next_time()
        } else {
            self.fixed.keys().next().map(TimeWindow::max_timestamp)
        }
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
        snapshot.put(self.node, encode(&self.snapshot_entries()));
        self.out.barrier(barrier, snapshot);
        self.late_out.barrier(barrier, snapshot);
    }

    fn checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.out.checkpoint_complete(checkpoint_id);
        self.late_out.checkpoint_complete(checkpoint_id);
    }

    fn close(&mut self) {
        self.out.close();
        self.late_out.close();
    }
}
