//! A storage outage during a failure: S3 stopped, a TaskManager killed while it is down, S3
//! back. The restarts that cannot reach the checkpoints go through the restart strategy (they
//! do not end the job), and once S3 answers again the job resumes and its output is exact.
//!
//! The outage needs an S3 endpoint of its own to stop: a second SeaweedFS from the project's
//! script, on another port, with the same data directory across the stop and the start.

use std::path::{Path, PathBuf};
use std::process::Command;

use rheo_testkit::{JobState, Poll};

use super::cluster::{assert_exact, cluster, job_args, write_input};

/// A SeaweedFS of this test (`scripts/services/s3.sh` with its own port), stopped on drop.
struct OwnS3 {
    port: u16,
}

impl OwnS3 {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/services/s3.sh")
    }

    fn run(&self, action: &str) {
        let status = Command::new(Self::script())
            .arg(action)
            .env("RHEO_S3_PORT", self.port.to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "scripts/services/s3.sh {action} on port {}: {status}", self.port);
    }

    /// Started beside the suite's endpoint (`AWS_ENDPOINT`, port P) on port P + 61, whose
    /// internal ports do not meet P's.
    fn start() -> Option<OwnS3> {
        let endpoint = match std::env::var("AWS_ENDPOINT") {
            Ok(endpoint) => endpoint,
            Err(_) => {
                rheo_testkit::skip_or_fail("this test", "AWS_ENDPOINT is not set (run under scripts/with-s3.sh)");
                return None;
            }
        };
        let port: u16 = endpoint.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).unwrap();
        let s3 = OwnS3 { port: port + 61 };
        s3.run("start");
        Some(s3)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        let _ = Command::new(Self::script()).arg("stop").env("RHEO_S3_PORT", self.port.to_string()).status();
    }
}

#[test]
fn a_taskmanager_lost_while_s3_is_down_resumes_exactly_once_s3_is_back() {
    let Some(s3) = OwnS3::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("input.tsv"), dir.path().join("out"));
    let expected = write_input(&input);
    let checkpoints =
        format!("state.checkpoints.dir=s3://rheo-test/outage-{}-{}", std::process::id(), rheo::runtime::task::now_ms());
    let endpoint = format!("s3.endpoint={}", s3.endpoint());
    let mut cluster = cluster(
        dir.path(),
        &[
            "taskmanager.numberOfTaskSlots=1",
            &checkpoints,
            &endpoint,
            // Requests to the stopped store fail within seconds instead of retrying for minutes.
            "s3.retry.max-retries=1",
            "s3.retry.timeout=2s",
            // Enough attempts to outlast the outage: the point is that they are attempts.
            "restart-strategy.fixed-delay.attempts=100000",
            "restart-strategy.fixed-delay.delay=200ms",
        ],
    );
    cluster.start_jobmanager(&job_args(&input, &output, Some(2))).unwrap();
    for _ in 0..2 {
        cluster.start_taskmanager().unwrap();
    }
    let job = cluster.await_job().unwrap();
    cluster.await_checkpoints(&job, 2).unwrap();

    s3.run("stop");
    cluster.kill_taskmanager(0).unwrap();
    cluster.start_taskmanager().unwrap();
    // The restart finds the store down: recorded as a failure, and the job is not FAILED.
    cluster
        .await_until("a restart that cannot reach the checkpoints", |rest| {
            let (Ok(exceptions), Ok(job)) = (rest.exceptions(&job), rest.job(&job)) else {
                return Poll::Pending("REST".to_string());
            };
            assert_ne!(job.state, JobState::Failed, "the outage ended the job: {exceptions:?}");
            let causes = serde_json::to_string(&exceptions).unwrap();
            if causes.contains("cannot list the job's checkpoints") {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{} exceptions, {}", exceptions.exception_history.entries.len(), job.state))
            }
        })
        .unwrap();
    assert_ne!(cluster.rest().job(&job).unwrap().state, JobState::Failed);

    s3.run("start");
    assert_exact(&mut cluster, &job, &output, &expected);
}
