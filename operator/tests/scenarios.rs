//! Lifecycle scenarios against a fake API server (kube `Client` over `tower-test`) and a
//! scripted JobManager. Each asserts the exact requests the reconciler makes for a transition.

mod support;

use kube::runtime::controller::Action;
use rheo_operator::jobmanager::JmError;
use rheo_operator::reconcile::{Error, REQUEUE_BUSY, REQUEUE_INVALID, REQUEUE_STEADY, REQUEUE_UNREACHABLE};
use rheo_rest::JobState;
use serde_json::json;
use support::*;

const BASIC: &str = r#"
metadata: {}
spec:
  image: rheo:latest
  taskManager: {replicas: 1, slots: 2}
  flinkConfiguration:
    state.checkpoints.dir: s3://rheo/checkpoints
    state.savepoints.dir: s3://rheo/savepoints
  job: {entry: word-count, args: [--input, /data/in]}
"#;

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Deploys BASIC and lets its job run: the state every other scenario starts from.
async fn deployed(upgrade_mode: &str) -> Env {
    let env = Env::new(BASIC);
    env.edit(|fj| fj["spec"]["job"]["upgradeMode"] = json!(upgrade_mode));
    env.reconcile().await.unwrap();
    env.take_calls();
    env.jm.take_calls();
    env
}

#[tokio::test]
async fn first_deploy_adds_finalizer_records_then_applies_and_observes() {
    let env = Env::new(BASIC);
    env.edit(|fj| fj["metadata"]["finalizers"] = json!(null));

    // Pass 1: only the finalizer (JSON patch on the resource itself).
    assert_eq!(env.reconcile().await.unwrap(), Action::await_change());
    let calls = env.take_calls();
    assert_eq!(lines(&calls), s(&["PATCH /apis/rheo.io/v1alpha1/namespaces/streams/flinkjobs/wc"]));
    assert!(calls[0].content_type.contains("json-patch"));
    assert_eq!(env.flinkjob()["metadata"]["finalizers"], json!(["rheo.io/finalizer"]));

    // Pass 2: record (status first), apply the five children, read the job, status again.
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_STEADY));
    let calls = env.take_calls();
    let mut want = vec![format!("PATCH {FJ_STATUS}")];
    want.extend(applies());
    want.extend(s(&[&format!("PATCH {FJ_STATUS}"), "EVENT Stable", "EVENT JobRunning"]));
    // The first status write's Event (Deployed) comes right after it.
    want.insert(1, "EVENT Deployed".into());
    assert_eq!(lines(&calls), want);

    let recorded = &calls[0].body["status"];
    assert_eq!(recorded["lifecycleState"], "DEPLOYED");
    assert_eq!(recorded["jobStatus"]["jobId"], JOB0);
    assert!(recorded["reconciliation"]["lastReconciledSpec"].as_str().unwrap().contains("word-count"));
    for c in &calls[2..7] {
        assert!(c.content_type.contains("apply-patch"), "{} is not server-side apply", c.path);
        assert_eq!(c.body["metadata"]["ownerReferences"][0]["kind"], "FlinkJob");
        assert_eq!(c.body["metadata"]["annotations"]["rheo.io/generation"], "2");
    }
    assert_eq!(jm_args(&env), s(&["jobmanager", "--job", "word-count", "--job-id", JOB0, "--", "--input", "/data/in"]));
    assert_eq!(env.jm.take_calls(), s(&[&format!("GET /jobs/{JOB0}"), &format!("GET /jobs/{JOB0}/checkpoints")]));

    let status = env.status();
    assert_eq!(status["lifecycleState"], "STABLE");
    assert_eq!(status["jobStatus"]["state"], "RUNNING");
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(
        status["taskManager"]["selector"],
        "app.kubernetes.io/component=taskmanager,app.kubernetes.io/instance=wc,app.kubernetes.io/name=rheo"
    );
    assert_eq!(condition(&status, "Ready")["status"], "True");
    assert_eq!(condition(&status, "Ready")["observedGeneration"], 2);
    assert_eq!(condition(&status, "Degraded")["status"], "False");
}

#[tokio::test]
async fn stateless_upgrade_cancels_and_redeploys_with_a_fresh_job_id() {
    let env = deployed("stateless").await;
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));

    env.reconcile().await.unwrap();
    let calls = env.take_calls();
    assert_eq!(calls[0].line(), format!("PATCH {FJ_STATUS}"));
    assert_eq!(calls[0].body["status"]["reconciliation"]["upgrade"]["mode"], "stateless");
    assert_eq!(calls[0].body["status"]["reconciliation"]["upgrade"]["reason"], "SpecChanged");
    assert_eq!(calls[0].body["status"]["lifecycleState"], "UPGRADING");
    assert_eq!(
        env.jm.take_calls(),
        s(&[
            &format!("PATCH /jobs/{JOB0}?mode=cancel"),
            &format!("GET /jobs/{JOB1}"),
            &format!("GET /jobs/{JOB1}/checkpoints"),
        ])
    );
    assert_eq!(jm_args(&env), s(&["jobmanager", "--job", "word-count", "--job-id", JOB1, "--", "--input", "/data/in"]));
    let jm = env.object(JM_DEPLOY).unwrap();
    assert_eq!(jm["spec"]["template"]["spec"]["containers"][0]["image"], "rheo:2");
    let status = env.status();
    assert_eq!(status["reconciliation"]["jobEpoch"], 1);
    assert!(status["reconciliation"].get("upgrade").is_none());
    assert!(lines(&calls).contains(&"EVENT UpgradedStateless".to_string()));
}

#[tokio::test]
async fn last_state_upgrade_restores_the_newest_checkpoint() {
    let env = deployed("last-state").await;
    *env.jm.checkpoint.lock().unwrap() = Some(("s3://rheo/checkpoints/j/chk-7".into(), 1_795_464_470_622));
    env.edit(|fj| fj["spec"]["job"]["args"] = json!(["--input", "/data/other"]));

    env.reconcile().await.unwrap();
    // Checked restorable before the cancel: the JobManager reads the directory's newest checkpoint.
    assert_eq!(
        env.jm.take_calls()[..3],
        s(&[
            &format!("GET /jobs/{JOB0}/checkpoints"),
            &format!("POST /snapshots/validation s3://rheo/checkpoints/{JOB0}"),
            &format!("PATCH /jobs/{JOB0}?mode=cancel")
        ])
    );
    // The old job's checkpoint directory: the new JobManager starts from the newest complete
    // checkpoint in it, so one completed after the look above is not skipped.
    let dir = format!("s3://rheo/checkpoints/{JOB0}");
    assert_eq!(
        jm_args(&env),
        s(&[
            "jobmanager",
            "--job",
            "word-count",
            "--job-id",
            JOB1,
            "--from-savepoint",
            &dir,
            "--",
            "--input",
            "/data/other"
        ])
    );
    assert_eq!(env.status()["reconciliation"]["restorePath"], dir);
}

#[tokio::test]
async fn last_state_upgrade_with_the_jobmanager_down_restores_from_storage_without_waiting() {
    let env = Env::new(BASIC);
    env.edit(|fj| fj["spec"]["job"]["upgradeMode"] = json!("last-state"));
    *env.jm.checkpoint.lock().unwrap() = Some(("s3://rheo/checkpoints/j/chk-7".into(), 1_795_464_470_622));
    env.reconcile().await.unwrap();
    *env.jm.job_state.lock().unwrap() = Some(Err(JmError::Unreachable("connection refused".into())));
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));

    env.reconcile().await.unwrap();
    let args = jm_args(&env);
    assert_eq!(args[4], JOB1, "redeployed at once");
    assert_eq!(args[5..7], s(&["--from-savepoint", &format!("s3://rheo/checkpoints/{JOB0}")]));
    let status = env.status();
    assert!(status["reconciliation"].get("upgrade").is_none());
    assert_eq!(status["reconciliation"]["jobEpoch"], 1);
}

#[tokio::test]
async fn an_upgrade_mode_change_takes_effect_on_a_stalled_savepoint_upgrade() {
    let env = deployed("savepoint").await;
    *env.jm.checkpoint.lock().unwrap() = Some(("s3://rheo/checkpoints/j/chk-7".into(), 1_795_464_470_622));
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Failed));
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    let status = env.status();
    assert_eq!(condition(&status, "Stalled")["reason"], "SavepointImpossible");
    assert!(status["error"].as_str().unwrap().contains("allowLastStateFallback"), "{status}");

    // The advice works: the new mode is used, not the one recorded when the upgrade started.
    env.edit(|fj| fj["spec"]["job"]["upgradeMode"] = json!("last-state"));
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4..7], s(&[JOB1, "--from-savepoint", &format!("s3://rheo/checkpoints/{JOB0}")]));
    assert!(env.status()["reconciliation"].get("upgrade").is_none());
}

#[tokio::test]
async fn a_job_that_finishes_on_its_own_during_a_savepoint_upgrade_is_upgraded_as_a_finished_job() {
    // The upgrade is recorded while the job runs; its bounded input runs out before the
    // stop-with-savepoint: nothing is left to stop, and no savepoint is asked of a FINISHED job.
    let env = deployed("savepoint").await;
    env.edit(|fj| fj["spec"]["job"]["state"] = json!("suspended"));
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Finished));
    env.reconcile().await.unwrap();
    let jm = env.jm.take_calls();
    assert!(!jm.iter().any(|c| c.contains("/stop")), "{jm:#?}");
    let status = env.status();
    assert!(status["error"].is_null(), "{status}");
    assert_eq!(status["lifecycleState"], "SUSPENDED", "{status}");
    assert!(status["reconciliation"].get("upgrade").is_none(), "{status}");
    // A FINISHED job starts over with empty state when it is resumed.
    assert!(status["reconciliation"].get("restorePath").is_none(), "{status}");
}

