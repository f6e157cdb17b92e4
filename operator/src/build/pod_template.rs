//! User pod templates: decoding, layering (top-level, then per component) and merging under the
//! pod the operator builds. The container named [`MAIN_CONTAINER`] is the worker itself.

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use serde_json::Value;

/// Name of the worker container in every JobManager and TaskManager pod.
pub const MAIN_CONTAINER: &str = "rheo";

/// Volumes that wire a pod to the operator (its configuration): the user cannot replace them.
const WIRING_VOLUMES: [&str; 1] = ["config"];

/// Decodes a user pod template, reporting what is wrong with it.
pub fn decode(template: Option<&Value>) -> Result<Option<PodTemplateSpec>, String> {
    template
        .map(|v| serde_json::from_value::<PodTemplateSpec>(v.clone()).map_err(|e| format!("not a pod template: {e}")))
        .transpose()
}

/// Layers a component's template over the top-level one: objects merge key by key, lists of
/// named items (containers, volumes, env) merge by `name`, other values are replaced.
pub fn layer(base: Option<&Value>, over: Option<&Value>) -> Option<Value> {
    match (base, over) {
        (None, None) => None,
        (Some(b), None) => Some(b.clone()),
        (None, Some(o)) => Some(o.clone()),
        (Some(b), Some(o)) => Some(merge_json(b, o)),
    }
}

fn merge_json(base: &Value, over: &Value) -> Value {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            let mut out = b.clone();
            for (k, v) in o {
                let merged = match out.get(k) {
                    Some(existing) => merge_json(existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(b), Value::Array(o)) if all_named(b) && all_named(o) => {
            let mut out = b.clone();
            for item in o {
                match out.iter_mut().find(|e| e.get("name") == item.get("name")) {
                    Some(existing) => *existing = merge_json(existing, item),
                    None => out.push(item.clone()),
                }
            }
            Value::Array(out)
        }
        (_, o) => o.clone(),
    }
}

fn all_named(items: &[Value]) -> bool {
    items.iter().all(|i| i.get("name").is_some_and(Value::is_string))
}

/// Merges the operator's pod (`ours`, one container named [`MAIN_CONTAINER`]) into the user's
/// template. The operator's wiring wins (image, args, ports, config volume); the user adds
/// sidecars, volumes, env, `envFrom`, scheduling and may set resources and security contexts.
pub fn merge(user: Option<PodTemplateSpec>, ours: PodTemplateSpec) -> PodTemplateSpec {
    let Some(mut out) = user else { return ours };
    let ours_meta = ours.metadata.unwrap_or_default();
    let meta = out.metadata.get_or_insert_with(Default::default);
    if let Some(labels) = ours_meta.labels {
        meta.labels.get_or_insert_with(Default::default).extend(labels);
    }
    if let Some(annotations) = ours_meta.annotations {
        meta.annotations.get_or_insert_with(Default::default).extend(annotations);
    }

    let ours_spec = ours.spec.unwrap_or_default();
    let spec = out.spec.get_or_insert_with(PodSpec::default);
    let mut user_containers = std::mem::take(&mut spec.containers);
    let mut containers = Vec::new();
    for main in ours_spec.containers {
        let merged = match user_containers.iter().position(|c| c.name == main.name) {
            Some(i) => merge_container(user_containers.remove(i), main),
            None => main,
        };
        containers.push(merged);
    }
    containers.extend(user_containers);
    spec.containers = containers;

    // A user volume replaces ours of the same name (e.g. `data` on a PersistentVolumeClaim),
    // except the ones that wire the pod to the operator.
    let user_volumes = spec.volumes.take().unwrap_or_default();
    let mut volumes: Vec<_> = ours_spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|o| WIRING_VOLUMES.contains(&o.name.as_str()) || !user_volumes.iter().any(|v| v.name == o.name))
        .collect();
    volumes.extend(user_volumes.into_iter().filter(|v| !WIRING_VOLUMES.contains(&v.name.as_str())));
    spec.volumes = Some(volumes);
    if ours_spec.service_account_name.is_some() {
        spec.service_account_name = ours_spec.service_account_name;
    }
    if spec.security_context.is_none() {
        spec.security_context = ours_spec.security_context;
    }
    out
}

