//! The decide step: pure functions of the spec, the deployment record and the clock. No I/O,
//! so every decision is tested on its own (`cargo test -p rheo-operator decide`).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::crd::*;

/// What to do about upgrades in this pass.
#[derive(Clone, Debug, PartialEq)]
pub enum UpgradeStep {
    /// The deployed spec is current.
    None,
    /// Record this new upgrade and start it.
    Start(UpgradeProgress),
    /// Carry on the upgrade in flight, as the newest spec asks (its reason and mode may differ
    /// from what was recorded: a newer spec supersedes the older one, a new mode takes effect).
    Continue(UpgradeProgress),
    /// The spec is back to the deployed one before the old job was touched: drop the upgrade.
    Withdraw,
}

/// The upgrade step for `desired` against the `deployed` spec and the upgrade `in_flight`.
/// `stop_triggered`: a stop-with-savepoint was sent, so the old job may be stopping and must
/// be redeployed even if the spec went back.
pub fn upgrade_step(
    deployed: &FlinkJobSpec,
    desired: &FlinkJobSpec,
    in_flight: Option<&UpgradeProgress>,
    stop_triggered: bool,
    now: Timestamp,
) -> UpgradeStep {
    let wanted = upgrade_reason(deployed, desired);
    let progress = |reason: UpgradeReason, since: String| UpgradeProgress {
        mode: upgrade_mode(desired.job.upgrade_mode, reason),
        reason,
        since,
    };
    match (in_flight, wanted) {
        (None, None) => UpgradeStep::None,
        (None, Some(reason)) => UpgradeStep::Start(progress(reason, now.to_string())),
        (Some(u), None) if u.reason == UpgradeReason::FailureRestart || stop_triggered => {
            UpgradeStep::Continue(progress(u.reason, u.since.clone()))
        }
        (Some(_), None) => UpgradeStep::Withdraw,
        (Some(u), Some(reason)) => UpgradeStep::Continue(progress(reason, u.since.clone())),
    }
}

/// How state is taken out of the old job: the spec's mode, except that a restart after a
/// failure can only use the newest checkpoint (there is no running job to take a savepoint of),
/// and a rescale keeps state even for a stateless job.
pub fn upgrade_mode(spec_mode: UpgradeMode, reason: UpgradeReason) -> UpgradeMode {
    match (reason, spec_mode) {
        // The job's state is discarded: it restarts from `initialSavepointPath`.
        (UpgradeReason::SavepointRedeploy, _) => UpgradeMode::Stateless,
        (UpgradeReason::FailureRestart | UpgradeReason::Rollback, _) => UpgradeMode::LastState,
        (UpgradeReason::Scale, UpgradeMode::Savepoint) => UpgradeMode::Savepoint,
        (UpgradeReason::Scale, _) => UpgradeMode::LastState,
        (_, mode) => mode,
    }
}

/// Why the deployed spec must be upgraded to `desired`, if it must. Which fields count is
/// declared next to them ([`FlinkJobSpec::upgrade_part`]).
pub fn upgrade_reason(deployed: &FlinkJobSpec, desired: &FlinkJobSpec) -> Option<UpgradeReason> {
    // A new non-null nonce redeploys from the chosen savepoint, whatever else changed with it
    // (Flink's `savepointRedeployNonce`); back to null changes nothing.
    let redeploy = desired.job.savepoint_redeploy_nonce;
    if redeploy.is_some() && redeploy != deployed.job.savepoint_redeploy_nonce {
        return Some(UpgradeReason::SavepointRedeploy);
    }
    let (d, w) = (deployed.upgrade_part(), desired.upgrade_part());
    if d == w {
        return None;
    }
    let differs_only_in = |f: fn(&mut FlinkJobSpec, &FlinkJobSpec)| {
        let mut d2 = d.clone();
        f(&mut d2, &w);
        d2 == w
    };
    Some(match (d.job.state, w.job.state) {
        (DesiredJobState::Running, DesiredJobState::Suspended) => UpgradeReason::Suspend,
        (DesiredJobState::Suspended, DesiredJobState::Running) => UpgradeReason::Resume,
        _ if differs_only_in(|d, w| d.restart_nonce = w.restart_nonce) => UpgradeReason::Restart,
        _ if differs_only_in(|d, w| d.task_manager.replicas = w.task_manager.replicas) => UpgradeReason::Scale,
        _ => UpgradeReason::SpecChanged,
    })
}