#[tokio::test]
async fn a_stop_whose_trigger_the_jobmanager_forgot_is_found_by_its_savepoint_not_taken_for_the_end_of_the_job() {
    // The stop-with-savepoint completed and FINISHED the job, but the JobManager answers 404 for
    // its trigger: the savepoint is found in the checkpoint statistics and restored; a FINISHED
    // job is never taken for one that ended on its own once a stop was sent (its state would go).
    let env = deployed("savepoint").await;
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    assert!(env.jm.take_calls().iter().any(|c| c.starts_with(&format!("POST /jobs/{JOB0}/stop"))));
    *env.jm.forgets_triggers.lock().unwrap() = true;
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Finished));
    let taken = "s3://rheo/savepoints/savepoint-623226-stopped";
    *env.jm.stats_savepoint.lock().unwrap() = Some(taken.into());
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4..7], s(&[JOB1, "--from-savepoint", taken]));

    // Not found anywhere: Stalled, never a fresh start.
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Running));
    *env.jm.forgets_triggers.lock().unwrap() = false;
    *env.jm.stats_savepoint.lock().unwrap() = None;
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB1}/chk-3"), 1_795_464_470_622));
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:3"));
    env.reconcile().await.unwrap();
    let calls = env.jm.take_calls();
    assert!(calls.iter().any(|c| c.starts_with(&format!("POST /jobs/{JOB1}/stop"))), "{calls:#?}");
    *env.jm.forgets_triggers.lock().unwrap() = true;
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Finished));
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4], JOB1, "not redeployed");
    assert_eq!(condition(&env.status(), "Stalled")["reason"], "SavepointImpossible");
}

#[tokio::test]
async fn savepoint_upgrade_falls_back_to_last_state_when_allowed() {
    let env = deployed("savepoint").await;
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Failed));
    env.edit(|fj| {
        fj["spec"]["image"] = json!("rheo:2");
        fj["spec"]["job"]["allowLastStateFallback"] = json!(true);
    });
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4], JOB1);
    assert!(lines(&env.take_calls()).contains(&"EVENT LastStateFallback".to_string()));
}

#[tokio::test]
async fn a_newer_spec_withdraws_an_upgrade_that_has_not_touched_the_job() {
    let env = deployed("savepoint").await;
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Failed));
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    assert_eq!(env.status()["lifecycleState"], "UPGRADING");
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:latest"));
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Running));
    env.reconcile().await.unwrap();
    let status = env.status();
    assert!(status["reconciliation"].get("upgrade").is_none(), "{status}");
    assert_eq!(status["lifecycleState"], "STABLE");
    assert_eq!(jm_args(&env)[4], JOB0, "the running job stays");
    assert!(lines(&env.take_calls()).contains(&"EVENT UpgradeWithdrawn".to_string()));
}

#[tokio::test]
async fn a_bad_image_shows_in_the_status_and_its_fix_redeploys_without_waiting_for_a_savepoint() {
    let env = Env::new(BASIC);
    env.edit(|fj| {
        fj["spec"]["job"]["upgradeMode"] = json!("savepoint");
        fj["spec"]["image"] = json!("rheo:typo");
    });
    *env.jm.job_state.lock().unwrap() = Some(Err(JmError::Unreachable("connection refused".into())));
    env.pod("wc-jobmanager-7d9f-abcde", waiting("ImagePullBackOff", "Back-off pulling image \"rheo:typo\"", None));
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_UNREACHABLE));
    let calls = env.take_calls();
    assert!(lines(&calls).contains(&format!("GET {PODS}")), "{:#?}", lines(&calls));
    assert!(lines(&calls).contains(&"EVENT ImagePullBackOff".to_string()));
    let status = env.status();
    assert_eq!(status["jobStatus"]["state"], "UNKNOWN");
    assert!(status["error"].as_str().unwrap().contains("wc-jobmanager-7d9f-abcde container rheo: ImagePullBackOff"));
    assert_eq!(condition(&status, "Degraded")["reason"], "ImagePullBackOff");

    // The fix: the job never ran, so there is no state to save; redeploy at once.
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:1"));
    env.reconcile().await.unwrap();
    let args = jm_args(&env);
    assert_eq!(args[4], JOB1);
    assert!(!args.iter().any(|a| a == "--from-savepoint"), "{args:?}");
    assert_eq!(env.object(JM_DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"], "rheo:1");
}

#[tokio::test]
async fn a_savepoint_upgrade_of_a_crash_looping_jobmanager_says_so_instead_of_waiting_forever() {
    let env = deployed("savepoint").await;
    *env.jm.job_state.lock().unwrap() = Some(Err(JmError::Unreachable("connection refused".into())));
    env.pod("wc-jobmanager-7d9f-abcde", waiting("CrashLoopBackOff", "", Some("OOMKilled")));
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    let status = env.status();
    assert_eq!(condition(&status, "Stalled")["reason"], "SavepointImpossible");
    let error = status["error"].as_str().unwrap();
    assert!(error.contains("CrashLoopBackOff (last exit: OOMKilled)"), "{error}");
    assert!(error.contains("allowLastStateFallback"), "{error}");
}

#[tokio::test]
async fn a_failed_job_shows_its_newest_exception_and_is_left_failed_by_default() {
    let env = deployed("last-state").await;
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Failed));
    *env.jm.exceptions.lock().unwrap() = vec![
        ("java.lang.RuntimeException: disk full\n\tat sink".into(), Some("Sink: files (2/4)".into())),
        ("older".into(), None),
    ];
    env.reconcile().await.unwrap();
    let status = env.status();
    assert_eq!(status["lifecycleState"], "FAILED");
    assert_eq!(status["jobStatus"]["failure"], "java.lang.RuntimeException: disk full (in Sink: files (2/4))");
    assert!(status["error"].as_str().unwrap().contains("disk full"));
    assert!(status["error"].as_str().unwrap().contains("restartPolicy"));
    assert_eq!(condition(&status, "Stalled")["reason"], "JobFailed");
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4], JOB0, "not restarted");
}

#[tokio::test]
async fn a_failed_job_is_restarted_by_its_policy_with_backoff_and_a_limit() {
    let env = deployed("stateless").await;
    *env.jm.checkpoint.lock().unwrap() = Some(("s3://rheo/checkpoints/j/chk-7".into(), 1_795_464_470_622));
    env.edit(|fj| {
        fj["spec"]["job"]["restartPolicy"] = json!({"mode": "OnFailure", "maxRestarts": 1, "backoffSeconds": 0})
    });
    env.reconcile().await.unwrap();
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Failed));
    env.reconcile().await.unwrap();
    let args = jm_args(&env);
    assert_eq!(args[4..7], s(&[JOB1, "--from-savepoint", &format!("s3://rheo/checkpoints/{JOB0}")]), "last-state");
    assert_eq!(env.status()["reconciliation"]["failureRestarts"], 1);
    assert!(lines(&env.take_calls()).contains(&"EVENT RestartedAfterFailure".to_string()));

    // It fails again: the limit is reached, it stays failed.
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4], JOB1);
    let status = env.status();
    assert_eq!(condition(&status, "Stalled")["reason"], "JobFailed");
    assert!(status["error"].as_str().unwrap().contains("after 1 restarts in a row"), "{status}");
}

#[tokio::test]
async fn a_restart_waits_out_its_backoff() {
    let env = deployed("stateless").await;
    env.edit(|fj| fj["spec"]["job"]["restartPolicy"] = json!({"mode": "OnFailure", "backoffSeconds": 30}));
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Failed));
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(std::time::Duration::from_secs(30)));
    assert_eq!(jm_args(&env)[4], JOB0);
    assert_eq!(condition(&env.status(), "Stalled")["status"], "False");
}

#[tokio::test]
async fn finished_and_canceled_jobs_are_final_and_not_polled() {
    for state in [JobState::Finished, JobState::Canceled] {
        let env = deployed("stateless").await;
        *env.jm.job_state.lock().unwrap() = Some(Ok(state));
        assert_eq!(env.reconcile().await.unwrap(), Action::await_change());
        let status = env.status();
        assert_eq!(status["lifecycleState"], "FINISHED");
        assert_eq!(status["jobStatus"]["state"], state.to_string());
        assert_eq!(condition(&status, "Progressing")["status"], "False");
        assert_eq!(env.object(JM_DEPLOY).unwrap()["spec"]["replicas"], 0, "not run again");
        env.jm.take_calls();
        assert_eq!(env.reconcile().await.unwrap(), Action::await_change());
        assert!(env.jm.take_calls().is_empty(), "nothing to poll");
        // A restart runs it again.
        env.edit(|fj| fj["spec"]["restartNonce"] = json!(1));
        *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Running));
        env.reconcile().await.unwrap();
        assert_eq!(jm_args(&env)[4], JOB1);
        assert_eq!(env.object(JM_DEPLOY).unwrap()["spec"]["replicas"], 1);
    }
}

#[tokio::test]
async fn scaling_a_non_reactive_job_changes_its_parallelism_through_a_last_state_redeploy() {
    let env = deployed("stateless").await;
    *env.jm.checkpoint.lock().unwrap() = Some(("s3://rheo/checkpoints/j/chk-7".into(), 1_795_464_470_622));
    env.reconcile().await.unwrap();
    env.take_calls();
    env.edit(|fj| fj["spec"]["taskManager"]["replicas"] = json!(3));
    env.reconcile().await.unwrap();
    let cm = env.object(CONFIG_MAP).unwrap();
    assert!(cm["data"]["rheo.yaml"].as_str().unwrap().contains("parallelism.default: 6"), "3 × 2 slots");
    assert_eq!(env.object(TM_DEPLOY).unwrap()["spec"]["replicas"], 3);
    assert_eq!(jm_args(&env)[4..7], s(&[JOB1, "--from-savepoint", &format!("s3://rheo/checkpoints/{JOB0}")]));
    assert!(lines(&env.take_calls()).contains(&"EVENT RescaledLastState".to_string()));
}

