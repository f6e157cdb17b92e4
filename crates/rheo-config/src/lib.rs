//! Configuration with Flink's keys. Sources, in rising precedence: the YAML file
//! `$RHEO_CONF_DIR/rheo.yaml` (flat `a.b: v` keys or nested maps, as Flink's `config.yaml`),
//! `RHEO_*` environment variables for the known keys (`RHEO_PARALLELISM_DEFAULT` for
//! `parallelism.default`), and `-D key=value` flags.
//!
//! Every option is defined once in [`options`], with its key, type, default and description;
//! [`Configuration::get`] reads an option as its type. Loading rejects a value a known option
//! cannot take and warns about keys no option has, naming the closest known key.

use std::collections::BTreeMap;
use std::path::Path;

mod docs;
pub mod option;
pub mod options;

pub use docs::reference_markdown;
pub use option::{AnyOption, ConfigOption, OptionType, PortRange, Section, format_duration, parse_duration};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {message}")]
    File { path: String, message: String },
    #[error("-D {0}: expected key=value")]
    Flag(String),
    #[error("configuration key '{key}': '{value}' is not {expected}")]
    Invalid { key: String, value: String, expected: String },
    /// A value from a named source (a file, an environment variable, a flag) is invalid.
    #[error("{origin}: {error}")]
    From { origin: String, error: Box<ConfigError> },
}

/// A key that no option has, and the known key it is probably a misspelling of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    pub key: String,
    pub closest: Option<&'static str>,
}

impl std::fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration key '{}' is not one Rheo reads; it is ignored", self.key)?;
        match self.closest {
            Some(closest) => write!(f, " (did you mean '{closest}'?)"),
            None => write!(f, " (see docs/configuration.md)"),
        }
    }
}

/// A flat map of Flink configuration keys to their text values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Configuration {
    values: BTreeMap<String, String>,
}

/// Prefixes of keys that share the file but are read by others (the operator's autoscaler,
/// the Flink Kubernetes operator's own keys): not warned about.
const OTHER_READERS: &[&str] = &["job.autoscaler.", "kubernetes.operator."];

/// The environment variable prefix for configuration keys.
const ENV_PREFIX: &str = "RHEO_";

impl Configuration {
    pub fn new() -> Self {
        Self::default()
    }

    /// The configuration of a process: file, then environment, then `-D` flags. A value a
    /// known option cannot take is an error naming where it came from; unknown keys are
    /// logged as warnings.
    pub fn load(conf_dir: Option<&Path>, dynamic: &[String]) -> Result<Self, ConfigError> {
        let config = Self::load_from(conf_dir, std::env::vars(), dynamic)?;
        for unknown in config.unknown_keys() {
            tracing::warn!("{unknown}");
        }
        Ok(config)
    }

    fn load_from(
        conf_dir: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
        dynamic: &[String],
    ) -> Result<Self, ConfigError> {
        let mut config = Self::new();
        if let Some(dir) = conf_dir {
            let path = dir.join("rheo.yaml");
            if path.exists() {
                let file = Self::from_yaml_file(&path)?;
                file.validate().map_err(|error| ConfigError::From {
                    origin: format!("configuration file {}", path.display()),
                    error: Box::new(error),
                })?;
                config.values.extend(file.values);
            }
        }
        for (name, key, value) in env_values(env) {
            options::find(key).expect("env_values yields known keys").check(&value).map_err(|error| {
                ConfigError::From { origin: format!("environment variable {name}"), error: Box::new(error) }
            })?;
            config.set(key, value);
        }
        for flag in dynamic {
            let (key, value) = flag.split_once('=').ok_or_else(|| ConfigError::Flag(flag.clone()))?;
            let (key, value) = (key.trim(), value.trim());
            if let Some(option) = options::find(key) {
                option
                    .check(value)
                    .map_err(|error| ConfigError::From { origin: format!("-D {key}"), error: Box::new(error) })?;
            }
            config.set(key, value);
        }
        Ok(config)
    }

    /// Sets a key's text, unchecked: [`get`](Self::get) checks it when it is read.
    pub fn set(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.values.insert(key.into(), value.into());
        self
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.values.remove(key)
    }

