//! Restart strategies, with Flink's configuration keys and defaults: `none`, `fixed-delay`,
//! `exponential-delay` (the default when checkpointing is enabled, as in Flink 2).

use std::time::Duration;

use crate::config::{ConfigError, Configuration};

#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    None,
    FixedDelay { attempts: u32, delay: Duration },
    ExponentialDelay { initial: Duration, max: Duration, multiplier: f64, attempts: u32 },
}

impl RestartStrategy {
    pub fn from_config(config: &Configuration, checkpointing: bool) -> Result<Self, ConfigError> {
        let kind = config.get("restart-strategy.type").map(|s| s.trim().to_lowercase());
        let duration = |key: &str, default: Duration| config.duration(key).map(|d| d.unwrap_or(default));
        let kind = kind.unwrap_or_else(|| if checkpointing { "exponential-delay".into() } else { "none".into() });
        Ok(match kind.as_str() {
            "none" | "off" | "disable" => RestartStrategy::None,
            "fixed-delay" | "fixeddelay" => RestartStrategy::FixedDelay {
                attempts: config.parse_or("restart-strategy.fixed-delay.attempts", 1, "a non-negative integer")?,
                delay: duration("restart-strategy.fixed-delay.delay", Duration::from_secs(1))?,
            },
            "exponential-delay" | "exponentialdelay" => RestartStrategy::ExponentialDelay {
                initial: duration("restart-strategy.exponential-delay.initial-backoff", Duration::from_secs(1))?,
                max: duration("restart-strategy.exponential-delay.max-backoff", Duration::from_secs(60))?,
                multiplier: config.parse_or(
                    "restart-strategy.exponential-delay.backoff-multiplier",
                    1.5,
                    "a number",
                )?,
                attempts: config.parse_or(
                    "restart-strategy.exponential-delay.attempts-before-reset-backoff",
                    u32::MAX,
                    "a non-negative integer",
                )?,
            },
            other => {
                return Err(ConfigError::Invalid {
                    key: "restart-strategy.type".into(),
                    value: other.into(),
                    expected: "one of none, fixed-delay, exponential-delay",
                });
            }
        })
    }

    /// The delay before restart number `attempt` (1-based), or `None` when no restart is left.
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        match *self {
            RestartStrategy::None => None,
            RestartStrategy::FixedDelay { attempts, delay } => (attempt <= attempts).then_some(delay),
            RestartStrategy::ExponentialDelay { initial, max, multiplier, attempts } => {
                (attempt <= attempts).then(|| {
                    let factor = multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
                    initial.mul_f64(factor).min(max)
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_flink() {
        let config = Configuration::new();
        assert_eq!(RestartStrategy::from_config(&config, false).unwrap(), RestartStrategy::None);
        let strategy = RestartStrategy::from_config(&config, true).unwrap();
        assert_eq!(strategy.delay(1), Some(Duration::from_secs(1)));
        assert_eq!(strategy.delay(2), Some(Duration::from_millis(1500)));
        assert_eq!(strategy.delay(100), Some(Duration::from_secs(60)));
    }

    #[test]
    fn fixed_delay_counts_attempts() {
        let mut config = Configuration::new();
        config.set("restart-strategy.type", "fixed-delay");
        config.set("restart-strategy.fixed-delay.attempts", "2");
        config.set("restart-strategy.fixed-delay.delay", "10 ms");
        let strategy = RestartStrategy::from_config(&config, true).unwrap();
        assert_eq!(strategy.delay(2), Some(Duration::from_millis(10)));
        assert_eq!(strategy.delay(3), None);
    }

    #[test]
    fn unknown_type_names_the_key() {
        let mut config = Configuration::new();
        config.set("restart-strategy.type", "sometimes");
        let err = RestartStrategy::from_config(&config, true).unwrap_err().to_string();
        assert!(err.contains("restart-strategy.type") && err.contains("sometimes"), "{err}");
    }
}