#[tokio::test]
async fn a_reactive_rescale_is_not_a_failure() {
    let env = Env::new(BASIC);
    env.edit(|fj| fj["spec"]["taskManager"]["autoscaler"] = json!({"minReplicas": 1, "maxReplicas": 4}));
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["spec"]["taskManager"]["replicas"] = json!(3));
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Restarting));
    env.reconcile().await.unwrap();
    let status = env.status();
    assert_eq!(jm_args(&env)[4], JOB0, "same job");
    assert_eq!(condition(&status, "Degraded")["status"], "False", "{status}");
    assert!(status.get("error").is_none_or(|e| e.is_null()));
}

#[tokio::test]
async fn periodic_savepoints_are_kept_in_a_trimmed_history() {
    let env = deployed("stateless").await;
    env.edit(|fj| {
        fj["spec"]["job"]["periodicSavepointIntervalSeconds"] = json!(3600);
        fj["spec"]["job"]["savepointHistory"] = json!({"maxCount": 2});
        fj["status"]["reconciliation"]["runningSince"] = json!("2026-11-23T10:00:00Z");
        fj["status"]["jobStatus"]["savepointHistory"] = json!([
            {"path": "s3://rheo/savepoints/a", "timestamp": "2026-11-23T09:00:00Z", "purpose": "periodic"},
            {"path": "s3://rheo/savepoints/b", "timestamp": "2026-11-23T10:30:00Z", "purpose": "periodic"},
        ]);
    });
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_BUSY));
    assert!(env.jm.take_calls().iter().any(|c| c.starts_with(&format!("POST /jobs/{JOB0}/savepoints"))));
    assert_eq!(env.status()["jobStatus"]["pendingSavepoint"]["purpose"], "periodic");
    *env.jm.savepoint.lock().unwrap() = Some(Ok("s3://rheo/savepoints/c".into()));
    env.take_calls();
    env.reconcile().await.unwrap();
    let history = env.status()["jobStatus"]["savepointHistory"].clone();
    let paths: Vec<_> = history.as_array().unwrap().iter().map(|h| h["path"].as_str().unwrap().to_string()).collect();
    assert_eq!(paths, s(&["s3://rheo/savepoints/b", "s3://rheo/savepoints/c"]));

    // The trimmed savepoint's files are deleted through the JobManager, once, with an Event.
    let jm_calls = env.jm.take_calls();
    assert!(jm_calls.iter().any(|c| c == "POST /savepoint-disposal s3://rheo/savepoints/a"), "{jm_calls:?}");
    assert!(!jm_calls.iter().any(|c| c.contains("savepoint-disposal s3://rheo/savepoints/b")), "{jm_calls:?}");
    assert!(lines(&env.take_calls()).contains(&"EVENT SavepointDisposed".to_string()));
    assert!(env.status()["jobStatus"].get("savepointsToDispose").is_none(), "{}", env.status());
    env.reconcile().await.unwrap();
    assert!(!env.jm.take_calls().iter().any(|c| c.contains("savepoint-disposal")), "deleted once");
}

#[tokio::test]
async fn an_api_refusal_reaches_the_status_and_an_event() {
    let env = deployed("stateless").await;
    env.api
        .refuse
        .lock()
        .unwrap()
        .insert(JM_DEPLOY.into(), (422, "admission webhook \"policy\" denied the request: privileged".into()));
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(rheo_operator::reconcile::REQUEUE_API_ERROR));
    let status = env.status();
    assert!(status["error"].as_str().unwrap().contains("Deployment wc-jobmanager: admission webhook"), "{status}");
    assert_eq!(condition(&status, "Stalled")["reason"], "ApplyFailed");
    assert!(lines(&env.take_calls()).contains(&"EVENT ApplyFailed".to_string()));
}

#[tokio::test]
async fn savepoint_upgrade_stops_with_savepoint_then_redeploys_from_it() {
    let env = deployed("savepoint").await;
    env.edit(|fj| fj["spec"]["job"]["parallelism"] = json!(4));

    // Pass 1: record the upgrade, check the job runs, record the pending savepoint, stop it.
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_BUSY));
    assert_eq!(
        env.jm.take_calls(),
        s(&[
            &format!("GET /jobs/{JOB0}"),
            &format!(r#"POST /jobs/{JOB0}/stop {{"targetDirectory":"s3://rheo/savepoints","drain":false}}"#)
        ])
    );
    let calls = env.take_calls();
    let statuses: Vec<_> = calls.iter().filter(|c| c.path == FJ_STATUS).map(|c| &c.body["status"]).collect();
    assert_eq!(statuses[0]["reconciliation"]["upgrade"]["mode"], "savepoint");
    assert_eq!(statuses[1]["jobStatus"]["pendingSavepoint"]["purpose"], "upgrade");
    assert!(statuses[1]["jobStatus"]["pendingSavepoint"].get("triggerId").is_none(), "recorded before the trigger");
    assert_eq!(statuses[2]["jobStatus"]["pendingSavepoint"]["triggerId"], "stop-1");
    assert!(!lines(&calls).iter().any(|l| l.contains("deployments")), "nothing redeployed yet");

    // Pass 2 (as after an operator restart: everything comes from status): still in progress.
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_BUSY));
    assert_eq!(env.jm.take_calls(), s(&[&format!("GET /jobs/{JOB0}/savepoints/stop-1")]));
    env.take_calls();

    // Pass 3: done; redeploy from the savepoint with a new job id.
    *env.jm.savepoint.lock().unwrap() = Some(Ok("s3://rheo/savepoints/savepoint-623226-aaaa".into()));
    env.reconcile().await.unwrap();
    assert_eq!(env.jm.take_calls()[0], format!("GET /jobs/{JOB0}/savepoints/stop-1"));
    assert_eq!(
        jm_args(&env)[..7],
        s(&[
            "jobmanager",
            "--job",
            "word-count",
            "--job-id",
            JOB1,
            "--from-savepoint",
            "s3://rheo/savepoints/savepoint-623226-aaaa"
        ])
    );
    let cm = env.object(CONFIG_MAP).unwrap();
    assert!(cm["data"]["rheo.yaml"].as_str().unwrap().contains("parallelism.default: 4"));
    let status = env.status();
    assert_eq!(status["jobStatus"]["lastSavepoint"]["path"], "s3://rheo/savepoints/savepoint-623226-aaaa");
    assert!(status["jobStatus"].get("pendingSavepoint").is_none());
    assert!(lines(&env.take_calls()).contains(&"EVENT StopWithSavepointCompleted".to_string()));
}

#[tokio::test]
async fn savepoint_upgrade_of_a_failed_job_stalls_instead_of_dropping_state() {
    let env = deployed("savepoint").await;
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Failed));
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    assert!(!env.jm.take_calls().iter().any(|c| c.contains("/stop") || c.contains("cancel")));
    let status = env.status();
    assert_eq!(condition(&status, "Stalled")["status"], "True");
    assert_eq!(condition(&status, "Stalled")["reason"], "SavepointImpossible");
    assert_eq!(jm_args(&env)[4], JOB0);
}

#[tokio::test]
async fn suspend_takes_a_savepoint_and_scales_to_zero_then_resume_restores_it() {
    let env = deployed("savepoint").await;
    env.edit(|fj| fj["spec"]["job"]["state"] = json!("suspended"));
    env.reconcile().await.unwrap();
    *env.jm.savepoint.lock().unwrap() = Some(Ok("s3://rheo/savepoints/sp-1".into()));
    env.reconcile().await.unwrap();
    env.take_calls();
    env.jm.take_calls();

    let status = env.status();
    assert_eq!(status["lifecycleState"], "SUSPENDED");
    assert_eq!(status["jobStatus"]["state"], "SUSPENDED");
    assert_eq!(status["reconciliation"]["restorePath"], "s3://rheo/savepoints/sp-1");
    assert_eq!(env.object(JM_DEPLOY).unwrap()["spec"]["replicas"], 0);
    assert_eq!(env.object(TM_DEPLOY).unwrap()["spec"]["replicas"], 0);
    assert_eq!(condition(&status, "Ready")["status"], "True");

    // Resume: nothing to stop, so no JobManager call before the new deployment.
    env.edit(|fj| fj["spec"]["job"]["state"] = json!("running"));
    env.reconcile().await.unwrap();
    assert_eq!(env.jm.take_calls()[0], format!("GET /jobs/6232260e7262bc211b07d58420043bda"));
    assert_eq!(env.object(JM_DEPLOY).unwrap()["spec"]["replicas"], 1);
    assert_eq!(jm_args(&env)[5..7], s(&["--from-savepoint", "s3://rheo/savepoints/sp-1"]));
    assert_eq!(env.status()["reconciliation"]["jobEpoch"], 2);
}

#[tokio::test]
async fn stateless_resume_after_a_savepoint_suspension_starts_with_empty_state() {
    let env = deployed("savepoint").await;
    env.edit(|fj| fj["spec"]["job"]["state"] = json!("suspended"));
    env.reconcile().await.unwrap();
    *env.jm.savepoint.lock().unwrap() = Some(Ok("s3://rheo/savepoints/sp-1".into()));
    env.reconcile().await.unwrap();
    assert_eq!(
        env.status()["reconciliation"]["restorePath"],
        "s3://rheo/savepoints/sp-1",
        "suspended with a savepoint"
    );
    env.take_calls();
    env.jm.take_calls();

    // Resume asking for a stateless upgrade: the suspension's savepoint is not used.
    env.edit(|fj| {
        fj["spec"]["job"]["state"] = json!("running");
        fj["spec"]["job"]["upgradeMode"] = json!("stateless");
    });
    env.reconcile().await.unwrap();
    let args = jm_args(&env);
    assert_eq!(
        args,
        s(&[
            "jobmanager",
            "--job",
            "word-count",
            "--job-id",
            "6232260e7262bc211b07d58420043bda",
            "--",
            "--input",
            "/data/in"
        ]),
        "a stateless resume starts with empty state"
    );
    assert!(!args.iter().any(|a| a.contains("savepoint")), "{args:?}");
    assert_eq!(env.object(JM_DEPLOY).unwrap()["spec"]["replicas"], 1);
    let status = env.status();
    assert!(status["reconciliation"].get("restorePath").is_none_or(|p| p.is_null()), "{status}");
    assert_eq!(status["reconciliation"]["jobEpoch"], 2);
    assert!(status["reconciliation"].get("upgrade").is_none());
    // Nothing ran while suspended, so nothing to cancel or stop.
    assert!(!env.jm.take_calls().iter().any(|c| c.contains("cancel") || c.contains("/stop")));
}

