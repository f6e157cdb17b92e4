//! Synthetic metric histories: a small fluid model of a pipeline (a source and a chain of
//! vertices with a capacity per subtask) that produces the samples a real job would report,
//! and a loop that feeds them to the autoscaler and applies its decisions.

#![allow(dead_code)]

use rheo_autoscaler::{
    AutoscalerConfig, AutoscalerInput, Decision, MetricHistory, MetricSample, Outcome, Topology, decide,
};

pub const SECOND: u64 = 1_000;
pub const MINUTE: u64 = 60 * SECOND;

/// One vertex of the simulated chain.
pub struct SimVertex {
    pub id: &'static str,
    /// Records per second one subtask processes when always busy.
    pub capacity_per_subtask: f64,
    /// Records out per record in.
    pub selectivity: f64,
    pub parallelism: u32,
    pub max_parallelism: u32,
    /// Share of the vertex's records that carry one hot key, so go to one subtask whatever
    /// the parallelism (0: the load is spread evenly).
    pub hot_key_share: f64,
}

pub fn vertex(id: &'static str, capacity_per_subtask: f64, parallelism: u32) -> SimVertex {
    SimVertex { id, capacity_per_subtask, selectivity: 1.0, parallelism, max_parallelism: 128, hot_key_share: 0.0 }
}

impl SimVertex {
    /// Each subtask's share of the vertex's records: the hot key's subtask first.
    pub fn subtask_shares(&self) -> Vec<f64> {
        let p = f64::from(self.parallelism.max(1));
        let spread = (1.0 - self.hot_key_share) / p;
        (0..self.parallelism.max(1)).map(|k| if k == 0 { self.hot_key_share + spread } else { spread }).collect()
    }
}

/// A source followed by a chain of vertices, fed by an arrival rate (records per second at a
/// time in seconds), sampled every `step_ms`.
pub struct Sim {
    pub chain: Vec<SimVertex>,
    pub arrival: Box<dyn Fn(f64) -> f64>,
    pub now_ms: u64,
    pub step_ms: u64,
    pub backlog: f64,
    pub report_backlog: bool,
    pub history: MetricHistory,
    pub last_rescale_ms: u64,
    pub slots: u32,
    pub task_managers: u32,
    pub config: AutoscalerConfig,
    /// Every rescale the loop applied: (time, decision).
    pub rescales: Vec<(u64, Decision)>,
}

impl Sim {
    pub fn new(chain: Vec<SimVertex>, arrival: impl Fn(f64) -> f64 + 'static) -> Self {
        let largest = chain.iter().map(|v| v.parallelism).max().unwrap_or(1);
        Self {
            chain,
            arrival: Box::new(arrival),
            now_ms: 0,
            step_ms: 10 * SECOND,
            backlog: 0.0,
            report_backlog: true,
            history: MetricHistory::new(),
            last_rescale_ms: 0,
            slots: 1,
            task_managers: largest,
            config: AutoscalerConfig::default(),
            rescales: Vec::new(),
        }
    }

    pub fn topology(&self) -> Topology {
        let mut t = Topology::new().source(self.chain[0].id);
        for w in self.chain.windows(2) {
            t = t.vertex(w[1].id, &[w[0].id]);
        }
        t
    }

    pub fn parallelism(&self, id: &str) -> u32 {
        self.chain.iter().find(|v| v.id == id).expect("vertex").parallelism
    }

