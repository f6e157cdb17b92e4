//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas never both act.
//!
//! A replica acts only while it holds the Lease. It renews the Lease every [`RENEW_PERIOD`]; a
//! Lease whose record has not changed for [`LEASE_DURATION`] may be taken over. A leader that
//! fails to renew before its Lease would expire stops leading (the process exits and restarts as
//! a candidate), so at most one replica acts at a time. Writes use the Lease's
//! `resourceVersion`: of two candidates racing for an expired Lease, one gets a conflict and
//! stays a candidate.
//!
//! As in client-go's leader election, expiry is measured on this replica's own monotonic clock
//! from when it last saw the Lease's record change, never by comparing the remote `renewTime`
//! with the local wall clock: a skewed clock on either side cannot make two leaders. Every API
//! call has a deadline ([`CALL_DEADLINE`]), so a hung connection cannot hold a renewal past the
//! Lease's expiry. On shutdown the leader releases the Lease (an empty holder), so the next
//! replica takes over at once instead of after [`LEASE_DURATION`].

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;
use tracing::{info, warn};

pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);
/// The longest one call to the API server may take: a renewal that hangs longer counts as failed.
pub const CALL_DEADLINE: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("the Lease API call failed: {0}")]
    Api(#[from] kube::Error),
    #[error("the Lease API call did not answer within {CALL_DEADLINE:?}")]
    Deadline,
}

/// What a candidate should do with the Lease as it finds it.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it, holding it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// Pure: what `identity` should do with `lease`, whose record this replica has seen unchanged
/// for `unchanged_for` (on its own clock).
pub fn decide(lease: Option<&Lease>, identity: &str, unchanged_for: Duration) -> Decision {
    let Some(lease) = lease else { return Decision::Create };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let duration = spec.lease_duration_seconds.map_or(LEASE_DURATION, |s| Duration::from_secs(s.max(0) as u64));
            if unchanged_for >= duration { Decision::TakeOver } else { Decision::Wait }
        }
    }
}

/// The Lease's record as last seen, and since when (local monotonic clock) it has not changed.
#[derive(Debug, Default)]
pub struct Observed {
    record: Option<String>,
    since: Option<Instant>,
}

impl Observed {
    /// Notes the Lease as read at `now`; how long its record has been unchanged.
    pub fn see(&mut self, lease: Option<&Lease>, now: Instant) -> Duration {
        let record = lease.map(|l| {
            let spec = l.spec.clone().unwrap_or_default();
            format!(
                "{:?}/{:?}/{:?}/{:?}",
                spec.holder_identity,
                spec.renew_time.map(|t| t.0),
                spec.lease_transitions,
                l.metadata.resource_version
            )
        });
        if self.since.is_none() || record != self.record {
            self.record = record;
            self.since = Some(now);
        }
        now.saturating_duration_since(self.since.expect("set above"))
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
    observed: Mutex<Observed>,
}

/// Runs one API call under [`CALL_DEADLINE`].
async fn within_deadline<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, LeaderError> {
    tokio::time::timeout(CALL_DEADLINE, call).await.map_err(|_| LeaderError::Deadline)?.map_err(LeaderError::Api)
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self { api, name: name.into(), identity: identity.into(), observed: Mutex::default() }
    }

