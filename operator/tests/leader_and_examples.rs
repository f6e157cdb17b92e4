//! Leader election against the fake API server, and the examples as the operator reads them.

mod support;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use rheo_operator::crd::FlinkJob;
use rheo_operator::leader::LeaderElector;
use serde::Deserialize;
use support::*;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/streams/leases/rheo-operator-leader";

#[tokio::test]
async fn first_replica_creates_the_lease_and_a_second_one_waits() {
    let env = Env::new("spec: {image: x, job: {entry: y}}");
    let api: Api<Lease> = Api::namespaced(env.ctx.client.clone(), NS);
    let a = LeaderElector::new(api.clone(), "rheo-operator-leader", "pod-a");
    let b = LeaderElector::new(api, "rheo-operator-leader", "pod-b");

    assert!(a.try_acquire_or_renew().await.unwrap());
    let calls = env.take_calls();
    assert_eq!(
        lines(&calls),
        [format!("GET {LEASE}"), "POST /apis/coordination.k8s.io/v1/namespaces/streams/leases".into()]
    );
    assert_eq!(calls[1].body["spec"]["holderIdentity"], "pod-a");
    assert_eq!(calls[1].body["spec"]["leaseDurationSeconds"], 15);

    assert!(!b.try_acquire_or_renew().await.unwrap(), "pod-b must not act while pod-a holds the lease");
    assert_eq!(lines(&env.take_calls()), [format!("GET {LEASE}")], "a waiting candidate writes nothing");
}

#[test]
fn every_example_flinkjob_deserializes_and_validates() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Manifests only: examples/ also holds job crates (examples/my-job).
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc).unwrap();
            if value.get("kind").and_then(|k| k.as_str()) != Some("FlinkJob") {
                continue;
            }
            let fj: FlinkJob = serde_yaml::from_value(value).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            rheo_operator::validate::validate(&fj).unwrap_or_else(|e| panic!("{path:?}: {e:?}"));
            seen += 1;
        }
    }
    assert!(seen >= 3, "expected the three example FlinkJobs, saw {seen}");
}

#[tokio::test]
async fn a_leader_that_shuts_down_releases_the_lease_and_the_next_replica_takes_over_at_once() {
    let env = Env::new("spec: {image: x, job: {entry: y}}");
    let api: Api<Lease> = Api::namespaced(env.ctx.client.clone(), NS);
    let a = LeaderElector::new(api.clone(), "rheo-operator-leader", "pod-a");
    let b = LeaderElector::new(api, "rheo-operator-leader", "pod-b");
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    env.take_calls();

    a.release().await.unwrap();
    let calls = env.take_calls();
    assert_eq!(lines(&calls), [format!("GET {LEASE}"), format!("PUT {LEASE}")]);
    assert!(calls[1].body["spec"]["holderIdentity"].is_null(), "released: {}", calls[1].body);

    // Without the release, b would wait LEASE_DURATION (15 s) on its own clock.
    assert!(b.try_acquire_or_renew().await.unwrap(), "pod-b takes the released lease at once");
    let calls = env.take_calls();
    assert_eq!(calls.last().unwrap().body["spec"]["holderIdentity"], "pod-b");
    assert_eq!(calls.last().unwrap().body["spec"]["leaseTransitions"], 1);
}
