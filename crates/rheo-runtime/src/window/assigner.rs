//! Which windows a record belongs to. Alignment follows Flink: a tumbling window of size `s`
//! starts at multiples of `s` (plus the offset) since the epoch.

use std::time::Duration;

use smallvec::SmallVec;

use crate::output::Timestamp;

/// A time interval `[start, end)`. Ordered by end first, so windows fire in order of their end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TimeWindow {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl TimeWindow {
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        Self { start, end }
    }

    /// The largest timestamp inside the window; results carry it as their timestamp.
    pub fn max_timestamp(&self) -> Timestamp {
        self.end - 1
    }

    /// Session windows merge when they overlap or touch.
    pub fn intersects(&self, other: &TimeWindow) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    pub fn cover(&self, other: &TimeWindow) -> TimeWindow {
        TimeWindow::new(self.start.min(other.start), self.end.max(other.end))
    }
}

impl Ord for TimeWindow {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.end, self.start).cmp(&(other.end, other.start))
    }
}

impl PartialOrd for TimeWindow {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Whether windows follow the records' event time or the machine's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeDomain {
    EventTime,
    ProcessingTime,
}

/// Assigns records to windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    Tumbling { size: i64, offset: i64, domain: TimeDomain },
    Sliding { size: i64, slide: i64, offset: i64, domain: TimeDomain },
    Session { gap: i64, domain: TimeDomain },
}

fn millis(d: Duration) -> i64 {
    let ms = d.as_millis() as i64;
    assert!(ms > 0, "window sizes, slides and gaps must be at least 1 ms, got {d:?}");
    ms
}

impl WindowAssigner {
    pub fn domain(&self) -> TimeDomain {
        match *self {
            WindowAssigner::Tumbling { domain, .. }
            | WindowAssigner::Sliding { domain, .. }
            | WindowAssigner::Session { domain, .. } => domain,
        }
    }

    /// Session windows merge; the others are fixed.
    pub fn is_merging(&self) -> bool {
        matches!(self, WindowAssigner::Session { .. })
    }

    /// Shifts the alignment of tumbling and sliding windows (e.g. for time zones).
    pub fn with_offset(self, offset: Duration) -> Self {
        let off = offset.as_millis() as i64;
        match self {
            WindowAssigner::Tumbling { size, domain, .. } => WindowAssigner::Tumbling { size, offset: off, domain },
            WindowAssigner::Sliding { size, slide, domain, .. } => {
                WindowAssigner::Sliding { size, slide, offset: off, domain }
            }
            session => session,
        }
    }

    /// The windows that contain `timestamp`.
    pub fn assign(&self, timestamp: Timestamp) -> SmallVec<[TimeWindow; 2]> {
        let mut windows = SmallVec::new();
        match *self {
            WindowAssigner::Tumbling { size, offset, .. } => {
                let start = window_start(timestamp, offset, size);
                windows.push(TimeWindow::new(start, start + size));
            }
            WindowAssigner::Sliding { size, slide, offset, .. } => {
                let last_start = window_start(timestamp, offset, slide);
                let mut start = last_start;
                while start > timestamp - size {
                    windows.push(TimeWindow::new(start, start + size));
                    start -= slide;
                }
            }
            WindowAssigner::Session { gap, .. } => windows.push(TimeWindow::new(timestamp, timestamp + gap)),
        }
        windows
    }
}

/// Flink's `TimeWindow.getWindowStartWithOffset`.
pub fn window_start(timestamp: Timestamp, offset: i64, size: i64) -> Timestamp {
    timestamp - (timestamp - offset).rem_euclid(size)
}

/// Tumbling windows on event time (Flink's name).
pub struct TumblingEventTimeWindows;
impl TumblingEventTimeWindows {
    pub fn of(size: Duration) -> WindowAssigner {
        WindowAssigner::Tumbling { size: millis(size), offset: 0, domain: TimeDomain::EventTime }
    }
}

/// Tumbling windows on processing time (Flink's name).
pub struct TumblingProcessingTimeWindows;
impl TumblingProcessingTimeWindows {
    pub fn of(size: Duration) -> WindowAssigner {
        WindowAssigner::Tumbling { size: millis(size), offset: 0, domain: TimeDomain::ProcessingTime }
    }
}

/// Sliding windows on event time (Flink's name).
pub struct SlidingEventTimeWindows;
impl SlidingEventTimeWindows {
    pub fn of(size: Duration, slide: Duration) -> WindowAssigner {
        WindowAssigner::Sliding { size: millis(size), slide: millis(slide), offset: 0, domain: TimeDomain::EventTime }
    }
}

/// Sliding windows on processing time (Flink's name).
pub struct SlidingProcessingTimeWindows;
impl SlidingProcessingTimeWindows {
    pub fn of(size: Duration, slide: Duration) -> WindowAssigner {
        WindowAssigner::Sliding {
            size: millis(size),
            slide: millis(slide),
            offset: 0,
            domain: TimeDomain::ProcessingTime,
        }
    }
}

/// Session windows on event time (Flink's name).
pub struct EventTimeSessionWindows;
impl EventTimeSessionWindows {
    pub fn with_gap(gap: Duration) -> WindowAssigner {
        WindowAssigner::Session { gap: millis(gap), domain: TimeDomain::EventTime }
    }
}

/// Session windows on processing time (Flink's name).
pub struct ProcessingTimeSessionWindows;
impl ProcessingTimeSessionWindows {
    pub fn with_gap(gap: Duration) -> WindowAssigner {
        WindowAssigner::Session { gap: millis(gap), domain: TimeDomain::ProcessingTime }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_aligns_to_epoch_and_offset() {
        let w = TumblingEventTimeWindows::of(Duration::from_secs(5));
        assert_eq!(w.assign(12_345).as_slice(), &[TimeWindow::new(10_000, 15_000)]);
        assert_eq!(w.assign(-1).as_slice(), &[TimeWindow::new(-5_000, 0)]);
        let shifted = w.with_offset(Duration::from_secs(1));
        assert_eq!(shifted.assign(10_500).as_slice(), &[TimeWindow::new(6_000, 11_000)]);
    }

    #[test]
    fn sliding_assigns_size_over_slide_windows() {
        let w = SlidingEventTimeWindows::of(Duration::from_secs(10), Duration::from_secs(5));
        let got = w.assign(12_000);
        assert_eq!(got.as_slice(), &[TimeWindow::new(10_000, 20_000), TimeWindow::new(5_000, 15_000)]);
        // A boundary timestamp belongs to the window starting there, not the one ending there.
        assert_eq!(w.assign(10_000).len(), 2);
        assert!(w.assign(10_000).iter().all(|win| win.start <= 10_000 && 10_000 < win.end));
    }

    #[test]
    fn sessions_merge_when_touching() {
        let a = TimeWindow::new(0, 10);
        assert!(a.intersects(&TimeWindow::new(10, 20)));
        assert!(!a.intersects(&TimeWindow::new(11, 20)));
        assert_eq!(a.cover(&TimeWindow::new(5, 30)), TimeWindow::new(0, 30));
    }
}