    /// One attempt: `Ok(true)` if we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, LeaderError> {
        let current = within_deadline(self.api.get_opt(&self.name)).await?;
        let unchanged_for = self.observed.lock().expect("observed lease").see(current.as_ref(), Instant::now());
        let decision = decide(current.as_ref(), &self.identity, unchanged_for);
        let now = Timestamp::now();
        let mut spec = current.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
        let result = match decision {
            Decision::Wait => return Ok(false),
            Decision::Create => {
                spec = self.held_spec(now, 0);
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(spec),
                };
                within_deadline(self.api.create(&PostParams::default(), &lease)).await.map(|_| ())
            }
            Decision::Renew => {
                spec.renew_time = Some(MicroTime(now));
                self.replace(current.expect("renew needs a lease"), spec).await
            }
            Decision::TakeOver => {
                let transitions = spec.lease_transitions.unwrap_or(0) + 1;
                self.replace(current.expect("take-over needs a lease"), self.held_spec(now, transitions)).await
            }
        };
        match result {
            Ok(()) => {
                if decision != Decision::Renew {
                    info!(lease = self.name, identity = self.identity, "acquired leadership");
                }
                Ok(true)
            }
            // Another candidate wrote first.
            Err(LeaderError::Api(kube::Error::Api(e))) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn held_spec(&self, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    async fn replace(&self, mut lease: Lease, spec: LeaseSpec) -> Result<(), LeaderError> {
        lease.spec = Some(spec);
        lease.metadata.managed_fields = None;
        within_deadline(self.api.replace(&self.name, &PostParams::default(), &lease)).await.map(|_| ())
    }

    /// Gives the Lease up if this replica holds it (an empty holder, as client-go's
    /// `ReleaseOnCancel`), so another replica takes over without waiting for it to expire.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let Some(current) = within_deadline(self.api.get_opt(&self.name)).await? else { return Ok(()) };
        let spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let released = LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..spec
        };
        self.replace(current, released).await?;
        info!(lease = self.name, identity = self.identity, "released leadership");
        Ok(())
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(RENEW_PERIOD).await;
        }
    }

    /// Renews the Lease until renewal fails for longer than the Lease lasts; returns then.
    pub async fn hold(&self) {
        let mut last_renewed = Instant::now();
        loop {
            tokio::time::sleep(RENEW_PERIOD).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = Instant::now(),
                Ok(false) => {
                    warn!(lease = self.name, "leadership lost to another replica");
                    return;
                }
                Err(e) => warn!(error = %e, "lease renewal failed"),
            }
            // Stop before the Lease can expire, so a new leader never overlaps with us: the
            // next renewal, with its deadline, must still land inside the Lease.
            if last_renewed.elapsed() + RENEW_PERIOD + CALL_DEADLINE >= LEASE_DURATION {
                warn!(lease = self.name, "could not renew the lease in time");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Timestamp, version: &str) -> Lease {
        Lease {
            metadata: ObjectMeta { resource_version: Some(version.into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                lease_duration_seconds: Some(15),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn decisions() {
        let t: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let secs = Duration::from_secs;
        assert_eq!(decide(None, "a", secs(0)), Decision::Create);
        assert_eq!(decide(Some(&lease(Some("a"), t, "1")), "a", secs(3)), Decision::Renew);
        assert_eq!(decide(Some(&lease(Some("b"), t, "1")), "a", secs(3)), Decision::Wait);
        assert_eq!(decide(Some(&lease(Some("b"), t, "1")), "a", secs(15)), Decision::TakeOver);
        assert_eq!(decide(Some(&lease(None, t, "1")), "a", secs(0)), Decision::TakeOver);
        assert_eq!(decide(Some(&lease(Some(""), t, "1")), "a", secs(0)), Decision::TakeOver);
    }

    /// A renewTime an hour old by this replica's wall clock (the other replica's clock is
    /// behind) is no reason to take over: only the local time since the record last changed is.
    #[test]
    fn expiry_is_measured_on_the_local_clock_since_the_record_last_changed() {
        let start = Instant::now();
        let hour_ago = Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let mut observed = Observed::default();
        let held = lease(Some("b"), hour_ago, "7");
        let first = observed.see(Some(&held), start);
        assert_eq!(decide(Some(&held), "a", first), Decision::Wait, "first sight of a held lease");
        let later = observed.see(Some(&held), start + Duration::from_secs(10));
        assert_eq!(decide(Some(&held), "a", later), Decision::Wait);
        // b renews (a new resourceVersion and renewTime, still an hour behind): the clock restarts.
        let renewed = lease(Some("b"), hour_ago + jiff::SignedDuration::from_secs(5), "8");
        let after_renewal = observed.see(Some(&renewed), start + Duration::from_secs(14));
        assert_eq!(after_renewal, Duration::ZERO);
        let stale = observed.see(Some(&renewed), start + Duration::from_secs(28));
        assert_eq!(decide(Some(&renewed), "a", stale), Decision::Wait);
        let expired = observed.see(Some(&renewed), start + Duration::from_secs(29));
        assert_eq!(decide(Some(&renewed), "a", expired), Decision::TakeOver);
    }
}