#[tokio::test]
async fn savepoint_nonce_triggers_one_savepoint() {
    let env = deployed("stateless").await;
    env.edit(|fj| fj["spec"]["job"]["savepointTriggerNonce"] = json!(1));

    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_BUSY));
    let jm = env.jm.take_calls();
    assert_eq!(
        jm[2],
        format!(r#"POST /jobs/{JOB0}/savepoints {{"target-directory":"s3://rheo/savepoints","cancel-job":false}}"#)
    );
    assert!(!jm.iter().any(|c| c.contains("cancel?") || c.contains("/stop")));
    assert_eq!(env.status()["jobStatus"]["pendingSavepoint"]["nonce"], 1);
    assert_eq!(env.status()["jobStatus"]["pendingSavepoint"]["triggerId"], "trigger-1");

    *env.jm.savepoint.lock().unwrap() = Some(Ok("s3://rheo/savepoints/sp-9".into()));
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_STEADY));
    assert!(env.jm.take_calls().contains(&format!("GET /jobs/{JOB0}/savepoints/trigger-1")));
    let status = env.status();
    assert_eq!(
        status["jobStatus"]["lastSavepoint"],
        json!({"path": "s3://rheo/savepoints/sp-9", "timestamp": "2026-11-23T12:00:00Z", "purpose": "manual"})
    );
    assert_eq!(status["reconciliation"]["lastSavepointTriggerNonce"], 1);
    assert_eq!(jm_args(&env)[4], JOB0, "a savepoint is not an upgrade");

    // The same nonce again does nothing.
    env.reconcile().await.unwrap();
    assert!(!env.jm.take_calls().iter().any(|c| c.contains("savepoints")));
}

#[tokio::test]
async fn scale_of_a_fixed_parallelism_changes_taskmanagers_without_an_upgrade() {
    let env = Env::new(BASIC);
    env.edit(|fj| {
        fj["spec"]["job"]["upgradeMode"] = json!("savepoint");
        fj["spec"]["job"]["parallelism"] = json!(2);
    });
    env.reconcile().await.unwrap();
    env.take_calls();
    env.jm.take_calls();
    env.edit(|fj| fj["spec"]["taskManager"]["replicas"] = json!(3));
    env.reconcile().await.unwrap();
    let calls = env.take_calls();
    assert_eq!(body_of(&calls, "PATCH", TM_DEPLOY)["spec"]["replicas"], 3);
    assert_eq!(jm_args(&env)[4], JOB0, "same job");
    assert!(!env.jm.take_calls().iter().any(|c| c.contains("/stop") || c.contains("cancel")));
    assert!(lines(&calls).contains(&"EVENT ScaledUp".to_string()));
    let status = env.status();
    assert_eq!(status["taskManager"]["desiredReplicas"], 3);
    assert!(status["reconciliation"].get("upgrade").is_none());
}

#[tokio::test]
async fn deleted_jobmanager_deployment_is_recreated() {
    let env = deployed("stateless").await;
    env.api.objects.lock().unwrap().remove(JM_DEPLOY);
    env.reconcile().await.unwrap();
    let calls = env.take_calls();
    assert_eq!(body_of(&calls, "PATCH", JM_DEPLOY)["spec"]["template"]["spec"]["containers"][0]["args"][4], JOB0);
    assert!(env.object(JM_DEPLOY).is_some());
}

#[tokio::test]
async fn delete_with_savepoint_policy_waits_for_the_savepoint_then_releases_the_finalizer() {
    let env = deployed("stateless").await;
    env.edit(|fj| {
        fj["spec"]["deletionPolicy"] = json!("savepoint");
        fj["metadata"]["deletionTimestamp"] = json!("2026-11-23T11:59:00Z");
    });

    let err = env.reconcile().await.unwrap_err();
    assert!(matches!(&err, Error::Finalizer(_)), "{err}");
    assert_eq!(
        env.jm.take_calls(),
        s(&[
            &format!("GET /jobs/{JOB0}"),
            &format!(r#"POST /jobs/{JOB0}/stop {{"targetDirectory":"s3://rheo/savepoints","drain":false}}"#)
        ])
    );
    assert_eq!(env.status()["lifecycleState"], "DELETING");
    assert_eq!(env.flinkjob()["metadata"]["finalizers"], json!(["rheo.io/finalizer"]));
    env.take_calls();

    *env.jm.savepoint.lock().unwrap() = Some(Ok("s3://rheo/savepoints/final".into()));
    env.reconcile().await.unwrap();
    let calls = env.take_calls();
    let last = calls.iter().rev().find(|c| c.path == FJ_PATH).expect("finalizer removal");
    assert!(last.content_type.contains("json-patch"));
    assert_eq!(last.body[1], json!({"op": "remove", "path": "/metadata/finalizers/0"}));
    assert_eq!(env.flinkjob()["metadata"]["finalizers"], json!([]));
    assert_eq!(env.status()["jobStatus"]["lastSavepoint"]["purpose"], "deletion");
}

#[tokio::test]
async fn delete_of_a_finished_job_releases_the_finalizer_without_a_savepoint() {
    // Found on a real cluster: the finished job's JobManager is scaled to zero, so a savepoint
    // was awaited from nobody until the deletion timeout.
    let env = deployed("stateless").await;
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Finished));
    env.reconcile().await.unwrap();
    assert_eq!(env.object(JM_DEPLOY).unwrap()["spec"]["replicas"], 0);
    env.jm.take_calls();
    env.take_calls();
    env.edit(|fj| {
        fj["spec"]["deletionPolicy"] = json!("savepoint");
        fj["metadata"]["deletionTimestamp"] = json!("2026-11-23T11:59:00Z");
    });
    env.reconcile().await.unwrap();
    assert!(env.jm.take_calls().is_empty(), "no JobManager to ask");
    assert_eq!(env.flinkjob()["metadata"]["finalizers"], json!([]));
}

#[tokio::test]
async fn delete_gives_up_on_the_savepoint_after_the_timeout() {
    let env = deployed("stateless").await;
    *env.jm.job_state.lock().unwrap() = Some(Err(JmError::Unreachable("no route".into())));
    env.edit(|fj| {
        fj["spec"]["deletionPolicy"] = json!("savepoint");
        fj["spec"]["deletionTimeoutSeconds"] = json!(60);
        fj["metadata"]["deletionTimestamp"] = json!("2026-11-23T11:58:00Z");
    });
    env.reconcile().await.unwrap();
    assert_eq!(env.jm.take_calls(), s(&[&format!("PATCH /jobs/{JOB0}?mode=cancel")]));
    let calls = env.take_calls();
    assert!(lines(&calls).contains(&"EVENT DeletionTimeout".to_string()));
    assert_eq!(env.flinkjob()["metadata"]["finalizers"], json!([]));
}

#[tokio::test]
async fn unreachable_jobmanager_degrades_status_without_failing_the_pass() {
    let env = deployed("stateless").await;
    *env.jm.job_state.lock().unwrap() = Some(Err(JmError::Unreachable("connection refused".into())));
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_UNREACHABLE));
    let calls = env.take_calls();
    let mut want = applies();
    want.extend(s(&[
        &format!("GET {PODS}"),
        &format!("PATCH {FJ_STATUS}"),
        "EVENT JobUnknown",
        "EVENT JobManagerUnreachable",
    ]));
    assert_eq!(lines(&calls), want);
    let status = env.status();
    assert!(status["error"].as_str().unwrap().contains("connection refused"));
    assert_eq!(status["jobStatus"]["state"], "UNKNOWN", "not RUNNING: nobody can say");
    assert_eq!(condition(&status, "Degraded")["status"], "True");
    assert_eq!(condition(&status, "Ready")["status"], "False");

    // The same problem again: no second Event.
    env.take_calls();
    env.reconcile().await.unwrap();
    assert!(!lines(&env.take_calls()).iter().any(|l| l.starts_with("EVENT")));
}

#[tokio::test]
async fn invalid_spec_gets_a_status_error_and_an_event_and_nothing_is_deployed() {
    let env = Env::new(BASIC);
    env.edit(|fj| fj["spec"]["flinkConfiguration"]["rest.port"] = json!("9999"));
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_INVALID));
    let calls = env.take_calls();
    assert_eq!(lines(&calls), s(&[&format!("PATCH {FJ_STATUS}"), "EVENT InvalidSpec"]));
    let status = env.status();
    assert!(status["error"].as_str().unwrap().contains("spec.flinkConfiguration: rest.port"), "{status}");
    assert_eq!(condition(&status, "Stalled")["status"], "True");
    assert_eq!(condition(&status, "Stalled")["reason"], "InvalidSpec");
    assert!(env.jm.take_calls().is_empty());
    assert!(env.object(JM_DEPLOY).is_none());
}

