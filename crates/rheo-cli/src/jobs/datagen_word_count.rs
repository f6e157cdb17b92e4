//! Word count over generated lines, for benchmarks: `--count` lines (or unbounded) of 8 words
//! from a 10,000-word vocabulary, seeded and deterministic, counted per tumbling
//! processing-time window.

use std::time::Duration;

use rheo::api::StreamEnv;
use rheo::connectors::datagen::{DatagenConfig, word_lines};
use rheo_runtime::window::TumblingProcessingTimeWindows;

use super::words::{WordWithCount, sum, tokenize};
use super::{JobDef, parse_duration_arg};

/// Where the counts go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    /// `word : count` on stdout.
    Print,
    /// Nowhere (measures the pipeline, not the terminal).
    Discard,
}

#[derive(Debug, Clone, clap::Parser)]
pub struct DatagenWordCount {
    /// Lines to generate over all subtasks (default: unbounded).
    #[arg(long)]
    pub count: Option<u64>,
    /// Lines per second over all subtasks (default: as fast as possible).
    #[arg(long)]
    pub rate: Option<f64>,
    /// The seed of the generated lines.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The size of the tumbling processing-time windows.
    #[arg(long, default_value = "1s", value_parser = parse_duration_arg)]
    pub window: Duration,
    /// Distinct words.
    #[arg(long, default_value_t = 10_000)]
    pub vocabulary: usize,
    /// Words per line.
    #[arg(long, default_value_t = 8)]
    pub words_per_line: usize,
    /// Where the counts go.
    #[arg(long, value_enum, default_value_t = SinkKind::Print)]
    pub sink: SinkKind,
}

impl JobDef for DatagenWordCount {
    const NAME: &'static str = "datagen-word-count";
    const DESCRIPTION: &'static str =
        "counts words of generated lines per processing-time window (the word-count benchmark)";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            anyhow::bail!("--rate must be a positive number of lines per second, got {rate}");
        }
        if self.vocabulary == 0 {
            anyhow::bail!("--vocabulary must be at least 1");
        }
        let config = DatagenConfig { count: self.count, rate: self.rate };
        let counts = env
            .datagen(config, word_lines(self.seed, self.vocabulary, self.words_per_line))
            .flat_map(|line: String, out| tokenize(&line, out))
            .key_by(|wc: &WordWithCount| wc.word.clone())
            .window(TumblingProcessingTimeWindows::of(self.window))
            .reduce(sum);
        match self.sink {
            SinkKind::Print => counts.print(),
            SinkKind::Discard => counts.discard(),
        };
        Ok(())
    }
}