    /// The text of a key as given, for keys outside the registry (passed through as they are).
    pub fn raw(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Whether the option was given (rather than defaulted).
    pub fn is_set<T: OptionType>(&self, option: &ConfigOption<T>) -> bool {
        self.values.contains_key(option.key)
    }

    /// The option's value: the given text parsed and checked, or its default.
    pub fn get<T: OptionType>(&self, option: &ConfigOption<T>) -> Result<T, ConfigError> {
        match self.values.get(option.key) {
            None => Ok(option.default_value()),
            Some(text) => option.parse(text),
        }
    }

    /// A text option's value: free text cannot be invalid.
    pub fn string(&self, option: &ConfigOption<String>) -> String {
        self.values.get(option.key).map_or_else(|| option.default_value(), |v| v.trim().to_string())
    }

    /// Every key as given, values as text.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every key as given, with secrets masked as Flink masks them: for showing and logging.
    pub fn masked_entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries().map(|(k, v)| (k, if is_secret(k) { MASK } else { v }))
    }

    /// Checks every known key's value.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in self.entries() {
            if let Some(option) = options::find(key) {
                option.check(value)?;
            }
        }
        Ok(())
    }

    /// Keys that no option has, with the known key each is probably a misspelling of.
    pub fn unknown_keys(&self) -> Vec<UnknownKey> {
        self.values
            .keys()
            .filter(|key| options::find(key).is_none() && !OTHER_READERS.iter().any(|p| key.starts_with(p)))
            .map(|key| UnknownKey { key: key.clone(), closest: options::closest(key) })
            .collect()
    }

    fn from_yaml_file(path: &Path) -> Result<Self, ConfigError> {
        let file_error = |message: String| ConfigError::File { path: path.display().to_string(), message };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        let mut config = Self::new();
        match doc {
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Mapping(map) => flatten_into(&mut config.values, "", &map).map_err(file_error)?,
            _ => return Err(file_error("expected a mapping of configuration keys".into())),
        }
        Ok(config)
    }
}

/// What Flink shows in place of a secret.
pub const MASK: &str = "******";

/// Whether a key names a secret, whose value is never shown or logged: options marked secret,
/// Flink's sensitive keys (password, secret, token, credentials, ...), and any key or access
/// key (`fs.azure.account.key.*`, `apikey`), as the words of the key tell.
pub fn is_secret(key: &str) -> bool {
    if options::find(key).is_some_and(|o| o.is_secret()) {
        return true;
    }
    let key = key.to_ascii_lowercase();
    const SUBSTRINGS: [&str; 8] =
        ["password", "secret", "token", "credential", "jaas.config", "auth-params", "basic-auth", "http-headers"];
    if SUBSTRINGS.iter().any(|s| key.contains(s)) {
        return true;
    }
    key.split(|c: char| !c.is_ascii_alphanumeric()).any(|word| word.ends_with("key"))
}

/// The environment variable of a key: `parallelism.default` → `RHEO_PARALLELISM_DEFAULT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_uppercase().replace(['.', '-'], "_"))
}

/// The `(variable, key, value)` of the environment variables that set known options. Other
/// `RHEO_*` variables (`RHEO_LOG`, `RHEO_CONF_DIR`, ...) are not configuration, and neither are
/// the service links the kubelet injects: a Service `rheo-rest` gives every pod
/// `RHEO_REST_PORT=tcp://10.96.0.12:8081`, which is not a value of `rest.port`.
fn env_values(vars: impl Iterator<Item = (String, String)>) -> Vec<(String, &'static str, String)> {
    let mut found = Vec::new();
    for (name, value) in vars {
        if !name.starts_with(ENV_PREFIX) {
            continue;
        }
        let Some(option) = options::ALL.iter().find(|o| env_name(o.key()) == name) else { continue };
        if is_service_link(&name, &value) {
            tracing::debug!(variable = %name, "ignoring a Kubernetes service link variable");
            continue;
        }
        found.push((name, option.key(), value));
    }
    found
}

