//! The autoscaler on synthetic histories. Unless a test says otherwise: Flink's defaults
//! (window 15 min, stabilisation 5 min, utilisation 0.7 ± 0.3, catch-up 30 min, scale-down
//! interval 1 h), a sample every 10 s from t = 10 s, and the job started at t = 0, so the first
//! full window (samples 300 s..=1200 s) is there at t = 1200 s.

mod common;

use common::{HistoryBuilder, MINUTE, Rates, SECOND, Sim, vertex};
use rheo_autoscaler::{
    AutoscalerConfig, AutoscalerInput, BusyTimeAggregator, Decision, NoChangeReason, Outcome, Topology, VertexReason,
    decide,
};

fn close(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0)
}

macro_rules! assert_close {
    ($actual:expr, $expected:expr) => {{
        let (a, e): (f64, f64) = ($actual, $expected);
        assert!(close(a, e), "{} = {a}, expected {e}", stringify!($actual));
    }};
}

fn no_change(reason: NoChangeReason) -> Decision {
    Decision::NoChange { reason }
}

/// A source that keeps up easily and a map of two subtasks of 1000 records/s each.
fn source_and_map(arrival: impl Fn(f64) -> f64 + 'static) -> Sim {
    Sim::new(vec![vertex("src", 10_000.0, 1), vertex("map", 1_000.0, 2)], arrival)
}

#[test]
fn steady_load_keeps_the_parallelism() {
    let mut sim = source_and_map(|_| 1_400.0);
    sim.advance_to(1_190 * SECOND);
    let outcome = sim.decide();
    let reason = NoChangeReason::CollectingMetrics { vertex: "src".into(), until_ms: 1_200 * SECOND };
    assert_eq!(outcome.decision, no_change(reason));

    sim.advance_to(1_200 * SECOND);
    let outcome = sim.decide();
    assert_eq!(outcome.decision, no_change(NoChangeReason::NothingToChange));
    let map = outcome.vertex("map").unwrap();
    assert_close!(map.input_rate, 1_400.0);
    assert_close!(map.busy_ratio, 0.7);
    assert_close!(map.true_rate.unwrap(), 2_000.0);
    assert_close!(map.target_rate, 1_400.0);
    assert_eq!((map.wanted_parallelism, map.reason), (2, VertexReason::WithinBand));
    let src = outcome.vertex("src").unwrap();
    assert_eq!((src.wanted_parallelism, src.reason), (1, VertexReason::AtMinParallelism));

    sim.run(4 * 60 * MINUTE, MINUTE);
    assert_eq!(sim.rescales, []);
}

#[test]
fn a_ramp_scales_up_to_the_arrival_rate_plus_catch_up() {
    // 500/s rising to 2000/s over 10 min, then steady; the map (one subtask of 1000/s) falls
    // behind from t = 200 s, and the backlog grows.
    let mut sim = Sim::new(vec![vertex("src", 10_000.0, 1), vertex("map", 1_000.0, 1)], |t| {
        500.0 + 1_500.0 * t.min(600.0) / 600.0
    });
    sim.run(1_200 * SECOND, 10 * SECOND);
    assert_eq!(sim.rescales.len(), 1, "{:?}", sim.rescales);
    assert_eq!(sim.rescales[0].0, 1_200 * SECOND);

    // Backlog 12 500 at 300 s and 800 000 at 1200 s: arrival = 1000 read + 875 growth = 1875/s
    // (the mean arrival over the window); catch-up 800 000 / 1800 s = 444.4/s; target 2319.4/s
    // at 1000/s per subtask and 70 %: ceil(3.31) = 4 subtasks.
    let topology = sim.topology();
    let input = AutoscalerInput {
        now_ms: 1_200 * SECOND,
        topology: &topology,
        history: &sim.history,
        last_rescale_ms: 0,
        task_managers: 1,
        slots_per_task_manager: 1,
    };
    let outcome = decide(&input, &sim.config).unwrap();
    let src = outcome.vertex("src").unwrap();
    assert_close!(src.backlog.unwrap(), 800_000.0);
    assert_close!(src.target_rate, 1_875.0 + 800_000.0 / 1_800.0);
    let map = outcome.vertex("map").unwrap();
    assert_close!(map.busy_ratio, 1.0);
    assert_close!(map.utilization.unwrap(), (1_875.0 + 800_000.0 / 1_800.0) / 1_000.0);
    assert_eq!((map.wanted_parallelism, map.reason), (4, VertexReason::ScaleUp));
    assert_eq!(outcome.decision.new_parallelism("map"), Some(4));
    assert_eq!(outcome.decision.new_parallelism("src"), Some(1));
    assert_eq!(outcome.decision.task_managers(), Some(4));

    // Right after the rescale: stabilising.
    sim.step();
    assert_eq!(sim.decide().decision, no_change(NoChangeReason::Stabilizing { until_ms: 1_500 * SECOND }));

    // Four subtasks work the backlog off by 1600 s and then run at 50 %: within the band, so
    // nothing more happens for hours.
    sim.run(5 * 60 * MINUTE, 10 * SECOND);
    assert_eq!(sim.rescales.len(), 1, "{:?}", sim.rescales);
    assert_eq!(sim.parallelism("map"), 4);
    assert_eq!(sim.backlog, 0.0);
}