pub fn lifecycle_after_deploy(spec: &FlinkJobSpec) -> LifecycleState {
    match spec.job.state {
        DesiredJobState::Running => LifecycleState::Deployed,
        DesiredJobState::Suspended => LifecycleState::Suspended,
    }
}

/// What to do about a FAILED job.
#[derive(Clone, Debug, PartialEq)]
pub enum FailureStep {
    /// Leave it failed, saying why and what to do.
    LeaveFailed(String),
    /// Restart it after this long.
    Wait(Duration),
    /// Restart it now (a last-state redeploy).
    Restart,
}

/// The longest wait between restarts of a failed job.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(600);
/// A job running this long after a restart counts as recovered: the restart count resets.
pub const STABLE_AFTER: Duration = Duration::from_secs(600);

pub fn failure_step(
    policy: Option<&RestartPolicy>,
    restarts: i32,
    failed_since: Option<Timestamp>,
    now: Timestamp,
) -> FailureStep {
    let Some(policy) = policy.filter(|p| p.mode == RestartMode::OnFailure) else {
        return FailureStep::LeaveFailed(
            "the job FAILED and is left failed (job.restartPolicy.mode is Never); set \
             job.restartPolicy.mode: OnFailure to restart it from its newest checkpoint, or change \
             restartNonce to restart it once"
                .into(),
        );
    };
    if restarts >= policy.max_restarts {
        return FailureStep::LeaveFailed(format!(
            "the job FAILED after {restarts} restarts in a row (job.restartPolicy.maxRestarts {}); change \
             restartNonce to restart it",
            policy.max_restarts
        ));
    }
    let backoff = Duration::from_secs(policy.backoff_seconds.max(0) as u64)
        .saturating_mul(1u32 << restarts.clamp(0, 16))
        .min(MAX_RESTART_BACKOFF);
    let waited = failed_since.map(|t| now.duration_since(t)).unwrap_or(SignedDuration::ZERO);
    let waited = Duration::try_from(waited).unwrap_or(Duration::ZERO);
    if waited >= backoff { FailureStep::Restart } else { FailureStep::Wait(backoff - waited) }
}

/// Whether the deployed spec is to be rolled back: rollback is enabled, a stable spec other than
/// the deployed one exists, and the job has not run since it was deployed `readinessTimeout` ago.
pub fn rollback_due(
    policy: &RollbackSpec,
    deployed_at: Option<Timestamp>,
    ran: bool,
    has_other_stable_spec: bool,
    now: Timestamp,
) -> bool {
    policy.enabled
        && has_other_stable_spec
        && !ran
        && deployed_at.is_some_and(|t| now >= t + SignedDuration::from_secs(policy.readiness_timeout_seconds))
}

/// Whether a periodic savepoint is due: `interval` after the newest savepoint, or after the
/// job started running when it has none.
pub fn periodic_savepoint_due(
    interval_seconds: Option<i64>,
    newest_savepoint: Option<Timestamp>,
    running_since: Option<Timestamp>,
    now: Timestamp,
) -> bool {
    let Some(interval) = interval_seconds else { return false };
    let Some(since) = newest_savepoint.max(running_since) else { return false };
    now >= since + SignedDuration::from_secs(interval)
}

/// Trims the savepoint history to the policy: at most `maxCount` entries, none older than
/// `maxAgeSeconds`, but never the newest one (it may be all there is to restore from).
/// Returns the entries dropped.
pub fn trim_history(
    history: &mut Vec<SavepointRef>,
    policy: &SavepointHistoryPolicy,
    now: Timestamp,
) -> Vec<SavepointRef> {
    let keep_count = policy.max_count.max(1) as usize;
    let too_old = |s: &SavepointRef| {
        policy.max_age_seconds.is_some_and(|age| {
            s.timestamp.parse::<Timestamp>().is_ok_and(|t| now >= t + SignedDuration::from_secs(age))
        })
    };
    let newest = history.len().saturating_sub(1);
    let first_kept = history.len().saturating_sub(keep_count);
    let mut dropped = Vec::new();
    let mut kept = Vec::new();
    for (i, s) in std::mem::take(history).into_iter().enumerate() {
        if i == newest || (i >= first_kept && !too_old(&s)) { kept.push(s) } else { dropped.push(s) }
    }
    *history = kept;
    dropped
}

