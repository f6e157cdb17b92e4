//! The status step: kstatus conditions, one server-side apply of the status subresource, and an
//! Event for every transition since the status last written.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use serde_json::json;
use tracing::warn;

use super::{Error, Pass, Problem};
use crate::build::MANAGER;
use crate::crd::*;

impl Pass<'_> {
    pub(super) fn event(&mut self, type_: EventType, reason: &str, action: &str, note: String) {
        self.events.push(Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        });
    }

    /// Writes status (server-side apply on the status subresource), then publishes an Event for
    /// every transition since the last write.
    pub(super) async fn write_status(&mut self) -> Result<(), Error> {
        self.status.error = self.problem.as_ref().map(|p| p.message.clone());
        self.status.conditions =
            conditions(&self.status, self.problem.as_ref(), self.rescaling, &self.written.conditions, self.now);
        let mut transitions = transition_events(&self.written, &self.status, self.problem.as_ref());
        transitions.append(&mut self.events);

        let api: Api<FlinkJob> = Api::namespaced(self.ctx.client.clone(), self.fj.namespace());
        let patch = json!({
            "apiVersion": FlinkJob::api_version(&()),
            "kind": FlinkJob::kind(&()),
            "status": self.status,
        });
        api.patch_status(self.name(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
        self.written = self.status.clone();

        let reference = self.fj.object_ref(&());
        for event in transitions {
            if let Err(e) = self.ctx.recorder.publish(&event, &reference).await {
                warn!(job = self.name(), reason = event.reason, error = %e, "cannot publish event");
            }
        }
        Ok(())
    }
}

/// kstatus conditions. `lastTransitionTime` moves only when a condition's status changes.
/// `rescaling`: a reactive job restarting for new TaskManagers, which is not unhealthy.
fn conditions(
    status: &FlinkJobStatus,
    problem: Option<&Problem>,
    rescaling: bool,
    old: &[Condition],
    now: Timestamp,
) -> Vec<Condition> {
    let lifecycle = status.lifecycle_state;
    let job_state = status.job_status.state.map(JobStateView::as_str);
    let job_unhealthy = !rescaling && status.job_status.state.is_some_and(JobStateView::is_unhealthy);
    let stalled = problem.filter(|p| p.stalled);
    let progressing = stalled.is_none()
        && (matches!(lifecycle, Some(LifecycleState::Created | LifecycleState::Deployed | LifecycleState::Upgrading))
            || status.job_status.pending_savepoint.is_some());
    let degraded = problem.is_some() || job_unhealthy;
    let ready = !progressing
        && !degraded
        && matches!(lifecycle, Some(LifecycleState::Stable | LifecycleState::Suspended | LifecycleState::Finished));
    let lifecycle_name = lifecycle.map(|l| l.as_str()).unwrap_or("CREATED");

    let (ready_reason, ready_msg) = if ready {
        ("Reconciled", format!("lifecycle {lifecycle_name}"))
    } else if let Some(p) = problem {
        (p.reason, p.message.clone())
    } else {
        ("NotReady", format!("lifecycle {lifecycle_name}, job {}", job_state.unwrap_or("unknown")))
    };
    let (deg_reason, deg_msg) = match problem {
        Some(p) => (p.reason, p.message.clone()),
        None if job_unhealthy => ("JobUnhealthy", format!("job is {}", job_state.unwrap_or_default())),
        None => ("Healthy", String::new()),
    };
    let (prog_reason, prog_msg) =
        if progressing { ("Reconciling", format!("lifecycle {lifecycle_name}")) } else { ("Idle", String::new()) };
    let (stall_reason, stall_msg) = match stalled {
        Some(p) => (p.reason, p.message.clone()),
        None => ("NotStalled", String::new()),
    };
    [
        ("Ready", ready, ready_reason, ready_msg),
        ("Progressing", progressing, prog_reason, prog_msg),
        ("Degraded", degraded, deg_reason, deg_msg),
        ("Stalled", stalled.is_some(), stall_reason, stall_msg),
    ]
    .into_iter()
    .map(|(type_, on, reason, message)| {
        let status_str = if on { "True" } else { "False" };
        let last = old
            .iter()
            .find(|c| c.type_ == type_ && c.status == status_str)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        Condition {
            type_: type_.into(),
            status: status_str.into(),
            reason: reason.into(),
            message,
            observed_generation: status.observed_generation,
            last_transition_time: last,
        }
    })
    .collect()
}

/// One Event per transition between two statuses.
fn transition_events(old: &FlinkJobStatus, new: &FlinkJobStatus, problem: Option<&Problem>) -> Vec<Event> {
    let mut events = Vec::new();
    if old.lifecycle_state != new.lifecycle_state
        && let Some(l) = new.lifecycle_state
    {
        let (type_, reason) = match l {
            LifecycleState::Created => (EventType::Normal, "Created"),
            LifecycleState::Deployed => (EventType::Normal, "Deployed"),
            LifecycleState::Stable => (EventType::Normal, "Stable"),
            LifecycleState::Upgrading => (EventType::Normal, "Upgrading"),
            LifecycleState::Suspended => (EventType::Normal, "Suspended"),
            LifecycleState::Failed => (EventType::Warning, "Failed"),
            LifecycleState::Finished => (EventType::Normal, "Finished"),
            LifecycleState::RolledBack => (EventType::Warning, "RunningAfterRollback"),
            LifecycleState::Deleting => (EventType::Normal, "Deleting"),
        };
        // One series per (from, to): the Recorder keeps a series' first note.
        let from = old.lifecycle_state.map(|l| l.as_str()).unwrap_or("none");
        events.push(Event {
            type_,
            reason: reason.into(),
            note: Some(format!("lifecycle {from} → {}", l.as_str())),
            action: format!("ReconcileFrom{}", camel(from)),
            secondary: None,
        });
    }
    if old.job_status.state != new.job_status.state
        && let Some(s) = &new.job_status.state
    {
        let from = old.job_status.state.map(JobStateView::as_str).unwrap_or("none");
        let type_ =
            if s.is_unhealthy() || *s == JobStateView::Unknown { EventType::Warning } else { EventType::Normal };
        events.push(Event {
            type_,
            reason: format!("Job{}", camel(s.as_str())),
            note: Some(format!("job {from} → {}", s.as_str())),
            action: format!("ObserveFrom{}", camel(from)),
            secondary: None,
        });
    }
    if let Some(p) = problem
        && old.error.as_deref() != Some(p.message.as_str())
    {
        events.push(Event {
            type_: EventType::Warning,
            reason: p.reason.into(),
            note: Some(p.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        });
    }
    events
}

/// `RUNNING`, `last-state` or `none` as `Running`, `LastState`, `None`: for Event reasons and actions.
fn camel(s: &str) -> String {
    s.split(['_', '-', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let w = w.to_ascii_lowercase();
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}