/// The reconciler's side of the chart's RBAC (charts/tests/test_rheo_operator.py WORKLOAD_RIGHTS):
/// over a whole lifecycle it only patches the FlinkJob (finalizer) and its status, server-side
/// applies the children (patch; create when missing) and creates or patches Events. Never a
/// GET, PUT or DELETE: a new kind of call here needs a new verb in the chart.
#[tokio::test]
async fn a_whole_lifecycle_uses_only_the_verbs_the_chart_grants() {
    let env = Env::new(BASIC);
    env.edit(|fj| {
        fj["metadata"]["finalizers"] = json!(null);
        fj["spec"]["job"]["upgradeMode"] = json!("savepoint");
        fj["spec"]["job"]["parallelism"] = json!(2);
        fj["spec"]["deletionPolicy"] = json!("savepoint");
    });
    env.reconcile().await.unwrap();
    env.reconcile().await.unwrap();
    *env.jm.savepoint.lock().unwrap() = Some(Ok("s3://rheo/savepoints/sp-1".into()));
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["spec"]["job"]["state"] = json!("suspended"));
    env.reconcile().await.unwrap();
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["spec"]["job"]["state"] = json!("running"));
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["spec"]["taskManager"]["replicas"] = json!(2));
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["metadata"]["deletionTimestamp"] = json!("2026-11-23T11:59:00Z"));
    assert!(matches!(env.reconcile().await, Err(Error::Finalizer(_))), "waits for the deletion savepoint");
    env.reconcile().await.unwrap();
    assert_eq!(env.flinkjob()["metadata"]["finalizers"], json!([]), "the lifecycle ran to the end");

    let calls = env.take_calls();
    for c in &calls {
        let segments: Vec<&str> = c.path.split('/').collect();
        let resource = match segments.as_slice() {
            [.., "flinkjobs", _, "status"] => "flinkjobs/status",
            [.., "pods"] => "pods",
            [.., "events"] | [.., "events", _] => "events",
            [.., resource, _name] => resource,
            _ => "",
        };
        let ssa = c.content_type.contains("apply-patch");
        let allowed = match (c.method.as_str(), resource) {
            ("PATCH", "flinkjobs") => c.content_type.contains("json-patch"), // the finalizer helper
            ("PATCH", "flinkjobs/status") => ssa,
            ("PATCH", "deployments" | "services" | "configmaps") => ssa,
            ("GET", "pods") => c.path == PODS, // list, to explain a JobManager that does not come up
            ("POST" | "PATCH", "events") => true, // the Recorder: a new Event, or a series update
            _ => false,
        };
        assert!(allowed, "{} {} ({}) needs a verb the chart does not grant", c.method, c.path, c.content_type);
    }
    let set = |m: &str| calls.iter().filter(|c| c.method == m).count();
    assert!(set("PATCH") > 0 && set("POST") > 0);
}

/// kube's Recorder folds Events with the same (type, reason, action) on one object into a series
/// that keeps the FIRST note: two different transitions sharing a pair would hide the second
/// one's note (a stateless resume shown as the earlier savepoint upgrade). Over a whole lifecycle,
/// every (type, reason, action) must therefore always carry the same note.
#[tokio::test]
async fn every_transition_has_its_own_event_reason_and_action() {
    let env = Env::new(BASIC);
    env.edit(|fj| {
        fj["spec"]["job"]["upgradeMode"] = json!("savepoint");
        fj["spec"]["job"]["parallelism"] = json!(2);
        fj["spec"]["deletionPolicy"] = json!("savepoint");
    });
    *env.jm.savepoint.lock().unwrap() = Some(Ok("s3://rheo/savepoints/sp-1".into()));
    // A fresh Recorder each pass: every Event is POSTed whole, none folded into a series.
    let pass = || env.reconcile_with_fresh_recorder();
    pass().await.unwrap();
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2")); // savepoint upgrade
    pass().await.unwrap();
    pass().await.unwrap();
    env.edit(|fj| fj["spec"]["job"]["state"] = json!("suspended")); // suspend with a savepoint
    pass().await.unwrap();
    pass().await.unwrap();
    env.edit(|fj| {
        fj["spec"]["job"]["state"] = json!("running"); // stateless resume
        fj["spec"]["job"]["upgradeMode"] = json!("stateless");
    });
    pass().await.unwrap();
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:3")); // stateless upgrade
    pass().await.unwrap();
    env.edit(|fj| {
        fj["spec"]["job"]["upgradeMode"] = json!("last-state");
        fj["spec"]["job"]["args"] = json!(["--input", "/data/other"]); // last-state upgrade
    });
    *env.jm.checkpoint.lock().unwrap() = Some(("s3://rheo/checkpoints/j/chk-7".into(), 1_795_464_470_622));
    pass().await.unwrap();
    env.edit(|fj| fj["spec"]["job"]["savepointTriggerNonce"] = json!(1)); // manual savepoint
    pass().await.unwrap();
    pass().await.unwrap();
    env.edit(|fj| fj["spec"]["taskManager"]["replicas"] = json!(3));
    pass().await.unwrap();
    env.edit(|fj| fj["spec"]["taskManager"]["replicas"] = json!(2));
    pass().await.unwrap();
    env.edit(|fj| fj["metadata"]["deletionTimestamp"] = json!("2026-11-23T11:59:00Z"));
    assert!(matches!(pass().await, Err(Error::Finalizer(_))), "waits for the deletion savepoint");
    pass().await.unwrap();
    assert_eq!(env.flinkjob()["metadata"]["finalizers"], json!([]), "the lifecycle ran to the end");

    let calls = env.take_calls();
    assert!(!calls.iter().any(|c| c.method == "PATCH" && c.path.contains("/events/")), "no series updates");
    let mut notes: std::collections::BTreeMap<(String, String, String), std::collections::BTreeSet<String>> =
        Default::default();
    for c in calls.iter().filter(|c| c.method == "POST" && c.path.ends_with("/events")) {
        let field = |f: &str| c.body[f].as_str().unwrap_or_default().to_string();
        notes.entry((field("type"), field("reason"), field("action"))).or_default().insert(field("note"));
    }
    for (key, n) in &notes {
        assert_eq!(n.len(), 1, "{key:?} carries different transitions, a series would show only the first: {n:#?}");
    }
    let note = |reason: &str| {
        let found: Vec<_> = notes.iter().filter(|((_, r, _), _)| r == reason).collect();
        assert_eq!(found.len(), 1, "one {reason} Event kind in {:#?}", notes.keys());
        (found[0].0.2.clone(), found[0].1.first().unwrap().clone())
    };
    let table = [
        ("UpgradedFromSavepoint", "Upgrade", "restoring from s3://rheo/savepoints/sp-1"),
        ("SuspendedWithSavepoint", "Suspend", "a resume restores from s3://rheo/savepoints/sp-1"),
        ("ResumedStateless", "Resume", "starting with empty state"),
        ("UpgradedStateless", "Upgrade", "starting with empty state"),
        ("UpgradedLastState", "Upgrade", "restoring from s3://rheo/checkpoints/"),
        ("StopWithSavepointTriggered", "Upgrade", "with a savepoint"),
        ("StopWithSavepointTriggered", "Suspend", "with a savepoint"),
        ("StopWithSavepointTriggered", "Delete", "with a savepoint"),
        ("StopWithSavepointCompleted", "Delete", "savepoint at s3://rheo/savepoints/sp-1"),
        ("SavepointTriggered", "Savepoint", "savepoint of job"),
        ("SavepointCompleted", "Savepoint", "savepoint at s3://rheo/savepoints/sp-1"),
        ("ScaledUp", "Scale", "TaskManagers 1 → 3"),
        ("ScaledDown", "Scale", "TaskManagers 3 → 2"),
        ("ScaledToZero", "Scale", "TaskManagers 1 → 0"),
        ("ScaledFromZero", "Scale", "TaskManagers 0 → 1"),
    ];
    for (reason, action, fragment) in table {
        let found = notes.iter().find(|((_, r, a), _)| r == reason && a == action);
        let (_, n) = found.unwrap_or_else(|| panic!("no {reason}/{action} Event in {:#?}", notes.keys()));
        assert!(n.first().unwrap().contains(fragment), "{reason}/{action}: {n:?}");
    }
    assert!(note("ResumedStateless").1.starts_with("Resume done (stateless upgrade)"));
}

#[tokio::test]
async fn checkpoint_nonce_triggers_one_checkpoint_through_the_jobmanager() {
    let env = deployed("stateless").await;
    env.edit(|fj| fj["spec"]["job"]["checkpointTriggerNonce"] = json!(1));

    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_BUSY));
    let calls = env.take_calls();
    let statuses: Vec<_> = calls.iter().filter(|c| c.path == FJ_STATUS).map(|c| &c.body["status"]).collect();
    let recorded = &statuses[0]["jobStatus"]["pendingCheckpoint"];
    assert_eq!(recorded["nonce"], 1);
    assert_eq!(recorded["triggered"], false, "recorded before the trigger");
    let trigger = recorded["triggerId"].as_str().unwrap().to_string();
    assert!(trigger.len() == 32 && trigger.bytes().all(|b| b.is_ascii_hexdigit()), "{trigger}");
    let jm = env.jm.take_calls();
    let posted = format!(r#"POST /jobs/{JOB0}/checkpoints {{"checkpointType":"FULL","triggerId":"{trigger}"}}"#);
    assert!(jm.contains(&posted), "{jm:#?}");
    assert!(!jm.iter().any(|c| c.contains("/savepoints") || c.contains("/stop") || c.contains("cancel")));
    assert_eq!(env.status()["jobStatus"]["pendingCheckpoint"]["triggered"], true);
    assert!(lines(&calls).contains(&"EVENT CheckpointTriggered".to_string()));

    // Still running: asked again, not triggered again.
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_BUSY));
    let jm = env.jm.take_calls();
    assert!(jm.contains(&format!("GET /jobs/{JOB0}/checkpoints/{trigger}")), "{jm:#?}");
    assert!(!jm.iter().any(|c| c.starts_with("POST")), "{jm:#?}");

    *env.jm.triggered_checkpoint.lock().unwrap() = Some(Ok(8));
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_STEADY));
    let status = env.status();
    assert_eq!(status["reconciliation"]["lastCheckpointTriggerNonce"], 1);
    assert!(status["jobStatus"].get("pendingCheckpoint").is_none(), "{status}");
    assert!(lines(&env.take_calls()).contains(&"EVENT CheckpointCompleted".to_string()));
    assert_eq!(jm_args(&env)[4], JOB0, "a checkpoint is not an upgrade");

    // The same nonce again does nothing; a failed checkpoint shows in the status.
    env.jm.take_calls();
    env.reconcile().await.unwrap();
    assert!(!env.jm.take_calls().iter().any(|c| c.contains("/checkpoints/") || c.starts_with("POST")));
    env.edit(|fj| fj["spec"]["job"]["checkpointTriggerNonce"] = json!(2));
    *env.jm.triggered_checkpoint.lock().unwrap() = Some(Err("the checkpoint expired".into()));
    env.reconcile().await.unwrap();
    env.reconcile().await.unwrap();
    let status = env.status();
    assert_eq!(status["reconciliation"]["lastCheckpointTriggerNonce"], 2);
    assert!(status["error"].as_str().unwrap().contains("checkpoint for nonce 2 failed: the checkpoint expired"));
    assert_eq!(condition(&status, "Degraded")["reason"], "CheckpointFailed");
}

