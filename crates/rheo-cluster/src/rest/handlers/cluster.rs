//! `/config` (the dashboard's settings) and `/overview` (the cluster at a glance).

use super::*;

pub(super) async fn config() -> Answer<api::DashboardConfiguration> {
    ok(api::DashboardConfiguration {
        refresh_interval: 3000,
        timezone_name: "Coordinated Universal Time".into(),
        timezone_offset: 0,
        flink_version: FLINK_API_VERSION.into(),
        flink_revision: format!("rheo {}", env!("CARGO_PKG_VERSION")),
        features: api::DashboardFeatures {
            web_submit: false,
            web_cancel: true,
            web_rescale: false,
            web_history: false,
        },
    })
}

pub(super) async fn overview(Extract(state): Extract<Shared>) -> Answer<api::ClusterOverview> {
    let taskmanagers = state.view.taskmanagers();
    let states: Vec<JobState> = state.view.jobs().iter().map(|job| job.status().state).collect();
    let count = |s: JobState| states.iter().filter(|&&state| state == s).count() as u32;
    ok(api::ClusterOverview {
        taskmanagers: taskmanagers.len() as u32,
        slots_total: taskmanagers.iter().map(|tm| tm.slots as u32).sum(),
        slots_available: taskmanagers.iter().map(|tm| tm.free_slots as u32).sum(),
        jobs_running: states.iter().filter(|s| !s.is_terminal()).count() as u32,
        jobs_finished: count(JobState::Finished),
        jobs_cancelled: count(JobState::Cancelled),
        jobs_failed: count(JobState::Failed),
        flink_version: FLINK_API_VERSION.into(),
        flink_commit: format!("rheo {}", env!("CARGO_PKG_VERSION")),
    })
}
