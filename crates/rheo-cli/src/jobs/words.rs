//! Shared pieces of the word-count jobs: the record types and the tokenizer.

use std::fmt;

use compact_str::CompactString;

use rheo_runtime::keyed::{KeyedContext, KeyedProcessFunction};
use rheo_runtime::output::{Collector, Timestamp};
use rheo_runtime::state::{KeyedStateBackend, ValueState};
use rheo_runtime::window::{AggregateFunction, TimeWindow};

/// A word and how often it occurred (Flink's `WordWithCount`), shown as `word : count`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct WordWithCount {
    /// Short words (up to 24 bytes) are stored inline: no allocation per word.
    pub word: CompactString,
    pub count: u64,
}

impl fmt::Display for WordWithCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} : {}", self.word, self.count)
    }
}

/// A word's count in one window, shown as `[start, end) word : count` (milliseconds since the
/// epoch, end exclusive).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct WindowedWordCount {
    pub window: TimeWindow,
    pub word: CompactString,
    pub count: u64,
}

impl fmt::Display for WindowedWordCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {}) {} : {}", self.window.start, self.window.end, self.word, self.count)
    }
}

/// Splits a line on whitespace into `(word, 1)` records.
pub fn tokenize(line: &str, out: &mut Collector<'_, WordWithCount>) {
    for word in words(line) {
        out.collect(WordWithCount { word: CompactString::new(word), count: 1 });
    }
}

/// The words of a line, split on whitespace. ASCII lines (the common case) take the cheaper
/// ASCII split; other lines split on every Unicode whitespace character.
pub fn words(line: &str) -> impl Iterator<Item = &str> {
    let (ascii, unicode) = if line.is_ascii() {
        (Some(line.split_ascii_whitespace()), None)
    } else {
        (None, Some(line.split_whitespace()))
    };
    ascii.into_iter().flatten().chain(unicode.into_iter().flatten())
}

/// Sums the counts of a key's records.
pub fn sum(a: WordWithCount, b: WordWithCount) -> WordWithCount {
    WordWithCount { word: a.word, count: a.count + b.count }
}

/// Counts records in a window (the count only, the word comes from the key).
#[derive(Clone, Copy)]
pub struct CountAggregate;

impl AggregateFunction<WordWithCount> for CountAggregate {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, value: WordWithCount, acc: &mut u64) {
        *acc += value.count;
    }
    fn get_result(&self, acc: &u64) -> u64 {
        *acc
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

/// Counts each key's records and emits the totals once, when the input ends: a count per key
/// in keyed state, and an event-time timer at the end of time, which the final watermark of a
/// bounded input fires.
#[derive(Clone, Default)]
pub struct CountAtEnd {
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction<CompactString, WordWithCount, WordWithCount> for CountAtEnd {
    fn open(&mut self, state: &mut KeyedStateBackend<CompactString>) {
        self.count = Some(state.value_state("count"));
    }

    fn process_element(&mut self, value: WordWithCount, ctx: &mut KeyedContext<'_, CompactString, WordWithCount>) {
        let handle = self.count.as_ref().expect("opened");
        let count = match ctx.value(handle) {
            Some(count) => *count,
            None => {
                ctx.register_event_time_timer(Timestamp::MAX);
                0
            }
        };
        ctx.update(handle, count + value.count);
    }

    fn on_timer(&mut self, _timestamp: Timestamp, ctx: &mut KeyedContext<'_, CompactString, WordWithCount>) {
        let handle = self.count.as_ref().expect("opened");
        if let Some(&count) = ctx.value(handle) {
            let word = ctx.key().clone();
            ctx.collect(WordWithCount { word, count });
            ctx.clear(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let wc = WordWithCount { word: "to".into(), count: 2 };
        assert_eq!(wc.to_string(), "to : 2");
        let w = WindowedWordCount { window: TimeWindow::new(1000, 2000), word: "be".into(), count: 3 };
        assert_eq!(w.to_string(), "[1000, 2000) be : 3");
    }
}
