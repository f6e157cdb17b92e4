//! Client settings as Flink's Kafka connector takes them: `bootstrap.servers`, `group.id` and any
//! other Kafka client property (`properties.*` in Flink SQL), security settings (SASL, TLS)
//! included. They go to librdkafka as they are; secrets are never logged.

use std::collections::BTreeMap;
use std::path::Path;

use rdkafka::ClientConfig;

use crate::KafkaError;

/// Kafka client properties. `Debug` masks secrets, so the settings can be logged.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    properties: BTreeMap<String, String>,
}

/// Property names whose values are secrets (SASL passwords, JAAS configs, TLS keys, tokens).
fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "jaas", "ssl.key.pem", "ssl_key", "token", "credentials"].iter().any(|s| key.contains(s))
}

impl std::fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.properties {
            if is_secret(key) {
                map.entry(key, &"******");
            } else {
                map.entry(key, value);
            }
        }
        map.finish()
    }
}

impl ClientSettings {
    pub fn new(bootstrap_servers: &str) -> Self {
        let mut settings = Self::default();
        settings.set("bootstrap.servers", bootstrap_servers);
        settings
    }

    /// Sets one client property (`security.protocol`, `sasl.mechanism`, `ssl.ca.location`, ...).
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        // Flink SQL spells client properties `properties.<name>`; accept both.
        let key = key.strip_prefix("properties.").unwrap_or(key);
        self.properties.insert(key.to_string(), value.to_string());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    pub fn group_id(&self) -> Option<&str> {
        self.get("group.id")
    }

    /// Adds `KEY=VALUE` pairs, e.g. from `--property` flags; `what` names their origin in errors.
    pub fn set_pairs<'a>(&mut self, pairs: impl IntoIterator<Item = &'a str>, what: &str) -> Result<(), KafkaError> {
        for pair in pairs {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(KafkaError::Config(format!("{what}: expected KEY=VALUE, found '{}'", mask_pair(pair))));
            };
            if key.trim().is_empty() {
                return Err(KafkaError::Config(format!("{what}: empty property name in '{}'", mask_pair(pair))));
            }
            self.set(key.trim(), value.trim());
        }
        Ok(())
    }

    /// Reads a Java-style `client.properties` file (`key=value` lines, `#` comments), as Kafka's
    /// tools take with `--command-config`: the way to pass credentials from a mounted Secret
    /// without putting them on a command line.
    pub fn load_properties_file(&mut self, path: &Path) -> Result<(), KafkaError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KafkaError::Config(format!("cannot read Kafka properties file {}: {e}", path.display())))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((key, value)) = line.split_once('=').or_else(|| line.split_once(':')) else {
                return Err(KafkaError::Config(format!(
                    "{} line {}: expected 'key=value', found '{}'",
                    path.display(),
                    n + 1,
                    mask_pair(line)
                )));
            };
            self.set(key.trim(), value.trim());
        }
        Ok(())
    }

    /// The librdkafka configuration, with `overrides` applied after the user's properties.
    pub(crate) fn client_config(&self, defaults: &[(&str, &str)], overrides: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        for (key, value) in overrides {
            config.set(*key, *value);
        }
        config.set_log_level(rdkafka::config::RDKafkaLogLevel::Warning);
        config
    }

    /// Creates a consumer and a producer from these settings and drops them: librdkafka rejects
    /// unknown properties, and security settings this build lacks (GSSAPI/Kerberos is not built
    /// in; TLS and SASL PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER are), when a client is
    /// created, so a job can say so before it starts instead of failing in its tasks.
    pub fn check(&self) -> Result<(), KafkaError> {
        self.require_bootstrap()?;
        let fail = |what: &str, e: rdkafka::error::KafkaError| {
            KafkaError::Config(format!("the Kafka client settings {self:?} are not usable for a {what}: {e}"))
        };
        // Without the group: closing a consumer of a group can wait for the group.
        let mut plain = self.clone();
        plain.properties.remove("group.id");
        let consumer: rdkafka::consumer::BaseConsumer =
            plain.client_config(&[], &[]).create().map_err(|e| fail("consumer", e))?;
        drop(consumer);
        let producer: rdkafka::producer::BaseProducer =
            self.client_config(&[], &[]).create().map_err(|e| fail("producer", e))?;
        drop(producer);
        Ok(())
    }

    pub(crate) fn require_bootstrap(&self) -> Result<(), KafkaError> {
        match self.get("bootstrap.servers") {
            Some(servers) if !servers.trim().is_empty() => Ok(()),
            _ => Err(KafkaError::Config("bootstrap.servers is not set (e.g. 'broker:9092')".into())),
        }
    }
}