/// The Event (reason, action) of a finished upgrade. kube's Recorder folds Events with the same
/// (type, reason, action, object) into one series that keeps the first note, so every kind of
/// transition gets its own pair: a stateless resume must not show as an earlier savepoint upgrade.
pub fn upgrade_event(
    from: DesiredJobState,
    to: DesiredJobState,
    trigger: UpgradeReason,
    mode: UpgradeMode,
    restored: bool,
) -> (&'static str, &'static str) {
    use DesiredJobState::{Running, Suspended};
    let state = match (restored, mode) {
        (false, _) | (true, UpgradeMode::Stateless) => 0,
        (true, UpgradeMode::LastState) => 1,
        (true, UpgradeMode::Savepoint) => 2,
    };
    match (from, to, state) {
        (Suspended, Suspended, _) => ("UpdatedWhileSuspended", "Update"),
        (Running, Suspended, 0) => ("SuspendedStateless", "Suspend"),
        (Running, Suspended, 1) => ("SuspendedLastState", "Suspend"),
        (Running, Suspended, _) => ("SuspendedWithSavepoint", "Suspend"),
        (Suspended, Running, 0) => ("ResumedStateless", "Resume"),
        (Suspended, Running, 1) => ("ResumedLastState", "Resume"),
        (Suspended, Running, _) => ("ResumedFromSavepoint", "Resume"),
        (Running, Running, s) => match (trigger, s) {
            (UpgradeReason::Restart, 0) => ("RestartedStateless", "Restart"),
            (UpgradeReason::Restart, 1) => ("RestartedLastState", "Restart"),
            (UpgradeReason::Restart, _) => ("RestartedFromSavepoint", "Restart"),
            (UpgradeReason::FailureRestart, 0) => ("RestartedAfterFailureStateless", "FailureRestart"),
            (UpgradeReason::FailureRestart, _) => ("RestartedAfterFailure", "FailureRestart"),
            (UpgradeReason::SavepointRedeploy, _) => ("RedeployedFromSavepoint", "SavepointRedeploy"),
            (UpgradeReason::Rollback, 0) => ("RolledBackStateless", "Rollback"),
            (UpgradeReason::Rollback, _) => ("RolledBack", "Rollback"),
            (UpgradeReason::Scale, 0) => ("RescaledStateless", "Rescale"),
            (UpgradeReason::Scale, 1) => ("RescaledLastState", "Rescale"),
            (UpgradeReason::Scale, _) => ("RescaledFromSavepoint", "Rescale"),
            (_, 0) => ("UpgradedStateless", "Upgrade"),
            (_, 1) => ("UpgradedLastState", "Upgrade"),
            (_, _) => ("UpgradedFromSavepoint", "Upgrade"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> FlinkJobSpec {
        serde_yaml::from_str(
            "image: rheo:1\nflinkConfiguration: {state.checkpoints.dir: 's3://b/c'}\n\
             taskManager: {replicas: 2, slots: 2}\njob: {entry: word-count, upgradeMode: savepoint}",
        )
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-23T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn reasons() {
        let d = spec();
        let mut w = spec();
        assert_eq!(upgrade_reason(&d, &w), None);
        w.task_manager.replicas = 3;
        assert_eq!(upgrade_reason(&d, &w), Some(UpgradeReason::Scale));
        w.job.parallelism = Some(4);
        assert_eq!(upgrade_reason(&d, &w), Some(UpgradeReason::SpecChanged));
        let mut fixed = spec();
        fixed.job.parallelism = Some(4);
        let mut scaled = fixed.clone();
        scaled.task_manager.replicas = 5;
        assert_eq!(upgrade_reason(&fixed, &scaled), None, "a fixed parallelism: replicas are live");
        let mut w = spec();
        w.restart_nonce = Some(1);
        assert_eq!(upgrade_reason(&d, &w), Some(UpgradeReason::Restart));
        let mut w = spec();
        w.job.upgrade_mode = UpgradeMode::Stateless;
        w.job.savepoint_trigger_nonce = Some(3);
        w.deletion_timeout_seconds = 1;
        assert_eq!(upgrade_reason(&d, &w), None);
        w.job.state = DesiredJobState::Suspended;
        assert_eq!(upgrade_reason(&d, &w), Some(UpgradeReason::Suspend));
    }

    #[test]
    fn a_newer_spec_and_mode_supersede_the_upgrade_in_flight() {
        let d = spec();
        let mut w = spec();
        w.image = "rheo:2".into();
        let UpgradeStep::Start(started) = upgrade_step(&d, &w, None, false, now()) else { panic!() };
        assert_eq!((started.reason, started.mode), (UpgradeReason::SpecChanged, UpgradeMode::Savepoint));
        w.job.upgrade_mode = UpgradeMode::LastState;
        let later: Timestamp = "2026-11-23T12:05:00Z".parse().unwrap();
        let UpgradeStep::Continue(next) = upgrade_step(&d, &w, Some(&started), false, later) else { panic!() };
        assert_eq!(next.mode, UpgradeMode::LastState);
        assert_eq!(next.since, started.since, "still the same upgrade");
        assert_eq!(upgrade_step(&d, &d, Some(&started), false, later), UpgradeStep::Withdraw);
        assert!(matches!(upgrade_step(&d, &d, Some(&started), true, later), UpgradeStep::Continue(_)));
    }

    #[test]
    fn a_new_redeploy_nonce_redeploys_whatever_else_changed() {
        let d = spec();
        let mut w = spec();
        w.job.savepoint_redeploy_nonce = Some(1);
        w.job.initial_savepoint_path = Some("s3://b/sp".into());
        assert_eq!(upgrade_reason(&d, &w), Some(UpgradeReason::SavepointRedeploy));
        w.image = "rheo:2".into();
        assert_eq!(upgrade_reason(&d, &w), Some(UpgradeReason::SavepointRedeploy));
        let mut back = w.clone();
        back.job.savepoint_redeploy_nonce = None;
        assert_eq!(upgrade_reason(&w, &back), None, "back to null changes nothing");
        assert_eq!(upgrade_mode(UpgradeMode::Savepoint, UpgradeReason::SavepointRedeploy), UpgradeMode::Stateless);
    }

    #[test]
    fn rollback_waits_for_the_readiness_timeout_and_needs_another_stable_spec() {
        let on = RollbackSpec { enabled: true, readiness_timeout_seconds: 60 };
        let at = |s: i64| now() + SignedDuration::from_secs(s);
        assert!(!rollback_due(&on, Some(now()), false, true, at(59)));
        assert!(rollback_due(&on, Some(now()), false, true, at(60)));
        assert!(!rollback_due(&on, Some(now()), true, true, at(600)), "it ran: healthy");
        assert!(!rollback_due(&on, Some(now()), false, false, at(600)), "nothing to go back to");
        assert!(!rollback_due(&RollbackSpec::default(), Some(now()), false, true, at(600)), "off by default");
    }

    #[test]
    fn restart_backoff_doubles_then_gives_up() {
        let policy = RestartPolicy { mode: RestartMode::OnFailure, max_restarts: 3, backoff_seconds: 10 };
        let at = |s: i64| now() + SignedDuration::from_secs(s);
        assert_eq!(failure_step(Some(&policy), 0, Some(now()), at(10)), FailureStep::Restart);
        assert_eq!(failure_step(Some(&policy), 1, Some(now()), at(10)), FailureStep::Wait(Duration::from_secs(10)));
        assert_eq!(failure_step(Some(&policy), 2, Some(now()), at(40)), FailureStep::Restart);
        assert!(
            matches!(failure_step(Some(&policy), 3, Some(now()), at(999)), FailureStep::LeaveFailed(m) if m.contains("3 restarts"))
        );
        assert!(matches!(failure_step(None, 0, None, now()), FailureStep::LeaveFailed(m) if m.contains("OnFailure")));
    }

    #[test]
    fn history_keeps_count_and_age_but_always_the_newest() {
        let sp = |h: i64| SavepointRef {
            path: format!("s3://b/sp-{h}"),
            timestamp: (now() - SignedDuration::from_hours(h)).to_string(),
            purpose: SavepointPurpose::Periodic,
        };
        let mut history = vec![sp(5), sp(4), sp(3), sp(2), sp(1)];
        let policy = SavepointHistoryPolicy { max_count: 3, max_age_seconds: Some(2 * 3600 + 1) };
        let dropped = trim_history(&mut history, &policy, now());
        assert_eq!(history.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(), ["s3://b/sp-2", "s3://b/sp-1"]);
        assert_eq!(dropped.len(), 3);
        let mut one = vec![sp(100)];
        trim_history(&mut one, &policy, now());
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn periodic_savepoints_wait_for_the_interval() {
        let ago = |s: i64| Some(now() - SignedDuration::from_secs(s));
        assert!(!periodic_savepoint_due(Some(600), None, ago(599), now()));
        assert!(periodic_savepoint_due(Some(600), None, ago(600), now()));
        assert!(!periodic_savepoint_due(Some(600), ago(10), ago(6000), now()));
        assert!(!periodic_savepoint_due(None, None, ago(6000), now()));
    }
}
