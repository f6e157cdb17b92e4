//! Restart strategies, with Flink's configuration keys and defaults: `none`, `fixed-delay`,
//! `exponential-delay` (the default when checkpointing is enabled, as in Flink 2).

use std::time::Duration;

use rheo_config::{ConfigError, Configuration, options};

#[derive(Debug, Clone, PartialEq)]
pub enum RestartStrategy {
    None,
    FixedDelay { attempts: u32, delay: Duration },
    ExponentialDelay { initial: Duration, max: Duration, multiplier: f64, attempts: u32 },
}

impl RestartStrategy {
    pub fn from_config(config: &Configuration, checkpointing: bool) -> Result<Self, ConfigError> {
        let kind = config.get(&options::RESTART_STRATEGY)?.map(|s| s.to_lowercase());
        let kind = kind.unwrap_or_else(|| if checkpointing { "exponential-delay".into() } else { "none".into() });
        // The registry accepts only these spellings.
        Ok(match kind.as_str() {
            "fixed-delay" | "fixeddelay" => RestartStrategy::FixedDelay {
                attempts: config.get(&options::FIXED_DELAY_ATTEMPTS)?,
                delay: config.get(&options::FIXED_DELAY_DELAY)?,
            },
            "exponential-delay" | "exponentialdelay" => RestartStrategy::ExponentialDelay {
                initial: config.get(&options::EXPONENTIAL_INITIAL_BACKOFF)?,
                max: config.get(&options::EXPONENTIAL_MAX_BACKOFF)?,
                multiplier: config.get(&options::EXPONENTIAL_BACKOFF_MULTIPLIER)?,
                attempts: config.get(&options::EXPONENTIAL_ATTEMPTS_BEFORE_RESET)?,
            },
            _ => RestartStrategy::None,
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

/// The restart strategy applied over a job's life: counts failures and decides each delay.
///
/// With `exponential-delay`, an attempt that ran for the reset threshold before it failed
/// starts the count over, so a job that fails once a day does not wait the maximum backoff
/// forever after (Flink's `reset-backoff-threshold`). `fixed-delay` counts every failure.
#[derive(Debug, Clone)]
pub struct RestartBackoff {
    strategy: RestartStrategy,
    reset_threshold: Duration,
    /// Failures since the backoff was last reset.
    failures: u32,
    /// Every failure of the job, for its status.
    total: u32,
}

impl RestartBackoff {
    pub fn new(strategy: RestartStrategy, reset_threshold: Duration) -> Self {
        Self { strategy, reset_threshold, failures: 0, total: 0 }
    }

    pub fn from_config(config: &Configuration, checkpointing: bool) -> Result<Self, ConfigError> {
        let threshold = config.get(&options::EXPONENTIAL_RESET_BACKOFF_THRESHOLD)?;
        Ok(Self::new(RestartStrategy::from_config(config, checkpointing)?, threshold))
    }

    /// Notes a failure of an attempt that ran for `ran_for`; the delay before the next attempt,
    /// or `None` when the strategy allows no more restarts.
    pub fn on_failure(&mut self, ran_for: Duration) -> Option<Duration> {
        if matches!(self.strategy, RestartStrategy::ExponentialDelay { .. }) && ran_for >= self.reset_threshold {
            self.failures = 0;
        }
        self.failures += 1;
        self.total += 1;
        self.strategy.delay(self.failures)
    }

    /// Every failure so far.
    pub fn restarts(&self) -> u32 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_resets_after_a_stable_attempt() {
        let strategy = RestartStrategy::ExponentialDelay {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
            attempts: u32::MAX,
        };
        let mut backoff = RestartBackoff::new(strategy, Duration::from_secs(600));
        let quick = Duration::from_secs(1);
        assert_eq!(backoff.on_failure(quick), Some(Duration::from_secs(1)));
        assert_eq!(backoff.on_failure(quick), Some(Duration::from_secs(2)));
        assert_eq!(backoff.on_failure(quick), Some(Duration::from_secs(4)));
        assert_eq!(backoff.on_failure(Duration::from_secs(600)), Some(Duration::from_secs(1)));
        assert_eq!(backoff.on_failure(quick), Some(Duration::from_secs(2)));
        assert_eq!(backoff.restarts(), 5);
    }

    #[test]
    fn fixed_delay_counts_every_failure_however_long_the_attempt_ran() {
        let strategy = RestartStrategy::FixedDelay { attempts: 2, delay: Duration::from_millis(10) };
        let mut backoff = RestartBackoff::new(strategy, Duration::from_secs(1));
        assert!(backoff.on_failure(Duration::from_secs(5)).is_some());
        assert!(backoff.on_failure(Duration::from_secs(5)).is_some());
        assert_eq!(backoff.on_failure(Duration::from_secs(5)), None);
    }

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
        config.set(options::RESTART_STRATEGY.key, "fixed-delay");
        config.set(options::FIXED_DELAY_ATTEMPTS.key, "2");
        config.set(options::FIXED_DELAY_DELAY.key, "10 ms");
        let strategy = RestartStrategy::from_config(&config, true).unwrap();
        assert_eq!(strategy.delay(2), Some(Duration::from_millis(10)));
        assert_eq!(strategy.delay(3), None);
    }

    #[test]
    fn unknown_type_names_the_key() {
        let mut config = Configuration::new();
        config.set(options::RESTART_STRATEGY.key, "sometimes");
        let err = RestartStrategy::from_config(&config, true).unwrap_err().to_string();
        assert!(err.contains("restart-strategy.type") && err.contains("sometimes"), "{err}");
    }
}