fn merge_container(user: Container, ours: Container) -> Container {
    let mut ports = ours.ports.unwrap_or_default();
    for p in user.ports.unwrap_or_default() {
        if !ports.iter().any(|o| o.container_port == p.container_port || (o.name.is_some() && o.name == p.name)) {
            ports.push(p);
        }
    }
    // Environment variables by name, the user's winning (server-side apply rejects duplicates).
    let user_env = user.env.unwrap_or_default();
    let mut env: Vec<_> =
        ours.env.unwrap_or_default().into_iter().filter(|o| !user_env.iter().any(|u| u.name == o.name)).collect();
    env.extend(user_env);
    // Mounts by path, the user's winning, except the configuration the operator wires in.
    let user_mounts = user.volume_mounts.unwrap_or_default();
    let wired = |m: &k8s_openapi::api::core::v1::VolumeMount| WIRING_VOLUMES.contains(&m.name.as_str());
    let mut mounts: Vec<_> = ours
        .volume_mounts
        .unwrap_or_default()
        .into_iter()
        .filter(|o| wired(o) || !user_mounts.iter().any(|u| u.mount_path == o.mount_path || u.name == o.name))
        .collect();
    for m in user_mounts {
        if !mounts.iter().any(|o| o.mount_path == m.mount_path) {
            mounts.push(m);
        }
    }
    Container {
        name: ours.name,
        image: ours.image,
        image_pull_policy: ours.image_pull_policy.or(user.image_pull_policy),
        args: ours.args,
        command: user.command.or(ours.command),
        ports: Some(ports),
        env: Some(env),
        env_from: user.env_from.or(ours.env_from),
        volume_mounts: Some(mounts),
        resources: ours.resources.or(user.resources),
        readiness_probe: user.readiness_probe.or(ours.readiness_probe),
        liveness_probe: user.liveness_probe.or(ours.liveness_probe),
        startup_probe: user.startup_probe.or(ours.startup_probe),
        security_context: user.security_context.or(ours.security_context),
        ..user
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layering_merges_named_lists_by_name() {
        let base = json!({"spec": {"containers": [{"name": "rheo", "env": [{"name": "A", "value": "1"}]}], "nodeSelector": {"a": "b"}}});
        let over =
            json!({"spec": {"containers": [{"name": "rheo", "env": [{"name": "B", "value": "2"}]}, {"name": "side"}]}});
        let merged = layer(Some(&base), Some(&over)).unwrap();
        assert_eq!(
            merged,
            json!({"spec": {"containers": [
                {"name": "rheo", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
                {"name": "side"}
            ], "nodeSelector": {"a": "b"}}})
        );
    }

    #[test]
    fn decode_names_what_is_wrong() {
        let err = decode(Some(&json!({"spec": {"containers": "nope"}}))).unwrap_err();
        assert!(err.contains("invalid type"), "{err}");
    }

    #[test]
    fn operator_wiring_wins_but_user_additions_stay() {
        let user: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"team": "x", "app.kubernetes.io/component": "mine"}},
            "spec": {"containers": [
                {"name": "rheo", "image": "evil", "args": ["x"], "envFrom": [{"secretRef": {"name": "s3"}}]},
                {"name": "sidecar", "image": "busybox"}
            ]}
        }))
        .unwrap();
        let ours: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app.kubernetes.io/component": "jobmanager"}},
            "spec": {"containers": [{"name": "rheo", "image": "rheo:1", "args": ["jobmanager"]}]}
        }))
        .unwrap();
        let out = serde_json::to_value(merge(Some(user), ours)).unwrap();
        assert_eq!(out["metadata"]["labels"]["team"], "x");
        assert_eq!(out["metadata"]["labels"]["app.kubernetes.io/component"], "jobmanager");
        assert_eq!(out["spec"]["containers"][0]["image"], "rheo:1");
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["jobmanager"]));
        assert_eq!(out["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"], "s3");
        assert_eq!(out["spec"]["containers"][1]["name"], "sidecar");
    }

    #[test]
    fn user_volumes_mounts_and_env_win_by_name_but_not_the_wiring() {
        let user: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {
                "containers": [{"name": "rheo",
                    "env": [{"name": "RHEO_LOG", "value": "debug"}, {"name": "A", "value": "user"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/opt/rheo/data"}, {"name": "config", "mountPath": "/x"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}},
                            {"name": "config", "emptyDir": {}}]
            }
        }))
        .unwrap();
        let ours: PodTemplateSpec = serde_json::from_value(json!({
            "spec": {
                "containers": [{"name": "rheo", "env": [{"name": "A", "value": "ours"}, {"name": "B", "value": "ours"}],
                    "volumeMounts": [{"name": "config", "mountPath": "/opt/rheo/conf"}, {"name": "data", "mountPath": "/opt/rheo/data"}]}],
                "volumes": [{"name": "config", "configMap": {"name": "wc-config"}}, {"name": "data", "emptyDir": {}}]
            }
        }))
        .unwrap();
        let out = serde_json::to_value(merge(Some(user), ours)).unwrap();
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name": "config", "configMap": {"name": "wc-config"}}, {"name": "data", "persistentVolumeClaim": {"claimName": "pvc"}}])
        );
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name": "B", "value": "ours"}, {"name": "RHEO_LOG", "value": "debug"}, {"name": "A", "value": "user"}])
        );
        assert_eq!(
            out["spec"]["containers"][0]["volumeMounts"],
            json!([{"name": "config", "mountPath": "/opt/rheo/conf"}, {"name": "data", "mountPath": "/opt/rheo/data"}, {"name": "config", "mountPath": "/x"}])
        );
    }
}