/// `key=value` with the value masked when the key names a secret, for error messages.
fn mask_pair(pair: &str) -> String {
    match pair.split_once('=') {
        Some((key, _)) if is_secret(key) => format!("{key}=******"),
        _ => pair.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_in_debug_and_errors() {
        let mut settings = ClientSettings::new("b:9092");
        settings
            .set_pairs(
                ["properties.sasl.password=hunter2", "sasl.username=alice", "security.protocol=SASL_SSL"],
                "--property",
            )
            .unwrap();
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("SASL_SSL"), "{shown}");
        assert_eq!(settings.get("sasl.password"), Some("hunter2"), "properties.* is passed through without prefix");
        let err = settings.set_pairs(["sasl.password"], "--property").unwrap_err().to_string();
        assert!(err.contains("--property") && err.contains("KEY=VALUE"), "{err}");
    }

    /// librdkafka is built with OpenSSL (the `ssl` feature): TLS and SASL/SCRAM settings, as in
    /// `examples/kafka-word-count.yaml`, make clients; no broker is contacted.
    #[test]
    fn tls_and_sasl_scram_settings_make_clients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=rheo\nsasl.password=change-me\n",
        )
        .unwrap();
        let mut settings = ClientSettings::new("127.0.0.1:1");
        settings.load_properties_file(&path).unwrap();
        settings.check().unwrap();
        // The sink's and the source's own clients from the same settings.
        let producer: Result<rdkafka::producer::BaseProducer, _> =
            settings.client_config(&[], &[("transactional.id", "t"), ("enable.idempotence", "true")]).create();
        assert!(producer.is_ok(), "{:?}", producer.err());
        let consumer: Result<rdkafka::consumer::BaseConsumer, _> =
            settings.client_config(&[("isolation.level", "read_committed")], &[("group.id", "g")]).create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        let mut tls = ClientSettings::new("127.0.0.1:1");
        tls.set_pairs(["security.protocol=SSL", "ssl.endpoint.identification.algorithm=https"], "test").unwrap();
        tls.check().unwrap();
        let mut scram256 = ClientSettings::new("127.0.0.1:1");
        scram256.set_pairs(["security.protocol=SASL_PLAINTEXT", "sasl.mechanism=SCRAM-SHA-256"], "test").unwrap();
        let err = scram256.check().unwrap_err().to_string();
        assert!(err.contains("sasl.username and sasl.password must be set"), "{err}");
        scram256.set_pairs(["sasl.username=rheo", "sasl.password=hunter2"], "test").unwrap();
        scram256.check().unwrap();
    }

    /// GSSAPI (Kerberos) needs librdkafka built with Cyrus SASL, which Rheo's is not: the
    /// settings are refused with librdkafka's reason, the password masked.
    #[test]
    fn gssapi_is_refused_at_client_creation() {
        let mut settings = ClientSettings::new("127.0.0.1:1");
        settings
            .set_pairs(["security.protocol=SASL_SSL", "sasl.mechanism=GSSAPI", "sasl.password=hunter2"], "test")
            .unwrap();
        let err = settings.check().unwrap_err().to_string();
        assert!(err.contains("GSSAPI") && !err.contains("hunter2"), "{err}");
        let mut unknown = ClientSettings::new("127.0.0.1:1");
        unknown.set("no.such.property", "1");
        let err = unknown.check().unwrap_err().to_string();
        assert!(err.contains("no.such.property"), "{err}");
    }

    #[test]
    fn properties_file_names_the_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(&path, "# creds\nsasl.mechanism=PLAIN\nsasl.jaas.config\n").unwrap();
        let err = ClientSettings::default().load_properties_file(&path).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("key=value"), "{err}");
    }
}