#[test]
fn a_short_spike_is_averaged_away() {
    // One minute at 4000/s (twice what the map can do) in a steady 1400/s.
    let spike = |t: f64| if (2_000.0..2_060.0).contains(&t) { 4_000.0 } else { 1_400.0 };
    let mut sim = source_and_map(spike);
    sim.run(4 * 60 * MINUTE, 10 * SECOND);
    assert_eq!(sim.rescales, []);

    // Its worst moment: at 2060 s the window holds 6 saturated samples of 91 and a backlog of
    // 120 000: target 1439.6 read + 133.3 growth + 66.7 catch-up = 1639.6/s, 82 % of 2000/s.
    let mut sim = source_and_map(spike);
    sim.advance_to(2_060 * SECOND);
    let outcome = sim.decide();
    assert_eq!(outcome.decision, no_change(NoChangeReason::NothingToChange));
    let map = outcome.vertex("map").unwrap();
    let read = (85.0 * 1_400.0 + 6.0 * 2_000.0) / 91.0;
    assert_close!(map.target_rate, read + 120_000.0 / 900.0 + 120_000.0 / 1_800.0);
    assert_eq!(map.reason, VertexReason::WithinBand);

    // With a 30 s window the same spike does rescale: at 2010 s the window's 4 samples read
    // 1550/s on average, the backlog grew 20 000 in 30 s: target 2227.8/s, ceil(3.18) = 4.
    let mut sim = source_and_map(spike);
    sim.config.metrics_window_ms = 30 * SECOND;
    sim.run(2_100 * SECOND, 10 * SECOND);
    assert_eq!(sim.rescales.len(), 1, "{:?}", sim.rescales);
    assert_eq!(sim.rescales[0].0, 2_010 * SECOND);
    assert_eq!(sim.rescales[0].1.new_parallelism("map"), Some(4));
}

#[test]
fn a_backlog_scales_up_to_catch_up() {
    // 1400/s arrive, but 3.6 M records wait: the map works flat out at 2000/s and the backlog
    // shrinks by only 600/s.
    let mut sim = source_and_map(|_| 1_400.0);
    sim.backlog = 3_600_000.0;
    sim.slots = 2;
    sim.task_managers = 1;
    sim.advance_to(1_200 * SECOND);
    let outcome = sim.decide();
    // Backlog 2.88 M at 1200 s: catch-up 1600/s on top of the 1400/s arriving (2000/s read
    // minus 600/s shrinking): 3000/s at 500/s per subtask and 70 %: ceil(4.29) = 5.
    let src = outcome.vertex("src").unwrap();
    assert_close!(src.backlog.unwrap(), 2_880_000.0);
    assert_close!(src.input_rate, 2_000.0);
    assert_close!(src.target_rate, 3_000.0);
    assert_eq!(outcome.decision.new_parallelism("map"), Some(5));
    assert_eq!(outcome.decision.task_managers(), Some(3));
    assert_eq!(outcome.decision.to_string(), "rescale map 2→5; TaskManagers 1→3");

    // Without the backlog metric the map looks merely saturated (utilisation 100 %, the top of
    // the band): no change.
    let mut sim = source_and_map(|_| 1_400.0);
    sim.backlog = 3_600_000.0;
    sim.report_backlog = false;
    sim.advance_to(1_200 * SECOND);
    assert_eq!(sim.decide().decision, no_change(NoChangeReason::NothingToChange));
}

