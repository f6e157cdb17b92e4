//! Word count over a text file.
//!
//! Plain: prints `word : count` for every word once the file ends.
//!
//! `--event-time --window SIZE`: each line is `TIMESTAMP_MS<TAB>TEXT`; words are counted per
//! event-time tumbling window and printed as `[start, end) word : count` (milliseconds since the
//! epoch, end exclusive) as each window closes. Watermarks trail the largest timestamp by
//! `--out-of-orderness` (default 0); records later than that are dropped, as in Flink. A line
//! that does not parse fails the job with the file's line number and what was expected; blank
//! lines are skipped.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use compact_str::CompactString;

use rheo::api::StreamEnv;
use rheo::connectors::filesink::write_csv_record;
use rheo_runtime::operators::WatermarkStrategy;
use rheo_runtime::output::{Collector, NO_TIMESTAMP, Timestamp};
use rheo_runtime::window::{TimeWindow, TumblingEventTimeWindows};

use super::words::{CountAggregate, CountAtEnd, WindowedWordCount, WordWithCount, tokenize};
use super::{JobDef, parse_duration_arg, parse_non_negative_duration_arg};

#[derive(Debug, Clone, clap::Parser)]
pub struct WordCount {
    /// The text file to count.
    #[arg(long)]
    pub input: PathBuf,
    /// Lines are `TIMESTAMP_MS<TAB>TEXT`; count per event-time window.
    #[arg(long)]
    pub event_time: bool,
    /// The size of the event-time tumbling windows.
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg, requires = "event_time")]
    pub window: Duration,
    /// How far timestamps may go back behind the largest seen (e.g. `500ms`).
    #[arg(long, default_value = "0ms", value_parser = parse_non_negative_duration_arg, requires = "event_time")]
    pub out_of_orderness: Duration,
    /// Write CSV records `window_end_ms,word,count` (empty window end for final counts; words
    /// holding `,` or `"` quoted)
    /// exactly once into part files under this URL (`file:///dir`, `s3://bucket/prefix`, ...)
    /// instead of printing; a part appears when the checkpoint covering it completes.
    #[arg(long, value_name = "URL")]
    pub output: Option<String>,
    /// Read at most this many lines per second (over all subtasks), e.g. to watch a job
    /// survive a failure.
    #[arg(long, value_name = "LINES", value_parser = parse_rate)]
    pub rate: Option<f64>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate.is_finite() => Ok(rate),
        _ => Err(format!("'{text}' is not a positive number of lines per second")),
    }
}

/// The expected line shape, for error messages.
const EXPECTED: &str = "expected 'TIMESTAMP_MS<TAB>TEXT'";

/// Parses `TIMESTAMP_MS<TAB>TEXT`; blank lines become `None`.
pub fn parse_timestamped_line(line: &str) -> Result<(Option<(Timestamp, String)>, Timestamp), String> {
    if line.trim().is_empty() {
        return Ok((None, NO_TIMESTAMP));
    }
    let Some((ts, text)) = line.split_once('\t') else {
        return Err(format!("{EXPECTED}, found no tab in '{}'", shorten(line)));
    };
    let ts: Timestamp = ts
        .trim()
        .parse()
        .map_err(|_| format!("{EXPECTED}, but '{}' is not a timestamp in milliseconds", shorten(ts.trim())))?;
    Ok((Some((ts, text.to_string())), NO_TIMESTAMP))
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

impl JobDef for WordCount {
    const NAME: &'static str = "word-count";
    const DESCRIPTION: &'static str = "counts the words of a text file (or per event-time window with --event-time)";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        if !self.event_time {
            let counts = env
                .read_text_file_paced(
                    &self.input,
                    Arc::new(|line: &str| Ok((line.to_string(), NO_TIMESTAMP))),
                    self.rate,
                )
                .flat_map(|line: String, out| tokenize(&line, out))
                .key_by(|wc: &WordWithCount| wc.word.clone())
                .process(CountAtEnd::default());
            match &self.output {
                Some(url) => {
                    counts.sink_to_files(url, |wc: &WordWithCount, csv: &mut String| {
                        write_csv_record(csv, ["", wc.word.as_str(), &wc.count.to_string()]);
                    })?;
                }
                None => {
                    counts.print();
                }
            }
            return Ok(());
        }
        let strategy = WatermarkStrategy::for_bounded_out_of_orderness(self.out_of_orderness)
            .with_timestamp_assigner(|record: &(Timestamp, String), _| record.0);
        let counts = env
            .read_text_file_paced(&self.input, Arc::new(parse_timestamped_line), self.rate)
            .flat_map(|record: Option<(Timestamp, String)>, out| {
                if let Some(record) = record {
                    out.collect(record)
                }
            })
            .assign_timestamps_and_watermarks(strategy)
            .flat_map(|(_, text): (Timestamp, String), out| tokenize(&text, out))
            .key_by(|wc: &WordWithCount| wc.word.clone())
            .window(TumblingEventTimeWindows::of(self.window))
            .aggregate_with(
                CountAggregate,
                |word: &CompactString,
                 window: &TimeWindow,
                 counts: &[u64],
                 out: &mut Collector<'_, WindowedWordCount>| {
                    for &count in counts {
                        out.collect(WindowedWordCount { window: *window, word: word.clone(), count });
                    }
                },
            );
        match &self.output {
            Some(url) => {
                counts.sink_to_files(url, |c: &WindowedWordCount, csv: &mut String| {
                    write_csv_record(csv, [&c.window.end.to_string(), c.word.as_str(), &c.count.to_string()]);
                })?;
            }
            None => {
                counts.print();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamped_lines() {
        assert_eq!(parse_timestamped_line("1000\tto be").unwrap().0, Some((1000, "to be".to_string())));
        assert_eq!(parse_timestamped_line("  ").unwrap().0, None);
        let err = parse_timestamped_line("1000 to be").unwrap_err();
        assert!(err.contains("TIMESTAMP_MS<TAB>TEXT") && err.contains("no tab"), "{err}");
        let err = parse_timestamped_line("x1\tto be").unwrap_err();
        assert!(err.contains("'x1' is not a timestamp"), "{err}");
    }
}