    /// Advances one step and records one sample per vertex at the step's end, with rates over
    /// the step as a metric reporter would.
    pub fn step(&mut self) {
        let dt = self.step_ms as f64 / 1000.0;
        let mid = (self.now_ms as f64 + self.step_ms as f64 / 2.0) / 1000.0;
        self.now_ms += self.step_ms;
        let arriving = (self.arrival)(mid) * dt;

        // Records reaching each vertex per source record, and the source-record throughput
        // each vertex allows.
        let mut reach = Vec::with_capacity(self.chain.len());
        let mut r = 1.0;
        for v in &self.chain {
            reach.push(r);
            r *= v.selectivity;
        }
        // A vertex is as fast as its busiest subtask allows.
        let limits: Vec<f64> = self
            .chain
            .iter()
            .zip(&reach)
            .map(|(v, r)| {
                let busiest = v.subtask_shares().into_iter().fold(0.0, f64::max);
                v.capacity_per_subtask / busiest / r
            })
            .collect();
        let limit = limits.iter().copied().fold(f64::INFINITY, f64::min);
        let available = self.backlog + arriving;
        let processed = (available / dt).min(limit);
        self.backlog = (available - processed * dt).max(0.0);
        let saturated = processed >= limit - 1e-9;
        let bottleneck = limits.iter().position(|&l| l <= limit + 1e-9).unwrap_or(0);

        for (i, v) in self.chain.iter().enumerate() {
            let records_in = processed * reach[i];
            // Each subtask's busy share, aggregated as the REST sample does.
            let busy_each: Vec<f64> =
                v.subtask_shares().iter().map(|share| (records_in * share / v.capacity_per_subtask).min(1.0)).collect();
            let busy = self.config.busy_time_aggregator.of(&busy_each).expect("a subtask");
            let mean_busy = busy_each.iter().sum::<f64>() / busy_each.len() as f64;
            let (back_pressured, idle) =
                if saturated && i < bottleneck { (1.0 - mean_busy, 0.0) } else { (0.0, 1.0 - mean_busy) };
            self.history.push(MetricSample {
                timestamp_ms: self.now_ms,
                vertex: v.id.into(),
                parallelism: v.parallelism,
                max_parallelism: v.max_parallelism,
                // Like Flink's sources, the source reports what it reads as records out only.
                num_records_in_per_second: if i == 0 { 0.0 } else { records_in },
                num_records_out_per_second: records_in * v.selectivity,
                busy_time_ms_per_second: busy * 1000.0,
                back_pressured_time_ms_per_second: back_pressured * 1000.0,
                idle_time_ms_per_second: idle * 1000.0,
                pending_records: (i == 0 && self.report_backlog).then_some(self.backlog),
            });
        }
    }

    /// Simulates up to `until_ms` without asking the autoscaler.
    pub fn advance_to(&mut self, until_ms: u64) {
        while self.now_ms < until_ms {
            self.step();
        }
    }

    /// Asks the autoscaler now, without applying anything.
    pub fn decide(&self) -> Outcome {
        let topology = self.topology();
        let input = AutoscalerInput {
            now_ms: self.now_ms,
            topology: &topology,
            history: &self.history,
            last_rescale_ms: self.last_rescale_ms,
            task_managers: self.task_managers,
            slots_per_task_manager: self.slots,
        };
        decide(&input, &self.config).expect("valid input")
    }

    /// Simulates up to `until_ms`, asking the autoscaler every `every_ms` and applying each
    /// rescale at once (the backlog carries over, as with a rescale from a checkpoint).
    pub fn run(&mut self, until_ms: u64, every_ms: u64) {
        while self.now_ms < until_ms {
            self.step();
            if self.now_ms.is_multiple_of(every_ms) {
                let outcome = self.decide();
                self.apply(&outcome.decision);
            }
        }
    }

    pub fn apply(&mut self, decision: &Decision) {
        if let Decision::Rescale { parallelism, task_managers, .. } = decision {
            for change in parallelism {
                let v = self.chain.iter_mut().find(|v| v.id == change.vertex.0).expect("vertex");
                v.parallelism = change.to;
            }
            self.task_managers = *task_managers;
            self.last_rescale_ms = self.now_ms;
            self.rescales.push((self.now_ms, decision.clone()));
        }
    }
}

/// A history written by hand: `samples(vertex, parallelism, from, to, step, f)` adds one sample
/// per step with the rates `f(t_ms)` returns.
pub struct HistoryBuilder {
    pub history: MetricHistory,
}

/// Rates of one sample: in, out, busy, back-pressured, idle (ms per second), pending.
#[derive(Clone, Copy)]
pub struct Rates {
    pub records_in: f64,
    pub records_out: f64,
    pub busy_ms: f64,
    pub back_pressured_ms: f64,
    pub pending: Option<f64>,
}

impl Rates {
    pub fn new(records_in: f64, busy_ms: f64) -> Self {
        Self { records_in, records_out: records_in, busy_ms, back_pressured_ms: 0.0, pending: None }
    }
}

impl HistoryBuilder {
    pub fn new() -> Self {
        Self { history: MetricHistory::new() }
    }

    pub fn samples(
        mut self,
        vertex: &str,
        parallelism: u32,
        (from_ms, to_ms, step_ms): (u64, u64, u64),
        rates: impl Fn(u64) -> Rates,
    ) -> Self {
        let mut t = from_ms;
        while t <= to_ms {
            let r = rates(t);
            self.history.push(MetricSample {
                timestamp_ms: t,
                vertex: vertex.into(),
                parallelism,
                max_parallelism: 128,
                num_records_in_per_second: r.records_in,
                num_records_out_per_second: r.records_out,
                busy_time_ms_per_second: r.busy_ms,
                back_pressured_time_ms_per_second: r.back_pressured_ms,
                idle_time_ms_per_second: (1000.0 - r.busy_ms - r.back_pressured_ms).max(0.0),
                pending_records: r.pending,
            });
            t += step_ms;
        }
        self
    }
}