/// A deterministic pseudo-random number in [-1, 1] for each step.
fn noise(t: f64) -> f64 {
    let mut x = (t * 10.0) as u64 ^ 0x9E37_79B9_7F4A_7C15;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x % 20_001) as f64 / 10_000.0 - 1.0
}

#[test]
fn noisy_rates_do_not_flap() {
    for level in [1_400.0, 1_800.0] {
        for window in [15 * MINUTE, MINUTE] {
            let mut sim = source_and_map(move |t| level * (1.0 + 0.1 * noise(t)));
            sim.config.metrics_window_ms = window;
            sim.run(4 * 60 * MINUTE, 10 * SECOND);
            assert_eq!(sim.rescales, [], "level {level}, window {window} ms");
        }
    }
    // The noise is real: ±10 % with both extremes reached.
    let samples: Vec<f64> = (0..10_000).map(|i| noise(f64::from(i) * 10.0 + 5.0)).collect();
    assert!(samples.iter().all(|n| (-1.0..=1.0).contains(n)));
    assert!(samples.iter().any(|&n| n < -0.95) && samples.iter().any(|&n| n > 0.95));
}

#[test]
fn an_idle_source_never_scales_up_and_scales_down_after_the_delay() {
    let mut sim = Sim::new(vec![vertex("src", 10_000.0, 4), vertex("sink", 1_000.0, 4)], |_| 0.0);
    sim.slots = 2;
    sim.task_managers = 2;
    sim.advance_to(1_200 * SECOND);
    let outcome = sim.decide();
    assert_eq!(outcome.decision, no_change(NoChangeReason::ScaleDownDelayed { until_ms: 4_800 * SECOND }));
    for v in &outcome.vertices {
        assert_eq!(v.true_rate, None);
        assert_eq!(v.wanted_parallelism, 1);
        assert_eq!(v.reason, VertexReason::ScaleDownDelayed { until_ms: 4_800 * SECOND });
    }

    sim.run(6 * 60 * MINUTE, 10 * SECOND);
    assert_eq!(sim.rescales.len(), 1, "{:?}", sim.rescales);
    let (at, decision) = &sim.rescales[0];
    assert_eq!(*at, 4_800 * SECOND);
    assert_eq!(decision.to_string(), "rescale src 4→1, sink 4→1; TaskManagers 2→1");
}

#[test]
fn a_stalled_source_with_a_backlog_is_not_scaled_up() {
    // It reads nothing and is never busy while its backlog grows: its capacity is unknown.
    let h = HistoryBuilder::new()
        .samples("src", 2, (10 * SECOND, 1_200 * SECOND, 10 * SECOND), |t| Rates {
            pending: Some(t as f64),
            ..Rates::new(0.0, 0.0)
        })
        .samples("map", 2, (10 * SECOND, 1_200 * SECOND, 10 * SECOND), |_| Rates::new(0.0, 0.0));
    let topology = Topology::new().source("src").vertex("map", &["src"]);
    let input = AutoscalerInput {
        now_ms: 1_200 * SECOND,
        topology: &topology,
        history: &h.history,
        last_rescale_ms: 0,
        task_managers: 2,
        slots_per_task_manager: 1,
    };
    let outcome = decide(&input, &AutoscalerConfig::default()).unwrap();
    assert_eq!(outcome.decision, no_change(NoChangeReason::NothingToChange));
    let src = outcome.vertex("src").unwrap();
    // Growth 1000/s + catch-up 1 200 000 / 1800 s.
    assert_close!(src.target_rate, 1_000.0 + 1_200_000.0 / 1_800.0);
    for v in &outcome.vertices {
        assert_eq!((v.wanted_parallelism, v.reason), (2, VertexReason::Idle), "{v}");
    }
}

