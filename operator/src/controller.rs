//! Wiring: one kube runtime `Controller` per watched namespace (or one for all namespaces),
//! watching `FlinkJob`s and the objects they own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client};
use tracing::{info, warn};

use crate::crd::FlinkJob;
use crate::metrics::Metrics;
use crate::reconcile::{self, Context, Error};

/// Children carry this label; the owned-object watches only see them.
const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=rheo-operator";

/// Runs the controllers until a termination signal.
pub async fn run(client: Client, namespaces: Vec<String>, ctx: Arc<Context>, metrics: Arc<Metrics>) {
    let scopes: Vec<Option<String>> =
        if namespaces.is_empty() { vec![None] } else { namespaces.into_iter().map(Some).collect() };
    let controllers = scopes.into_iter().map(|ns| {
        let (client, ctx, metrics) = (client.clone(), ctx.clone(), metrics.clone());
        async move {
            info!(namespace = ns.as_deref().unwrap_or("<all>"), "watching FlinkJobs");
            let jobs: Api<FlinkJob> = api(&client, ns.as_deref());
            let children = watcher::Config::default().labels(CHILD_SELECTOR);
            Controller::new(jobs, watcher::Config::default())
                .owns(api::<Deployment>(&client, ns.as_deref()), children.clone())
                .owns(api::<Service>(&client, ns.as_deref()), children.clone())
                .owns(api::<ConfigMap>(&client, ns.as_deref()), children)
                .shutdown_on_signal()
                .run(
                    move |fj, ctx| {
                        let metrics = metrics.clone();
                        async move {
                            let start = Instant::now();
                            let result = reconcile::reconcile(fj, ctx).await;
                            metrics.observe(start.elapsed(), result.as_ref().err().map(Error::kind));
                            result
                        }
                    },
                    error_policy,
                    ctx,
                )
                .for_each(|result| async move {
                    if let Err(e) = result {
                        warn!(error = %e, "reconcile failed");
                    }
                })
                .await;
        }
    });
    futures::future::join_all(controllers).await;
}

fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Failed passes retry: soon while a deletion waits for its savepoint, later otherwise.
fn error_policy(_fj: Arc<FlinkJob>, error: &Error, _ctx: Arc<Context>) -> Action {
    match error {
        Error::DeletionPending(_) => Action::requeue(reconcile::REQUEUE_BUSY),
        _ => Action::requeue(Duration::from_secs(15)),
    }
}