#[tokio::test]
async fn savepoint_redeploy_nonce_redeploys_from_the_chosen_savepoint_discarding_state() {
    let env = deployed("savepoint").await;
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB0}/chk-7"), 1_795_464_470_622));
    env.reconcile().await.unwrap();
    env.jm.take_calls();
    env.take_calls();
    env.edit(|fj| {
        fj["spec"]["job"]["initialSavepointPath"] = json!("s3://rheo/savepoints/savepoint-623226-chosen");
        fj["spec"]["job"]["savepointRedeployNonce"] = json!(1);
    });

    env.reconcile().await.unwrap();
    let jm = env.jm.take_calls();
    assert_eq!(
        jm[..2],
        s(&[
            "POST /snapshots/validation s3://rheo/savepoints/savepoint-623226-chosen",
            &format!("PATCH /jobs/{JOB0}?mode=cancel")
        ]),
        "checked, then its state is discarded: {jm:#?}"
    );
    assert!(!jm.iter().any(|c| c.contains("/stop")), "{jm:#?}");
    assert!(!jm.iter().any(|c| c.starts_with(&format!("POST /jobs/{JOB0}/savepoints"))), "{jm:#?}");
    assert_eq!(
        jm_args(&env)[4..7],
        s(&[JOB1, "--from-savepoint", "s3://rheo/savepoints/savepoint-623226-chosen"]),
        "not from its own checkpoints"
    );
    let status = env.status();
    assert_eq!(status["reconciliation"]["restorePath"], "s3://rheo/savepoints/savepoint-623226-chosen");
    assert!(lines(&env.take_calls()).contains(&"EVENT RedeployedFromSavepoint".to_string()));

    // Back to null: nothing happens; a new value redeploys again.
    env.edit(|fj| fj["spec"]["job"]["savepointRedeployNonce"] = json!(null));
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4], JOB1);
    env.edit(|fj| fj["spec"]["job"]["savepointRedeployNonce"] = json!(2));
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4..7], s(&[JOB2, "--from-savepoint", "s3://rheo/savepoints/savepoint-623226-chosen"]));

    // Without a savepoint to redeploy from, the spec is refused.
    env.edit(|fj| {
        fj["spec"]["job"]["initialSavepointPath"] = json!(null);
        fj["spec"]["job"]["savepointRedeployNonce"] = json!(3);
    });
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_INVALID));
    let error = env.status()["error"].as_str().unwrap().to_string();
    assert!(error.contains("spec.job.savepointRedeployNonce: needs spec.job.initialSavepointPath"), "{error}");
}

#[tokio::test]
async fn an_upgrade_whose_snapshot_cannot_be_restored_leaves_the_running_job_alone() {
    // A redeploy from a savepoint that is damaged: found before the running job is cancelled.
    let env = deployed("last-state").await;
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB0}/chk-7"), 1_795_464_470_622));
    let damaged = "s3://rheo/savepoints/savepoint-623226-damaged";
    env.jm.unrestorable.lock().unwrap().insert(
        damaged.into(),
        format!("{damaged}/0-1.state: expected 1024 bytes with CRC32 0badf00d, found 9 bytes with CRC32 00c0ffee"),
    );
    env.edit(|fj| {
        fj["spec"]["job"]["initialSavepointPath"] = json!(damaged);
        fj["spec"]["job"]["savepointRedeployNonce"] = json!(1);
    });
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_STEADY));
    let jm = env.jm.take_calls();
    assert!(jm.contains(&format!("POST /snapshots/validation {damaged}")), "{jm:#?}");
    assert!(!jm.iter().any(|c| c.contains("mode=cancel") || c.contains("/stop")), "the job was stopped: {jm:#?}");
    assert_eq!(jm_args(&env)[4], JOB0, "nothing redeployed");
    let status = env.status();
    let error = status["error"].as_str().unwrap();
    assert!(error.contains(damaged) && error.contains("found 9 bytes") && error.contains("left running"), "{error}");
    assert_eq!(condition(&status, "Stalled")["reason"], "SnapshotUnrestorable", "{status}");
    assert_eq!(status["lifecycleState"], "UPGRADING");

    // The fix: another savepoint and nonce; the redeploy goes ahead.
    let good = "s3://rheo/savepoints/savepoint-623226-good";
    env.edit(|fj| {
        fj["spec"]["job"]["initialSavepointPath"] = json!(good);
        fj["spec"]["job"]["savepointRedeployNonce"] = json!(2);
    });
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4..7], s(&[JOB1, "--from-savepoint", good]));
    assert!(env.status()["error"].is_null(), "{}", env.status());

    // A last-state upgrade whose checkpoints cannot be restored: the job keeps running too.
    let dir = format!("s3://rheo/checkpoints/{JOB1}");
    env.jm.unrestorable.lock().unwrap().insert(dir.clone(), format!("{dir}/chk-9/_metadata: EOF"));
    env.edit(|fj| fj["spec"]["job"]["args"] = json!(["--input", "/data/other"]));
    env.jm.take_calls();
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_STEADY));
    let jm = env.jm.take_calls();
    assert!(!jm.iter().any(|c| c.contains("mode=cancel")), "the job was cancelled: {jm:#?}");
    assert_eq!(jm_args(&env)[4], JOB1);
    let error = env.status()["error"].as_str().unwrap().to_string();
    assert!(error.contains("chk-9/_metadata: EOF") && error.contains("upgradeMode: savepoint"), "{error}");
}

#[tokio::test]
async fn an_upgrade_that_does_not_become_healthy_is_rolled_back_to_the_last_stable_spec() {
    let env = Env::new(BASIC);
    env.edit(|fj| {
        fj["spec"]["job"]["upgradeMode"] = json!("last-state");
        fj["spec"]["rollback"] = json!({"enabled": true, "readinessTimeoutSeconds": 60});
    });
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB0}/chk-7"), 1_795_464_470_622));
    env.reconcile().await.unwrap();
    let stable = env.status()["reconciliation"]["lastStableSpec"].as_str().unwrap().to_string();
    assert!(stable.contains("rheo:latest"), "{stable}");

    // The upgrade: a last-state redeploy whose image cannot be pulled.
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:typo"));
    *env.jm.job_state.lock().unwrap() = Some(Err(JmError::Unreachable("connection refused".into())));
    env.pod("wc-jobmanager-7d9f-abcde", waiting("ImagePullBackOff", "Back-off pulling image \"rheo:typo\"", None));
    env.reconcile().await.unwrap();
    let from_job0 = format!("s3://rheo/checkpoints/{JOB0}");
    assert_eq!(jm_args(&env)[4..7], s(&[JOB1, "--from-savepoint", &from_job0]));
    // Within the readiness timeout: waiting, not rolled back.
    env.edit(|fj| fj["status"]["reconciliation"]["deployedAt"] = json!("2026-11-23T11:59:01Z"));
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4], JOB1);
    env.take_calls();
    env.jm.take_calls();

    // The timeout passed: back to the stable spec, from the snapshot the failed job started from.
    env.edit(|fj| fj["status"]["reconciliation"]["deployedAt"] = json!("2026-11-23T11:59:00Z"));
    env.reconcile().await.unwrap();
    assert!(env.jm.take_calls().contains(&format!("PATCH /jobs/{JOB1}?mode=cancel")));
    let jm = env.object(JM_DEPLOY).unwrap();
    assert_eq!(jm["spec"]["template"]["spec"]["containers"][0]["image"], "rheo:latest");
    assert_eq!(jm_args(&env)[4..7], s(&[JOB2, "--from-savepoint", &from_job0]));
    let calls = env.take_calls();
    let events: Vec<_> = calls.iter().filter(|c| c.path.ends_with("/events")).collect();
    let unhealthy = events.iter().find(|c| c.body["reason"] == "UpgradeUnhealthy").expect("an UpgradeUnhealthy Event");
    assert_eq!(unhealthy.body["type"], "Warning");
    let note = unhealthy.body["note"].as_str().unwrap();
    assert!(note.contains("not RUNNING within 60s") && note.contains("ImagePullBackOff"), "{note}");
    assert!(lines(&calls).contains(&"EVENT RolledBack".to_string()), "{:#?}", lines(&calls));
    let status = env.status();
    assert!(status["reconciliation"]["rolledBackSpec"].as_str().unwrap().contains("rheo:typo"));
    assert_eq!(status["reconciliation"]["lastReconciledSpec"], stable.as_str());

    // Running again: the status says it was rolled back, and the failed spec is not retried.
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Running));
    env.api.objects.lock().unwrap().remove(&format!("{PODS}/wc-jobmanager-7d9f-abcde"));
    env.reconcile().await.unwrap();
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4], JOB2);
    let status = env.status();
    assert_eq!(status["lifecycleState"], "ROLLED_BACK");
    assert_eq!(condition(&status, "Stalled")["reason"], "RolledBack");
    assert!(status["error"].as_str().unwrap().contains("rolled back"), "{status}");

    // A new spec is deployed.
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    assert_eq!(env.object(JM_DEPLOY).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"], "rheo:2");
    let status = env.status();
    assert!(status["reconciliation"].get("rolledBackSpec").is_none(), "{status}");
    assert_eq!(status["lifecycleState"], "STABLE");
}