#[test]
fn the_bottleneck_scales_up_not_the_back_pressured_vertices() {
    // 2000/s arrive; the sink (one subtask of 1000/s) limits the job to 1000/s, so the source
    // and map (capacity 10 000/s each) are 10 % busy and 90 % back-pressured.
    let mut sim =
        Sim::new(vec![vertex("src", 5_000.0, 2), vertex("map", 5_000.0, 2), vertex("sink", 1_000.0, 1)], |_| 2_000.0);
    sim.slots = 2;
    sim.task_managers = 1;
    sim.advance_to(1_200 * SECOND);
    let outcome = sim.decide();
    // Target: 1000 read + 1000 growth + 1 200 000 / 1800 catch-up = 2666.7/s everywhere.
    let target = 2_000.0 + 1_200_000.0 / 1_800.0;
    let map = outcome.vertex("map").unwrap();
    assert_close!(map.busy_ratio, 0.1);
    assert_close!(map.back_pressured_ratio, 0.9);
    assert_close!(map.true_rate.unwrap(), 10_000.0);
    assert_close!(map.target_rate, target);
    // It could do with one subtask, but not for an hour yet; it certainly wants no more.
    assert_eq!(map.wanted_parallelism, 1);
    assert_eq!(map.new_parallelism, 2);
    assert_eq!(map.reason, VertexReason::ScaleDownDelayed { until_ms: 4_800 * SECOND });
    let sink = outcome.vertex("sink").unwrap();
    assert_close!(sink.busy_ratio, 1.0);
    assert_close!(sink.target_rate, target);
    // ceil(2666.7 / 700) = 4.
    assert_eq!((sink.wanted_parallelism, sink.reason), (4, VertexReason::ScaleUp));
    assert_eq!(outcome.decision.to_string(), "rescale sink 1→4; TaskManagers 1→2");
    assert_eq!(outcome.decision.new_parallelism("src"), Some(2));
}

/// A keyed map of two subtasks (1000/s each) where half the records carry one hot key: the
/// hot key's subtask gets 75 % of them and limits the map to 1333/s, while the other idles.
fn skewed_map(aggregator: BusyTimeAggregator) -> Sim {
    let mut map = vertex("map", 1_000.0, 2);
    map.hot_key_share = 0.5;
    let mut sim = Sim::new(vec![vertex("src", 10_000.0, 1), map], |_| 1_400.0);
    sim.config.busy_time_aggregator = aggregator;
    sim
}

#[test]
fn key_skew_scales_up_on_the_busiest_subtask() {
    // 1400/s arrive; the map processes 1333/s (its hot subtask always busy, the other 33 %),
    // so the backlog grows by 67/s: 80 000 at 1200 s.
    let mut sim = skewed_map(BusyTimeAggregator::default());
    sim.advance_to(1_200 * SECOND);
    let outcome = sim.decide();
    let map = outcome.vertex("map").unwrap();
    assert_close!(map.input_rate, 4_000.0 / 3.0);
    assert_close!(map.busy_ratio, 1.0);
    assert_close!(map.true_rate.unwrap(), 4_000.0 / 3.0);
    // Target: 1333.3 read + 66.7 growth + 80 000 / 1800 catch-up.
    let target = 1_400.0 + 80_000.0 / 1_800.0;
    assert_close!(map.target_rate, target);
    // ceil(1444.4 / (666.7 × 0.7)) = 4; at 4 the hot subtask gets 62.5 %: 1600/s.
    assert_eq!((map.wanted_parallelism, map.reason), (4, VertexReason::ScaleUp));
    assert_eq!(outcome.decision.to_string(), "rescale map 2→4; TaskManagers 2→4");

    sim.apply(&outcome.decision);
    sim.run(4 * 60 * MINUTE, MINUTE);
    assert_eq!(sim.rescales.len(), 1, "it holds at 4: {:?}", sim.rescales);
    assert_eq!(sim.parallelism("map"), 4);
    assert!(sim.backlog < 1.0, "the backlog is worked off: {}", sim.backlog);
}

