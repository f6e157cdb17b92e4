//! Leader election on a `coordination.k8s.io` Lease, so two operator replicas never both act.
//!
//! A replica acts only while it holds the Lease. It renews the Lease every [`RENEW_PERIOD`]; a
//! Lease not renewed for [`LEASE_DURATION`] may be taken over. A leader that fails to renew
//! before its Lease would expire stops leading (the process exits and restarts as a candidate),
//! so at most one replica acts at a time. Writes use the Lease's `resourceVersion`: of two
//! candidates racing for an expired Lease, one gets a conflict and stays a candidate.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tracing::{info, warn};

pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RENEW_PERIOD: Duration = Duration::from_secs(5);

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

/// Pure: what `identity` should do with `lease` at `now`.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else { return Decision::Create };
    let spec = lease.spec.clone().unwrap_or_default();
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_DURATION.as_secs() as i32));
            let renewed = spec.renew_time.map(|t| t.0).or(spec.acquire_time.map(|t| t.0));
            match renewed {
                Some(t) if t + jiff::SignedDuration::from_secs(duration) > now => Decision::Wait,
                _ => Decision::TakeOver,
            }
        }
    }
}

pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

impl LeaderElector {
    pub fn new(api: Api<Lease>, name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self { api, name: name.into(), identity: identity.into() }
    }

    /// One attempt: `Ok(true)` if we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(current.as_ref(), &self.identity, now);
        let mut spec = current.as_ref().and_then(|l| l.spec.clone()).unwrap_or_default();
        let result = match decision {
            Decision::Wait => return Ok(false),
            Decision::Create => {
                spec = self.held_spec(now, 0);
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..Default::default() },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await.map(|_| ())
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
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
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

    async fn replace(&self, mut lease: Lease, spec: LeaseSpec) -> Result<(), kube::Error> {
        lease.spec = Some(spec);
        lease.metadata.managed_fields = None;
        self.api.replace(&self.name, &PostParams::default(), &lease).await.map(|_| ())
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
        let mut last_renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(RENEW_PERIOD).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    warn!(lease = self.name, "leadership lost to another replica");
                    return;
                }
                Err(e) => warn!(error = %e, "lease renewal failed"),
            }
            // Stop before the Lease can expire, so a new leader never overlaps with us.
            if last_renewed.elapsed() + RENEW_PERIOD >= LEASE_DURATION {
                warn!(lease = self.name, "could not renew the lease in time");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: Timestamp) -> Lease {
        Lease {
            metadata: Default::default(),
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
        let now: Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        let ago = |s: i64| now - jiff::SignedDuration::from_secs(s);
        assert_eq!(decide(None, "a", now), Decision::Create);
        assert_eq!(decide(Some(&lease(Some("a"), ago(3))), "a", now), Decision::Renew);
        assert_eq!(decide(Some(&lease(Some("b"), ago(3))), "a", now), Decision::Wait);
        assert_eq!(decide(Some(&lease(Some("b"), ago(16))), "a", now), Decision::TakeOver);
        assert_eq!(decide(Some(&lease(None, ago(1))), "a", now), Decision::TakeOver);
    }
}