/// A Docker-links style variable `<SERVICE>_PORT=tcp://<ip>:<port>` set by the kubelet.
fn is_service_link(name: &str, value: &str) -> bool {
    name.ends_with("_PORT")
        && ["tcp://", "udp://", "sctp://"].iter().any(|scheme| value.trim().to_ascii_lowercase().starts_with(scheme))
}

fn flatten_into(out: &mut BTreeMap<String, String>, prefix: &str, map: &serde_yaml::Mapping) -> Result<(), String> {
    for (k, v) in map {
        let key = match k {
            serde_yaml::Value::String(s) => s.clone(),
            other => return Err(format!("key {other:?} is not a string")),
        };
        let full = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        match v {
            serde_yaml::Value::Mapping(inner) => flatten_into(out, &full, inner)?,
            serde_yaml::Value::String(s) => {
                out.insert(full, s.clone());
            }
            serde_yaml::Value::Number(n) => {
                out.insert(full, n.to_string());
            }
            serde_yaml::Value::Bool(b) => {
                out.insert(full, b.to_string());
            }
            serde_yaml::Value::Null => {}
            serde_yaml::Value::Sequence(items) => {
                let parts: Result<Vec<String>, String> = items
                    .iter()
                    .map(|i| match i {
                        serde_yaml::Value::String(s) => Ok(s.clone()),
                        serde_yaml::Value::Number(n) => Ok(n.to_string()),
                        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
                        _ => Err(format!("'{full}': list items must be plain values")),
                    })
                    .collect();
                out.insert(full, parts?.join(";"));
            }
            serde_yaml::Value::Tagged(_) => return Err(format!("'{full}': tagged values are not supported")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn env_names_map_to_known_keys_only() {
        let found = env_values(vars(&[
            ("RHEO_PARALLELISM_DEFAULT", "3"),
            ("RHEO_RESTART_STRATEGY_TYPE", "none"),
            ("RHEO_STATE_CHECKPOINTS_NUM_RETAINED", "2"),
            ("RHEO_TASKMANAGER_NUMBEROFTASKSLOTS", "4"),
            ("RHEO_SOME_NEW_KEY", "x"),
            ("RHEO_LOG", "debug"),
            ("RHEO_CONF_DIR", "/etc/rheo"),
            ("PARALLELISM_DEFAULT", "9"),
        ]));
        let keys: Vec<(&str, &str)> = found.iter().map(|(_, k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            keys,
            [
                ("parallelism.default", "3"),
                ("restart-strategy.type", "none"),
                ("state.checkpoints.num-retained", "2"),
                ("taskmanager.numberOfTaskSlots", "4")
            ]
        );
    }

    #[test]
    fn kubernetes_service_links_are_not_configuration() {
        // A FlinkJob named `rheo` has a Service `rheo-rest`; the kubelet injects these.
        let env = vars(&[
            ("RHEO_REST_PORT", "tcp://10.96.0.12:8081"),
            ("RHEO_REST_SERVICE_HOST", "10.96.0.12"),
            ("RHEO_REST_SERVICE_PORT", "8081"),
            ("RHEO_REST_PORT_8081_TCP", "tcp://10.96.0.12:8081"),
            ("RHEO_REST_PORT_8081_TCP_PORT", "8081"),
        ]);
        let config = Configuration::load_from(None, env, &[]).unwrap();
        assert_eq!(config, Configuration::new());
        assert_eq!(config.get(&options::REST_PORT).unwrap(), PortRange::single(8081));
        // A deliberate `RHEO_REST_PORT` still works.
        let config = Configuration::load_from(None, vars(&[("RHEO_REST_PORT", "9091")]), &[]).unwrap();
        assert_eq!(config.get(&options::REST_PORT).unwrap(), PortRange::single(9091));
    }

    #[test]
    fn precedence_file_then_env_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("rheo.yaml"),
            "parallelism.default: 2\nrest.port: 9000\nstate:\n  checkpoints:\n    dir: file:///tmp/x\n",
        )
        .unwrap();
        let env = vars(&[("RHEO_PARALLELISM_DEFAULT", "3"), ("RHEO_REST_PORT", "9001")]);
        let config = Configuration::load_from(Some(dir.path()), env, &["rest.port = 9002".into()]).unwrap();
        assert_eq!(config.get(&options::CHECKPOINTS_DIR).unwrap(), "file:///tmp/x");
        assert_eq!(config.get(&options::PARALLELISM_DEFAULT).unwrap(), 3);
        assert_eq!(config.get(&options::REST_PORT).unwrap(), PortRange::single(9002));
    }

    #[test]
    fn invalid_values_name_their_source_key_value_and_expectation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rheo.yaml"), "taskmanager.numberOfTaskSlots: 0\n").unwrap();
        let err = Configuration::load_from(Some(dir.path()), vars(&[]), &[]).unwrap_err().to_string();
        assert!(err.contains("rheo.yaml") && err.contains("taskmanager.numberOfTaskSlots"), "{err}");
        assert!(err.contains("'0'") && err.contains("at least 1"), "{err}");

        let env = vars(&[("RHEO_PARALLELISM_DEFAULT", "many")]);
        let err = Configuration::load_from(None, env, &[]).unwrap_err().to_string();
        assert!(err.contains("RHEO_PARALLELISM_DEFAULT") && err.contains("'many'"), "{err}");

        let flags = ["execution.checkpointing.interval=18446744073709552s".to_string()];
        let err = Configuration::load_from(None, vars(&[]), &flags).unwrap_err().to_string();
        assert!(err.contains("-D execution.checkpointing.interval") && err.contains("18446744073709552s"), "{err}");

        let flags = ["restart-strategy.type=sometimes".to_string()];
        let err = Configuration::load_from(None, vars(&[]), &flags).unwrap_err().to_string();
        assert!(err.contains("one of none"), "{err}");

        let err = Configuration::load_from(None, vars(&[]), &["nonsense".into()]).unwrap_err().to_string();
        assert!(err.contains("expected key=value"), "{err}");
    }

    #[test]
    fn unknown_keys_are_kept_and_reported_with_the_closest_known_key() {
        let flags = [
            "paralelism.default=4".to_string(),
            "metrics.reporter.prom.port=9249".to_string(),
            "job.autoscaler.target.utilization=0.7".to_string(),
        ];
        let config = Configuration::load_from(None, vars(&[]), &flags).unwrap();
        assert_eq!(config.raw("metrics.reporter.prom.port"), Some("9249"));
        let unknown = config.unknown_keys();
        assert_eq!(unknown.len(), 2);
        let typo = unknown.iter().find(|u| u.key == "paralelism.default").unwrap();
        assert_eq!(typo.closest, Some("parallelism.default"));
        assert!(typo.to_string().contains("did you mean 'parallelism.default'"), "{typo}");
    }

    #[test]
    fn secrets_are_masked() {
        let mut config = Configuration::new();
        config.set("s3.access-key", "AKIA0000").set("s3.secret-key", "hunter2").set("rest.port", "8081");
        config.set("fs.azure.account.key.acc.blob.core.windows.net", "k").set("ssl.keystore-password", "p");
        let masked: BTreeMap<&str, &str> = config.masked_entries().collect();
        assert_eq!(masked["s3.access-key"], MASK);
        assert_eq!(masked["s3.secret-key"], MASK);
        assert_eq!(masked["fs.azure.account.key.acc.blob.core.windows.net"], MASK);
        assert_eq!(masked["ssl.keystore-password"], MASK);
        assert_eq!(masked["rest.port"], "8081");
        // An invalid secret does not show up in the error either.
        let err = options::S3_PATH_STYLE_ACCESS.parse("maybe").unwrap_err().to_string();
        assert!(err.contains("maybe"), "not a secret: {err}");
    }

    #[test]
    fn bad_yaml_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rheo.yaml");
        std::fs::write(&path, "parallelism.default: [1\n").unwrap();
        let err = Configuration::from_yaml_file(&path).unwrap_err().to_string();
        assert!(err.contains("rheo.yaml"), "{err}");
    }
}