#[test]
fn key_skew_is_hidden_by_the_average_busy_time() {
    // The same job with `busy-time.aggregator: AVG`: the map looks 67 % busy with room for
    // 2000/s, within the band, and falls further behind for hours.
    let mut sim = skewed_map(BusyTimeAggregator::Avg);
    sim.advance_to(1_200 * SECOND);
    let outcome = sim.decide();
    let map = outcome.vertex("map").unwrap();
    assert_close!(map.busy_ratio, 2.0 / 3.0);
    assert_close!(map.true_rate.unwrap(), 2_000.0);
    assert_eq!((map.wanted_parallelism, map.reason), (2, VertexReason::WithinBand));
    assert_eq!(outcome.decision, no_change(NoChangeReason::NothingToChange));

    sim.run(4 * 60 * MINUTE, MINUTE);
    assert_eq!(sim.rescales, []);
    assert!(sim.backlog > 900_000.0, "backlog {}", sim.backlog);
}

/// 3.6 M records of backlog make the map want 5 subtasks at 1200 s (see the backlog test).
fn wants_five() -> Sim {
    let mut sim = source_and_map(|_| 1_400.0);
    sim.backlog = 3_600_000.0;
    sim.slots = 2;
    sim.task_managers = 1;
    sim.advance_to(1_200 * SECOND);
    sim
}

#[test]
fn bounds_cap_the_parallelism_and_the_task_managers() {
    let decision = |sim: &Sim| sim.decide().decision;

    // The map's own max parallelism (key groups).
    let mut sim = source_and_map(|_| 1_400.0);
    sim.backlog = 3_600_000.0;
    sim.slots = 2;
    sim.chain[1].max_parallelism = 4;
    sim.advance_to(1_200 * SECOND);
    let outcome = sim.decide();
    let map = outcome.vertex("map").unwrap();
    assert_eq!((map.max_parallelism, map.wanted_parallelism, map.reason), (4, 4, VertexReason::AtMaxParallelism));
    assert_eq!(outcome.decision.task_managers(), Some(2));

    // job.autoscaler.vertex.max-parallelism.
    let mut sim = wants_five();
    sim.config.vertex_max_parallelism = 3;
    assert_eq!(decision(&sim).new_parallelism("map"), Some(3));

    // At most 2 TaskManagers of 2 slots: 4 subtasks.
    let mut sim = wants_five();
    sim.config.tm_max_replicas = 2;
    let d = decision(&sim);
    assert_eq!((d.new_parallelism("map"), d.task_managers()), (Some(4), Some(2)));

    // At least 4 TaskManagers, though 5 subtasks fit on 3.
    let mut sim = wants_five();
    sim.config.tm_min_replicas = 4;
    let d = decision(&sim);
    assert_eq!((d.new_parallelism("map"), d.task_managers()), (Some(5), Some(4)));

    // Already at the bound: nothing to do.
    let mut sim = source_and_map(|_| 1_400.0);
    sim.backlog = 3_600_000.0;
    sim.chain[1].max_parallelism = 2;
    sim.advance_to(1_200 * SECOND);
    assert_eq!(decision(&sim), no_change(NoChangeReason::NothingToChange));
}

#[test]
fn nothing_is_decided_while_stabilising_after_a_rescale() {
    let mut sim = wants_five();
    sim.last_rescale_ms = 1_000 * SECOND;
    sim.advance_to(1_100 * SECOND);
    assert_eq!(sim.decide().decision, no_change(NoChangeReason::Stabilizing { until_ms: 1_300 * SECOND }));
    // Stabilised at 1300 s, then one full window of new metrics is needed.
    sim.advance_to(1_300 * SECOND);
    let collecting = no_change(NoChangeReason::CollectingMetrics { vertex: "src".into(), until_ms: 2_200 * SECOND });
    assert_eq!(sim.decide().decision, collecting);
    sim.advance_to(2_190 * SECOND);
    assert_eq!(sim.decide().decision, collecting);
    // Backlog 2.28 M at 2200 s: 1400 + 1266.7 = 2666.7/s, ceil(3.81) = 4.
    sim.advance_to(2_200 * SECOND);
    let outcome = sim.decide();
    assert_close!(outcome.vertex("map").unwrap().target_rate, 1_400.0 + 2_280_000.0 / 1_800.0);
    assert_eq!(outcome.decision.new_parallelism("map"), Some(4));
}

