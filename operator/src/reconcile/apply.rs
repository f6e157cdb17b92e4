//! The apply step: server-side apply of the children the build step made, in dependency order
//! (configuration and Services before the pods that use them).

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::core::Status;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Pass;
use crate::build::{self, MANAGER};

/// Why applying the children failed.
#[derive(Debug)]
pub(super) enum ApplyError {
    /// The API server answered with an error (an admission denial, an invalid name, a quota):
    /// for the status and an Event.
    Refused { object: String, source: Box<Status> },
    /// No answer: the pass fails and is retried.
    Other(kube::Error),
}

impl Pass<'_> {
    /// Server-side applies the children; returns the TaskManager Deployment as stored.
    pub(super) async fn apply_children(&self, c: build::Children) -> Result<Deployment, ApplyError> {
        self.apply_one(&c.config_map).await?;
        self.apply_one(&c.rpc_service).await?;
        self.apply_one(&c.rest_service).await?;
        self.apply_one(&c.job_manager).await?;
        self.apply_one(&c.task_manager).await
    }

    async fn apply_one<K>(&self, object: &K) -> Result<K, ApplyError>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + Serialize
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::namespaced(self.ctx.client.clone(), self.fj.namespace());
        let pp = PatchParams::apply(MANAGER).force();
        api.patch(&object.name_any(), &pp, &Patch::Apply(object)).await.map_err(|e| match e {
            kube::Error::Api(source) => {
                ApplyError::Refused { object: format!("{} {}", K::kind(&()), object.name_any()), source }
            }
            other => ApplyError::Other(other),
        })
    }
}
