//! `/taskmanagers` and one TaskManager.

use super::*;

/// The port of `host:port`, or -1.
pub(super) fn port_of(address: &str) -> i64 {
    address.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).unwrap_or(-1)
}

pub(super) fn taskmanager_info(tm: &TaskManagerInfo) -> api::TaskManagerInfo {
    let cores = tm.cpu_cores as f64;
    let free_cores = if tm.slots == 0 { 0.0 } else { cores * tm.free_slots as f64 / tm.slots as f64 };
    api::TaskManagerInfo {
        id: tm.id.clone(),
        path: format!("rheo://{}/taskmanager", tm.data_address),
        data_port: port_of(&tm.data_address),
        jmx_port: -1,
        time_since_last_heartbeat: tm.last_heartbeat,
        slots_number: tm.slots as u32,
        free_slots: tm.free_slots as u32,
        assigned_tasks: tm.slots.saturating_sub(tm.free_slots) as u32,
        total_resource: api::ResourceProfileInfo { cpu_cores: cores, ..Default::default() },
        free_resource: api::ResourceProfileInfo { cpu_cores: free_cores, ..Default::default() },
        hardware: api::HardwareDescription {
            cpu_cores: tm.cpu_cores as u32,
            physical_memory: tm.physical_memory as i64,
            free_memory: 0,
            managed_memory: 0,
        },
        memory_configuration: api::TaskExecutorMemoryConfiguration::default(),
    }
}

/// `GET /taskmanagers`. Rheo has no JVM memory model: memory sizes other than the machine's
/// physical memory are 0.
pub(super) async fn taskmanagers(Extract(state): Extract<Shared>) -> Answer<api::TaskManagersInfo> {
    ok(api::TaskManagersInfo { taskmanagers: state.view.taskmanagers().iter().map(taskmanager_info).collect() })
}

fn find_taskmanager(state: &State, tmid: &str) -> Result<TaskManagerInfo, Error> {
    state
        .view
        .taskmanagers()
        .into_iter()
        .find(|tm| tm.id == tmid)
        .ok_or_else(|| Error(StatusCode::NOT_FOUND, format!("Could not find TaskManager {tmid}")))
}

/// `GET /taskmanagers/:id`: its `/taskmanagers` entry plus slots and memory. Rheo has no JVM
/// heap or network buffers: those metrics are 0.
pub(super) async fn taskmanager(
    Extract(state): Extract<Shared>,
    Path(tmid): Path<String>,
) -> Answer<api::TaskManagerDetailsInfo> {
    let tm = find_taskmanager(&state, &tmid)?;
    ok(api::TaskManagerDetailsInfo {
        info: taskmanager_info(&tm),
        allocated_slots: Vec::new(),
        metrics: api::TaskManagerMetricsInfo::default(),
    })
}

/// The TaskManager metrics Rheo serves, by Flink's names.
const TASKMANAGER_METRICS: [&str; 0] = [];

/// `GET /taskmanagers/:id/metrics`: Flink's TaskManager metrics are JVM metrics, which Rheo
/// has none of; the list is empty and requested values are left out, as Flink does for
/// unknown names.
pub(super) async fn taskmanager_metrics(
    Extract(state): Extract<Shared>,
    Path(tmid): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Answer<Vec<api::MetricValue>> {
    find_taskmanager(&state, &tmid)?;
    ok(super::jobs::metric_values(&TASKMANAGER_METRICS, query.get("get"), |_| None))
}

/// `GET /taskmanagers/metrics`: the same metrics aggregated over every TaskManager.
pub(super) async fn taskmanagers_metrics() -> Answer<Vec<api::AggregatedMetric>> {
    ok(Vec::new())
}