#[tokio::test]
async fn a_healthy_upgrade_is_not_rolled_back() {
    let env = Env::new(BASIC);
    env.edit(|fj| fj["spec"]["rollback"] = json!({"enabled": true, "readinessTimeoutSeconds": 60}));
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["status"]["reconciliation"]["deployedAt"] = json!("2026-11-23T11:00:00Z"));
    env.reconcile().await.unwrap();
    assert_eq!(jm_args(&env)[4], JOB1);
    assert!(env.status()["reconciliation"]["lastStableSpec"].as_str().unwrap().contains("rheo:2"));
}

#[tokio::test]
async fn checkpoint_directories_of_earlier_epochs_are_removed_once_the_new_job_checkpointed() {
    let env = deployed("last-state").await;
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB0}/chk-7"), 1_795_464_470_622));
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["spec"]["job"]["args"] = json!(["--input", "/data/other"]));
    env.reconcile().await.unwrap();
    let old = format!("s3://rheo/checkpoints/{JOB0}");
    assert_eq!(jm_args(&env)[4..7], s(&[JOB1, "--from-savepoint", &old]));
    assert_eq!(env.status()["reconciliation"]["retiredCheckpointDirs"], json!([old]));
    // The new job has restored from it but not checkpointed yet: the old directory stays.
    env.reconcile().await.unwrap();
    assert!(!env.jm.take_calls().iter().any(|c| c.contains("disposal")));
    env.take_calls();

    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB1}/chk-9"), 1_795_464_480_622));
    env.reconcile().await.unwrap();
    let jm = env.jm.take_calls();
    assert!(jm.contains(&format!("POST /savepoint-disposal {old}")), "{jm:#?}");
    assert!(jm.contains(&"GET /savepoint-disposal/disposal-1".to_string()), "{jm:#?}");
    assert!(env.status()["reconciliation"].get("retiredCheckpointDirs").is_none());
    assert!(lines(&env.take_calls()).contains(&"EVENT CheckpointsRemoved".to_string()));
    env.reconcile().await.unwrap();
    assert!(!env.jm.take_calls().iter().any(|c| c.contains("disposal")), "removed once");
}

#[tokio::test]
async fn checkpoint_directories_of_earlier_epochs_are_removed_when_the_new_job_finished_before_it_was_seen_checkpointing()
 {
    let env = deployed("last-state").await;
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB0}/chk-7"), 1_795_464_470_622));
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["spec"]["job"]["args"] = json!(["--input", "/data/short"]));
    env.reconcile().await.unwrap();
    let old = format!("s3://rheo/checkpoints/{JOB0}");
    assert_eq!(env.status()["reconciliation"]["retiredCheckpointDirs"], json!([old]));
    env.take_calls();
    env.jm.take_calls();

    // The next look finds the new job FINISHED, with its final checkpoint.
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB1}/chk-3"), 1_795_464_480_622));
    *env.jm.job_state.lock().unwrap() = Some(Ok(JobState::Finished));
    env.reconcile().await.unwrap();
    let jm = env.jm.take_calls();
    assert!(jm.contains(&format!("POST /savepoint-disposal {old}")), "{jm:#?}");
    assert!(env.status()["reconciliation"].get("retiredCheckpointDirs").is_none(), "{}", env.status());
    assert_eq!(env.status()["lifecycleState"], "FINISHED");
}

#[tokio::test]
async fn a_checkpoint_directory_that_cannot_be_removed_is_reported_and_left() {
    let env = deployed("last-state").await;
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB0}/chk-7"), 1_795_464_470_622));
    env.reconcile().await.unwrap();
    env.edit(|fj| fj["spec"]["image"] = json!("rheo:2"));
    env.reconcile().await.unwrap();
    *env.jm.disposal_failure.lock().unwrap() = Some("Access Denied".into());
    *env.jm.checkpoint.lock().unwrap() = Some((format!("s3://rheo/checkpoints/{JOB1}/chk-9"), 1_795_464_480_622));
    env.take_calls();
    env.reconcile().await.unwrap();
    let calls = env.take_calls();
    let kept = calls.iter().find(|c| c.body["reason"] == "CheckpointsKept").expect("a CheckpointsKept Event");
    assert!(kept.body["note"].as_str().unwrap().contains("Access Denied"), "{}", kept.body);
    assert!(env.status()["reconciliation"].get("retiredCheckpointDirs").is_none(), "not retried for ever");
}

// ---------------------------------------------------------------------------------------------
// Rheo's autoscaler (taskManager.autoscaler.mode: Rheo), against a simulated job: a source
// reading numbers that arrive at a scripted rate, and a map that processes 400 records/s per
// subtask. The JobManager behaves as Rheo's reactive one: it runs at the smaller of the
// parallelism last PUT to /resource-requirements and the registered slots, and each change of
// that is one redeploy that pauses the job for one step.
// ---------------------------------------------------------------------------------------------

const AUTOSCALED: &str = r#"
metadata: {}
spec:
  image: rheo:latest
  taskManager:
    replicas: 1
    slots: 1
    autoscaler: {minReplicas: 1, maxReplicas: 3, mode: Rheo, metricsIntervalSeconds: 5}
  flinkConfiguration:
    state.checkpoints.dir: s3://rheo/checkpoints
    job.autoscaler.metrics.window: 30s
    job.autoscaler.stabilization.interval: 15s
    job.autoscaler.scale-down.interval: 60s
    job.autoscaler.catch-up.duration: 5min
  job: {entry: arriving-numbers}
"#;

/// Records per second one map subtask processes.
const MAP_CAPACITY: f64 = 400.0;
/// One simulated step: the reconciler's pass interval while the autoscaler runs.
const STEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The simulated job and cluster.
#[derive(Default)]
struct World {
    /// Seconds since the start.
    t: u64,
    parallelism: u32,
    /// The parallelism the running redeploy goes to.
    redeploying_to: Option<u32>,
    redeploys: u32,
    backlog: f64,
    /// (t, load, parallelism, TaskManager replicas asked, decision) per step.
    timeline: Vec<(u64, f64, u32, i64, String)>,
}

impl World {
    /// One step: the cluster follows the operator's last pass, the job processes `load`
    /// records/s for a step, and the operator passes over it once.
    async fn step(&mut self, env: &Env, load: f64) {
        // Pods: the TaskManager Deployment's replicas have registered.
        let taskmanagers =
            env.object(TM_DEPLOY).map_or(1, |d| d["spec"]["replicas"].as_u64().unwrap_or(0) as u32).max(1);
        let requested = env.jm.scripted.lock().unwrap().as_ref().and_then(|j| j.requested);
        if let Some(to) = self.redeploying_to.take() {
            self.parallelism = to;
        } else {
            let wanted = requested.unwrap_or(u32::MAX).min(taskmanagers);
            if wanted != self.parallelism {
                self.redeploying_to = Some(wanted);
                self.redeploys += 1;
            }
        }
        let running = self.redeploying_to.is_none();
        let dt = STEP.as_secs_f64();
        let capacity = self.parallelism as f64 * MAP_CAPACITY;
        let processed = if running { (load + self.backlog / dt).min(capacity) } else { 0.0 };
        self.backlog = (self.backlog + (load - processed) * dt).max(0.0);
        let saturated = running && processed >= capacity - 1e-6;
        let busy = if running { processed / capacity * 1000.0 } else { 0.0 };
        let metrics = |records: f64, busy: f64, backpressured: f64, pending: Option<f64>| {
            let p = self.parallelism as f64;
            let mut m = vec![
                ("numRecordsInPerSecond".to_string(), records, records / p),
                ("numRecordsOutPerSecond".to_string(), records, records / p),
                ("busyTimeMsPerSecond".to_string(), busy * p, busy),
                ("backPressuredTimeMsPerSecond".to_string(), backpressured * p, backpressured),
                ("idleTimeMsPerSecond".to_string(), (1000.0 - busy - backpressured) * p, 1000.0 - busy - backpressured),
            ];
            if let Some(pending) = pending {
                m.push(("pendingRecords".to_string(), pending, pending / p));
            }
            m
        };
        let source_bp = if saturated { 950.0 } else { 0.0 };
        *env.jm.scripted.lock().unwrap() = Some(ScriptedJob {
            vertices: vec![("src".into(), "Source: arriving-numbers".into()), ("map".into(), "Map".into())],
            parallelism: self.parallelism,
            running,
            taskmanagers,
            slots: 1,
            metrics: [
                ("src".to_string(), metrics(processed, 50.0, source_bp, Some(self.backlog))),
                ("map".to_string(), metrics(processed, busy, 0.0, None)),
            ]
            .into(),
            requested,
        });
        env.advance(STEP);
        self.t += STEP.as_secs();
        env.reconcile().await.unwrap();
        let fj = env.flinkjob();
        let replicas = fj["spec"]["taskManager"]["replicas"].as_i64().unwrap();
        let decision = fj["status"]["autoscaler"]["decision"].as_str().unwrap_or("-").to_string();
        self.timeline.push((self.t, load, self.parallelism, replicas, decision));
    }

    /// The first time (s) from `since` at which the job runs at `parallelism` with every subtask.
    fn reached(&self, parallelism: u32, since: u64) -> Option<u64> {
        self.timeline.iter().find(|(t, _, p, _, _)| *t >= since && *p == parallelism).map(|(t, ..)| *t)
    }
}

/// Events the operator published: (reason, action, note).
fn events(calls: &[Call]) -> Vec<(String, String, String)> {
    calls
        .iter()
        .filter(|c| c.path.ends_with("/events") && c.method == "POST")
        .map(|c| {
            let field = |f: &str| c.body[f].as_str().unwrap_or_default().to_string();
            (field("reason"), field("action"), field("note"))
        })
        .collect()
}

/// A load of ±10 % around `rate`, the same every run.
fn wobble(rate: f64, step: u64) -> f64 {
    rate * (1.0 + 0.1 * (step as f64 * 1.7).sin())
}