#[test]
fn scale_down_waits_until_the_lower_parallelism_held_for_the_interval() {
    // 1400/s until 2000 s, then 300/s. The window's mean falls below 700/s (one subtask at 70 %)
    // at 2580 s, when 58 of its 91 samples are at 300/s: from then on the map wants 1.
    let mut sim = source_and_map(|t| if t < 2_000.0 { 1_400.0 } else { 300.0 });
    sim.advance_to(2_570 * SECOND);
    assert_eq!(sim.decide().vertex("map").unwrap().wanted_parallelism, 2);
    sim.advance_to(2_580 * SECOND);
    let outcome = sim.decide();
    let map = outcome.vertex("map").unwrap();
    assert_close!(map.target_rate, (33.0 * 1_400.0 + 58.0 * 300.0) / 91.0);
    assert_eq!(map.wanted_parallelism, 1);
    // The earliest a scale-down could happen is an hour after the first full window.
    assert_eq!(outcome.decision, no_change(NoChangeReason::ScaleDownDelayed { until_ms: 4_800 * SECOND }));

    sim.advance_to(5_000 * SECOND);
    let until = NoChangeReason::ScaleDownDelayed { until_ms: 6_180 * SECOND };
    assert_eq!(sim.decide().decision, no_change(until.clone()));
    sim.advance_to(6_170 * SECOND);
    assert_eq!(sim.decide().decision, no_change(until));

    sim.run(8_000 * SECOND, 10 * SECOND);
    assert_eq!(sim.rescales.len(), 1, "{:?}", sim.rescales);
    assert_eq!(sim.rescales[0].0, 6_180 * SECOND);
    assert_eq!(sim.rescales[0].1.to_string(), "rescale map 2→1; TaskManagers 2→1");
}

#[test]
fn scale_down_goes_to_the_most_wanted_during_the_interval() {
    // Four map subtasks for a load of 300/s (wants 1), except 1000/s from 2000 s to 3500 s
    // (wants ceil(1000 / 700) = 2): after the hour the map goes to 2, not 1.
    let chain = || vec![vertex("src", 10_000.0, 1), vertex("map", 1_000.0, 4)];
    let mut sim = Sim::new(chain(), |t| if (2_000.0..3_500.0).contains(&t) { 1_000.0 } else { 300.0 });
    sim.slots = 4;
    sim.task_managers = 1;
    sim.advance_to(4_790 * SECOND);
    assert_eq!(sim.decide().decision, no_change(NoChangeReason::ScaleDownDelayed { until_ms: 4_800 * SECOND }));
    sim.advance_to(4_800 * SECOND);
    let outcome = sim.decide();
    let map = outcome.vertex("map").unwrap();
    assert_eq!((map.wanted_parallelism, map.new_parallelism), (1, 2));
    assert_eq!(outcome.decision.new_parallelism("map"), Some(2));

    // Without the bump: straight to 1.
    let mut sim = Sim::new(chain(), |_| 300.0);
    sim.slots = 4;
    sim.task_managers = 1;
    sim.advance_to(4_800 * SECOND);
    assert_eq!(sim.decide().decision.new_parallelism("map"), Some(1));
}

