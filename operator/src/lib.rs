//! Rheo's Kubernetes operator: turns `FlinkJob` resources into a JobManager and TaskManagers.
//!
//! Read it top-down:
//! - [`crd`]: the `FlinkJob` types, from which the CRD YAML is generated;
//! - [`validate`]: checks of a spec beyond what the schema says;
//! - [`build`]: the pure step, spec + deployment record → child objects;
//! - [`jobmanager`]: the JobManager's REST API as the reconciler sees it;
//! - [`reconcile`]: the state machine (decide, record in status, act, observe);
//! - [`controller`]: wiring into kube's runtime `Controller`;
//! - [`leader`], [`metrics`], [`telemetry`]: running it as a service.

pub mod build;
pub mod controller;
pub mod crd;
pub mod jobmanager;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod telemetry;
pub mod validate;
