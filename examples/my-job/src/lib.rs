//! `sensor-averages`: the average reading of every sensor per event-time window.
//!
//! The input is a text file of `TIMESTAMP_MS,SENSOR,VALUE` lines; the output is one
//! `WINDOW_END_MS,SENSOR,AVERAGE` line per sensor and window, printed (Flink's `N> ` prefix at
//! parallelism > 1).

use std::sync::Arc;
use std::time::Duration;

use rheo::prelude::*;
use rheo_cli::jobs::JobDef;

/// The job's own arguments (`my-job run sensor-averages --help`).
#[derive(Debug, Clone, clap::Parser)]
pub struct SensorAverages {
    /// A file of `TIMESTAMP_MS,SENSOR,VALUE` lines, in timestamp order.
    #[arg(long)]
    pub input: std::path::PathBuf,
    /// The size of the tumbling event-time windows, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub window_ms: u64,
}

/// One reading.
type Reading = (String, f64);

/// Parses `TIMESTAMP_MS,SENSOR,VALUE`; the error names what is wrong.
pub fn parse_reading(line: &str) -> Result<(Reading, Timestamp), String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    let [timestamp, sensor, value] = fields[..] else {
        return Err(format!("expected 'TIMESTAMP_MS,SENSOR,VALUE', got {} fields", fields.len()));
    };
    let timestamp: Timestamp =
        timestamp.parse().map_err(|_| format!("'{timestamp}' is not a timestamp in milliseconds"))?;
    let value: f64 = value.parse().map_err(|_| format!("'{value}' is not a number"))?;
    if sensor.is_empty() {
        return Err("the sensor name is empty".into());
    }
    Ok(((sensor.to_string(), value), timestamp))
}

/// Sum and count of the readings of one sensor in one window.
pub struct Average;

impl AggregateFunction<Reading> for Average {
    type Acc = (f64, u64);
    type Out = f64;

    fn create_accumulator(&self) -> (f64, u64) {
        (0.0, 0)
    }

    fn add(&self, (_, value): Reading, acc: &mut (f64, u64)) {
        acc.0 += value;
        acc.1 += 1;
    }

    fn get_result(&self, acc: &(f64, u64)) -> f64 {
        acc.0 / acc.1.max(1) as f64
    }

    fn merge(&self, a: (f64, u64), b: (f64, u64)) -> (f64, u64) {
        (a.0 + b.0, a.1 + b.1)
    }
}

impl JobDef for SensorAverages {
    const NAME: &'static str = "sensor-averages";
    const DESCRIPTION: &'static str = "the average reading of every sensor per event-time window";

    fn build(self, env: &StreamEnv) -> anyhow::Result<()> {
        anyhow::ensure!(self.window_ms > 0, "--window-ms must be at least 1");
        env.read_text_file_parsed(&self.input, Arc::new(parse_reading))
            .assign_timestamps_and_watermarks(WatermarkStrategy::for_monotonous_timestamps())
            .key_by(|(sensor, _): &Reading| sensor.clone())
            .window(TumblingEventTimeWindows::of(Duration::from_millis(self.window_ms)))
            .aggregate_with(
                Average,
                |sensor: &String, window: &TimeWindow, averages: &[f64], out: &mut Collector<'_, String>| {
                    out.collect(format!("{},{sensor},{:.3}", window.end, averages[0]))
                },
            )
            .print();
        Ok(())
    }
}