#[test]
fn target_rates_follow_the_edges_and_output_ratios() {
    // a (1000/s, a steady backlog of 1.8 M) and b (500/s, emitting 2 per record) feed j, which
    // keeps 1 in 10 for k.
    let window = (10 * SECOND, 1_200 * SECOND, 10 * SECOND);
    let h = HistoryBuilder::new()
        .samples("a", 1, window, |_| Rates { pending: Some(1_800_000.0), ..Rates::new(1_000.0, 100.0) })
        .samples("b", 1, window, |_| Rates { records_out: 1_000.0, ..Rates::new(500.0, 100.0) })
        .samples("j", 1, window, |_| Rates { records_out: 200.0, ..Rates::new(2_000.0, 800.0) })
        .samples("k", 1, window, |_| Rates::new(200.0, 100.0));
    let topology = Topology::new().source("a").source("b").vertex("j", &["a", "b"]).vertex("k", &["j"]);
    let input = AutoscalerInput {
        now_ms: 1_200 * SECOND,
        topology: &topology,
        history: &h.history,
        last_rescale_ms: 0,
        task_managers: 1,
        slots_per_task_manager: 4,
    };
    let outcome = decide(&input, &AutoscalerConfig::default()).unwrap();
    let target = |v: &str| outcome.vertex(v).unwrap().target_rate;
    assert_close!(target("a"), 1_000.0 + 1_000.0);
    assert_close!(target("b"), 500.0);
    assert_close!(target("j"), 2_000.0 + 2.0 * 500.0);
    assert_close!(target("k"), 300.0);
    // j: true rate 2000 / 0.8 = 2500/s, utilisation 120 %: ceil(3000 / 1750) = 2.
    assert_close!(outcome.vertex("j").unwrap().true_rate.unwrap(), 2_500.0);
    assert_eq!(outcome.decision.new_parallelism("j"), Some(2));
    assert_eq!(outcome.decision.task_managers(), Some(1));
}

#[test]
fn too_few_or_missing_samples_mean_no_decision() {
    let topology = Topology::new().source("src").vertex("map", &["src"]);
    // One sample every 5 min: 4 in a 15 min window.
    let sparse = (5 * MINUTE, 20 * MINUTE, 5 * MINUTE);
    let h = HistoryBuilder::new().samples("src", 1, sparse, |_| Rates::new(1_000.0, 100.0)).samples(
        "map",
        1,
        sparse,
        |_| Rates::new(1_000.0, 700.0),
    );
    let mut input = AutoscalerInput {
        now_ms: 20 * MINUTE,
        topology: &topology,
        history: &h.history,
        last_rescale_ms: 0,
        task_managers: 1,
        slots_per_task_manager: 1,
    };
    let config = AutoscalerConfig { min_samples: 5, ..AutoscalerConfig::default() };
    let reason = NoChangeReason::TooFewSamples { vertex: "src".into(), samples: 4, needed: 5 };
    assert_eq!(decide(&input, &config).unwrap().decision, no_change(reason));
    assert_eq!(
        decide(&input, &AutoscalerConfig::default()).unwrap().decision,
        no_change(NoChangeReason::NothingToChange)
    );

    let topology = Topology::new().source("src").vertex("map", &["src"]).vertex("sink", &["map"]);
    input.topology = &topology;
    let outcome = decide(&input, &AutoscalerConfig::default()).unwrap();
    assert_eq!(outcome.decision, no_change(NoChangeReason::MissingMetrics { vertex: "sink".into() }));
    assert!(outcome.vertices.is_empty());

    input.slots_per_task_manager = 0;
    assert!(decide(&input, &AutoscalerConfig::default()).is_err());
}

#[test]
fn the_outcome_serialises_for_a_status_and_reads_as_an_event() {
    let sim = wants_five();
    let outcome = sim.decide();
    let json = serde_json::to_value(&outcome).unwrap();
    assert_eq!(json["decision"]["kind"], "rescale");
    assert_eq!(json["decision"]["taskManagers"], 3);
    assert_eq!(json["decision"]["parallelism"][1]["vertex"], "map");
    assert_eq!(json["decision"]["parallelism"][1]["to"], 5);
    assert_eq!(json["vertices"][1]["wantedParallelism"], 5);
    assert_eq!(json["vertices"][1]["reason"]["kind"], "scaleUp");
    let back: Outcome = serde_json::from_value(json).unwrap();
    assert_eq!(back, outcome);

    let text = outcome.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "rescale map 2→5; TaskManagers 1→3");
    assert_eq!(
        lines[2],
        "  map: p2 in 2000/s busy 100% true 2000/s target 3000/s (utilisation 150%) → wants 5: scale up"
    );
    assert_eq!(
        no_change(NoChangeReason::ScaleDownDelayed { until_ms: 4_800_000 }).to_string(),
        "no change: scale-down delayed until 4800000 ms"
    );
}