async fn autoscaled(manifest: &str, replicas: u32) -> (Env, World) {
    let env = Env::new(manifest);
    env.reconcile().await.unwrap();
    let world = World { parallelism: replicas, ..Default::default() };
    (env, world)
}

#[tokio::test]
async fn a_load_step_scales_up_within_bounds_holds_and_scales_down_after_the_delay() {
    let (env, mut world) = autoscaled(AUTOSCALED, 1).await;
    // 100/s for a minute, 1,000/s ± 10 % for two minutes, then 100/s again.
    let (step_up, step_down, end) = (60, 180, 420);
    while world.t < end {
        let k = world.t / STEP.as_secs();
        let load = match world.t {
            t if t < step_up => 100.0,
            t if t < step_down => wobble(1000.0, k),
            _ => 100.0,
        };
        world.step(&env, load).await;
    }
    for (t, load, p, replicas, decision) in &world.timeline {
        eprintln!("t={t:>3}s load={load:>6.0}/s parallelism={p} replicas={replicas} {decision}");
    }
    let calls = env.take_calls();

    // Bounds: never more TaskManagers than maxReplicas, never fewer than minReplicas.
    assert!(world.timeline.iter().all(|(_, _, _, r, _)| (1..=3).contains(r)));
    // Up: three subtasks keep up with 1,000/s at 400/s each; the job gets there after the step.
    let up = world.reached(3, step_up).expect("scaled up to 3");
    eprintln!("load step to parallelism 3: {} s; backlog at the step down {:.0}", up - step_up, world.backlog);
    // The first decision sees a window still partly at the low rate and asks for less than
    // enough; the next one waits out stabilisation (15 s) and a full window (30 s) after it.
    assert!(up - step_up <= 120, "scaled up {} s after the load step", up - step_up);
    // Held through the wobble: parallelism 3 from then until the load steps down, and the
    // backlog the step built is gone.
    assert!(
        world.timeline.iter().filter(|(t, ..)| (up..step_down).contains(t)).all(|(_, _, p, r, _)| *p == 3 && *r == 3)
    );
    // Down: not before scale-down.interval (60 s) of wanting fewer, then to 1 on one TaskManager.
    let down = world.reached(1, step_down).expect("scaled down to 1");
    eprintln!("load step down to parallelism 1: {} s", down - step_down);
    assert!(down - step_down >= 60, "scaled down only {} s after the load dropped", down - step_down);
    assert!(down - step_down <= 150, "scaled down {} s after the load dropped", down - step_down);
    assert_eq!(world.timeline.last().unwrap().3, 1, "one TaskManager at the end");
    assert!(world.backlog < 1.0, "the backlog is worked off: {}", world.backlog);

    // Each decision is an Event with its reason; each rescale was one redeploy (one pause), the
    // scale-up's TaskManagers being added while the job was held at its parallelism.
    let events = events(&calls);
    let decisions: Vec<_> = events.iter().filter(|(r, ..)| r == "ScaledUp" || r == "ScaledDown").collect();
    for e in &decisions {
        eprintln!("EVENT {} [{}] {}", e.0, e.1, e.2);
    }
    assert_eq!(decisions.last().unwrap().0, "ScaledDown");
    assert!(decisions.last().unwrap().2.contains("TaskManagers 3 → 1"), "{decisions:?}");
    let (ups, downs) = (
        decisions.iter().filter(|(r, a, _)| r == "ScaledUp" && a.starts_with("AutoscaleTo")).count(),
        decisions.iter().filter(|(r, a, _)| r == "ScaledDown" && a.starts_with("AutoscaleTo")).count(),
    );
    assert!(ups >= 1 && downs == 1, "{decisions:?}");
    let up_note = &decisions[0].2;
    assert!(up_note.starts_with("parallelism 1 → "), "{up_note}");
    assert!(
        up_note.contains("Map ") && up_note.contains("% busy: wants ") && up_note.contains("(ScaleUp)"),
        "{up_note}"
    );
    assert_eq!(world.redeploys as usize, ups + downs, "one pause per rescale");
    assert_eq!(events.iter().filter(|(r, ..)| r == "Rescaled").count(), ups + downs);

    // The replicas were set through the scale subresource, which the chart grants.
    let scales: Vec<i64> = calls
        .iter()
        .filter(|c| c.path == format!("{FJ_PATH}/scale"))
        .map(|c| {
            assert_eq!(c.method, "PATCH");
            assert!(c.content_type.contains("merge-patch"), "{}", c.content_type);
            c.body["spec"]["replicas"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(scales.last(), Some(&1));
    assert!(scales.contains(&3), "{scales:?}");
}

#[tokio::test]
async fn status_shows_each_vertex_the_decision_and_the_last_rescale() {
    let (env, mut world) = autoscaled(AUTOSCALED, 1).await;
    // Collecting: no decision until the window is full.
    world.step(&env, 100.0).await;
    let a = env.status()["autoscaler"].clone();
    assert_eq!(a["decision"], "NoChange");
    assert!(
        a["reason"].as_str().unwrap().starts_with("stabilising")
            || a["reason"].as_str().unwrap().starts_with("collecting"),
        "{a}"
    );
    assert_eq!(a["vertices"][1]["name"], "Map");
    assert_eq!(a["vertices"][1]["recordsInPerSecond"], 100.0);
    assert_eq!(a["vertices"][1]["busyTimeMsPerSecond"], 250.0);
    assert!(a["vertices"][1].get("wantedParallelism").is_none());
    while world.t < 60 {
        world.step(&env, 100.0).await;
    }
    let a = env.status()["autoscaler"].clone();
    assert_eq!(a["reason"], "every vertex keeps its parallelism", "{a}");
    assert_eq!(a["vertices"][1]["wantedParallelism"], 1);
    assert_eq!(a["vertices"][1]["reason"], "AtMinParallelism");
    assert_eq!(a["vertices"][1]["trueProcessingRate"], 400.0);
    assert!(a.get("lastRescaleTime").is_none());
    // A step up: a decision, then the rescale in progress, then done.
    while env.status()["autoscaler"].get("rescale").is_none() {
        world.step(&env, 1000.0).await;
        assert!(world.t < 200, "no decision");
    }
    let a = env.status()["autoscaler"].clone();
    assert_eq!(a["decision"], "ScaleUp");
    assert_eq!(a["rescale"]["phase"], "AddingTaskManagers");
    assert_eq!(a["rescale"]["fromParallelism"], 1);
    let map = &a["vertices"][1];
    assert_eq!(map["reason"], "ScaleUp", "{a}");
    assert!(map["wantedParallelism"].as_i64().unwrap() > 1);
    assert_eq!(
        a["reason"].as_str().unwrap().split(':').next().unwrap(),
        format!("parallelism 1 → {0}, TaskManagers 1 → {0}", map["wantedParallelism"])
    );
    let decided = world.t;
    while env.status()["autoscaler"].get("rescale").is_some() {
        world.step(&env, 1000.0).await;
        assert!(world.t < decided + 120, "the rescale does not end");
    }
    let a = env.status()["autoscaler"].clone();
    assert_eq!(a["lastRescaleTime"], env.time().to_string());
    eprintln!(
        "decision to rescaled: {} s (simulated: pods register one step after the replicas, one step of redeploy)",
        world.t - decided
    );
    let fj = env.flinkjob();
    assert_eq!(fj["status"]["taskManager"]["desiredReplicas"], fj["spec"]["taskManager"]["replicas"]);
}

#[tokio::test]
async fn max_replicas_bounds_a_scale_up_and_min_replicas_a_scale_down() {
    let capped = AUTOSCALED.replace("maxReplicas: 3", "maxReplicas: 2");
    let (env, mut world) = autoscaled(&capped, 1).await;
    while world.t < 200 {
        let load = if world.t < 60 { 100.0 } else { 1000.0 };
        world.step(&env, load).await;
    }
    assert_eq!(world.timeline.iter().map(|(_, _, _, r, _)| *r).max(), Some(2));
    assert_eq!(world.parallelism, 2);
    let map = &env.status()["autoscaler"]["vertices"][1];
    assert_eq!(map["reason"], "AtMaxParallelism", "{map}");
    assert_eq!(map["wantedParallelism"], 2);

    let floored = AUTOSCALED.replace("minReplicas: 1", "minReplicas: 2").replace("replicas: 1\n", "replicas: 3\n");
    let (env, mut world) = autoscaled(&floored, 3).await;
    while world.t < 300 {
        world.step(&env, 100.0).await;
    }
    assert_eq!(world.timeline.iter().map(|(_, _, _, r, _)| *r).min(), Some(2), "{:?}", world.timeline);
    assert_eq!(world.timeline.last().unwrap().3, 2);
    assert_eq!(world.parallelism, 1, "one subtask is enough; the second TaskManager is minReplicas'");
}

#[tokio::test]
async fn an_external_autoscaler_is_left_alone() {
    // HPA users: the same spec without mode. Nothing reads metrics, nothing scales.
    let hpa = AUTOSCALED.replace(", mode: Rheo, metricsIntervalSeconds: 5", "");
    let (env, mut world) = autoscaled(&hpa, 1).await;
    while world.t < 200 {
        world.step(&env, 1000.0).await;
    }
    assert!(env.jm.take_calls().iter().all(|c| !c.contains("/metrics") && !c.contains("resource-requirements")));
    assert!(env.status().get("autoscaler").is_none());
    assert!(env.take_calls().iter().all(|c| !c.path.ends_with("/scale")));
    assert_eq!(world.timeline.last().unwrap().3, 1);
}

#[tokio::test]
async fn bad_autoscaler_options_are_an_invalid_spec() {
    let bad = AUTOSCALED.replace("job.autoscaler.metrics.window: 30s", "job.autoscaler.metrics.window: soon");
    let env = Env::new(&bad);
    assert_eq!(env.reconcile().await.unwrap(), Action::requeue(REQUEUE_INVALID));
    let status = env.status();
    assert!(status["error"].as_str().unwrap().contains("job.autoscaler.metrics.window"), "{status}");
}
