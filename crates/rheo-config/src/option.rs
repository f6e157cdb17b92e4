//! One configuration option: its key, value type, default, bounds and description, and the
//! parsing of its text form.

use std::fmt::Write as _;
use std::marker::PhantomData;
use std::time::Duration;

use crate::ConfigError;

/// Where an option belongs in the generated reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Pipeline,
    Checkpointing,
    RestartStrategy,
    JobManager,
    TaskManager,
    Rest,
    Scheduler,
    FileSystems,
    S3,
}

impl Section {
    pub const ALL: [Section; 9] = [
        Section::Pipeline,
        Section::Checkpointing,
        Section::RestartStrategy,
        Section::JobManager,
        Section::TaskManager,
        Section::Rest,
        Section::Scheduler,
        Section::FileSystems,
        Section::S3,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Section::Pipeline => "Pipeline",
            Section::Checkpointing => "Checkpoints and savepoints",
            Section::RestartStrategy => "Restart strategy",
            Section::JobManager => "JobManager",
            Section::TaskManager => "TaskManager",
            Section::Rest => "REST endpoint",
            Section::Scheduler => "Scheduling",
            Section::FileSystems => "File systems",
            Section::S3 => "S3 file system",
        }
    }
}

/// A type an option's value can have: how its text is parsed and shown.
pub trait OptionType: Sized {
    /// The default as a constant (`&'static str` for strings).
    type Const: Copy + Send + Sync + 'static;
    /// The type's name in the reference.
    const TYPE_NAME: &'static str;
    /// The value of `text`, or what was expected instead.
    fn parse(text: &str) -> Result<Self, String>;
    fn from_const(value: Self::Const) -> Self;
    /// The default as the reference shows it; `None` for no default.
    fn show(value: &Self::Const) -> Option<String>;
    /// The value as a number, for range checks.
    fn as_number(&self) -> Option<f64> {
        None
    }
}

macro_rules! integer_type {
    ($($t:ty => $name:literal, $expected:literal;)*) => {$(
        impl OptionType for $t {
            type Const = $t;
            const TYPE_NAME: &'static str = $name;
            fn parse(text: &str) -> Result<Self, String> {
                text.trim().parse().map_err(|_| format!($expected, <$t>::MAX))
            }
            fn from_const(value: $t) -> $t {
                value
            }
            fn show(value: &$t) -> Option<String> {
                Some(value.to_string())
            }
            fn as_number(&self) -> Option<f64> {
                Some(*self as f64)
            }
        }
    )*};
}

integer_type! {
    u16 => "Integer", "an integer from 0 to {}";
    u32 => "Integer", "an integer from 0 to {}";
    u64 => "Long", "an integer from 0 to {}";
    usize => "Integer", "an integer from 0 to {}";
}

impl OptionType for f64 {
    type Const = f64;
    const TYPE_NAME: &'static str = "Double";
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err("a number".into()),
        }
    }
    fn from_const(value: f64) -> f64 {
        value
    }
    fn show(value: &f64) -> Option<String> {
        Some(value.to_string())
    }
    fn as_number(&self) -> Option<f64> {
        Some(*self)
    }
}

impl OptionType for bool {
    type Const = bool;
    const TYPE_NAME: &'static str = "Boolean";
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err("true or false".into()),
        }
    }
    fn from_const(value: bool) -> bool {
        value
    }
    fn show(value: &bool) -> Option<String> {
        Some(value.to_string())
    }
}

impl OptionType for String {
    type Const = &'static str;
    const TYPE_NAME: &'static str = "String";
    fn parse(text: &str) -> Result<Self, String> {
        Ok(text.trim().to_string())
    }
    fn from_const(value: &'static str) -> String {
        value.to_string()
    }
    fn show(value: &&'static str) -> Option<String> {
        Some(value.to_string())
    }
}

impl OptionType for Duration {
    type Const = Duration;
    const TYPE_NAME: &'static str = "Duration";
    fn parse(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
    fn from_const(value: Duration) -> Duration {
        value
    }
    fn show(value: &Duration) -> Option<String> {
        Some(format_duration(*value))
    }
}

/// An option without a default: unset is `None`.
impl<T: OptionType> OptionType for Option<T> {
    type Const = Option<T::Const>;
    const TYPE_NAME: &'static str = T::TYPE_NAME;
    fn parse(text: &str) -> Result<Self, String> {
        T::parse(text).map(Some)
    }
    fn from_const(value: Option<T::Const>) -> Self {
        value.map(T::from_const)
    }
    fn show(value: &Option<T::Const>) -> Option<String> {
        value.as_ref().and_then(T::show)
    }
    fn as_number(&self) -> Option<f64> {
        self.as_ref().and_then(T::as_number)
    }
}

/// A port or a range of ports to try in order, as Flink's `rest.port: 50100-50200`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub const fn single(port: u16) -> Self {
        Self { first: port, last: port }
    }
}

impl OptionType for PortRange {
    type Const = PortRange;
    const TYPE_NAME: &'static str = "String";
    fn parse(text: &str) -> Result<Self, String> {
        let expected = || "a port (0 to 65535) or a range such as 50100-50200".to_string();
        let port = |s: &str| s.trim().parse::<u16>().map_err(|_| expected());
        let text = text.trim();
        match text.split_once('-') {
            None => port(text).map(PortRange::single),
            Some((a, b)) => {
                let (first, last) = (port(a)?, port(b)?);
                if first > last { Err(expected()) } else { Ok(PortRange { first, last }) }
            }
        }
    }
    fn from_const(value: PortRange) -> PortRange {
        value
    }
    fn show(value: &PortRange) -> Option<String> {
        Some(if value.first == value.last {
            value.first.to_string()
        } else {
            format!("{}-{}", value.first, value.last)
        })
    }
}

/// A configuration option of type `T`, defined once in [`crate::options`].
#[derive(Debug)]
pub struct ConfigOption<T: OptionType> {
    pub key: &'static str,
    pub section: Section,
    pub description: &'static str,
    pub default: T::Const,
    /// Bounds of numeric values, inclusive.
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// For string options: the accepted values (compared ignoring case).
    pub choices: &'static [&'static str],
    /// A credential: masked in `/jobmanager/config` and never logged.
    pub secret: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T: OptionType> ConfigOption<T> {
    pub const fn new(key: &'static str, section: Section, default: T::Const, description: &'static str) -> Self {
        Self {
            key,
            section,
            description,
            default,
            min: None,
            max: None,
            choices: &[],
            secret: false,
            _type: PhantomData,
        }
    }

    pub const fn at_least(self, min: f64) -> Self {
        Self { min: Some(min), ..self }
    }

    pub const fn at_most(self, max: f64) -> Self {
        Self { max: Some(max), ..self }
    }

    pub const fn one_of(self, choices: &'static [&'static str]) -> Self {
        Self { choices, ..self }
    }

    pub const fn secret(self) -> Self {
        Self { secret: true, ..self }
    }

    pub fn default_value(&self) -> T {
        T::from_const(self.default)
    }

    /// The value `text` stands for, checked against the option's bounds and choices.
    pub fn parse(&self, text: &str) -> Result<T, ConfigError> {
        let invalid = |expected: String| ConfigError::Invalid {
            key: self.key.to_string(),
            value: if self.secret { "******".into() } else { text.to_string() },
            expected,
        };
        if !self.choices.is_empty() && !self.choices.iter().any(|c| c.eq_ignore_ascii_case(text.trim())) {
            return Err(invalid(format!("one of {}", self.choices.join(", "))));
        }
        let has_range = self.min.is_some() || self.max.is_some();
        let value = T::parse(text).map_err(|expected| invalid(if has_range { self.range_text() } else { expected }))?;
        if let Some(n) = value.as_number() {
            let low = self.min.is_some_and(|min| n < min);
            let high = self.max.is_some_and(|max| n > max);
            if low || high {
                return Err(invalid(self.range_text()));
            }
        }
        Ok(value)
    }

    fn range_text(&self) -> String {
        let number = |x: f64| if x.fract() == 0.0 { format!("{}", x as i64) } else { x.to_string() };
        let kind = if matches!(T::TYPE_NAME, "Integer" | "Long") { "an integer" } else { "a number" };
        match (self.min, self.max) {
            (Some(min), Some(max)) => format!("{kind} from {} to {}", number(min), number(max)),
            (Some(min), None) => format!("{kind} of at least {}", number(min)),
            (None, Some(max)) => format!("{kind} of at most {}", number(max)),
            (None, None) => kind.into(),
        }
    }
}

/// An option seen without its value type: what the registry, the docs and the checks use.
pub trait AnyOption: Sync {
    fn key(&self) -> &'static str;
    fn section(&self) -> Section;
    fn description(&self) -> &'static str;
    fn type_name(&self) -> &'static str;
    /// The default as text; `None` when the option has none.
    fn default_text(&self) -> Option<String>;
    /// Accepted values and bounds, for the reference.
    fn constraint_text(&self) -> Option<String>;
    fn is_secret(&self) -> bool;
    /// Whether `text` is a valid value.
    fn check(&self, text: &str) -> Result<(), ConfigError>;
}

impl<T: OptionType> AnyOption for ConfigOption<T>
where
    T::Const: Sync,
{
    fn key(&self) -> &'static str {
        self.key
    }
    fn section(&self) -> Section {
        self.section
    }
    fn description(&self) -> &'static str {
        self.description
    }
    fn type_name(&self) -> &'static str {
        T::TYPE_NAME
    }
    fn default_text(&self) -> Option<String> {
        T::show(&self.default)
    }
    fn constraint_text(&self) -> Option<String> {
        if !self.choices.is_empty() {
            return Some(format!("one of {}", self.choices.join(", ")));
        }
        (self.min.is_some() || self.max.is_some()).then(|| self.range_text())
    }
    fn is_secret(&self) -> bool {
        self.secret
    }
    fn check(&self, text: &str) -> Result<(), ConfigError> {
        self.parse(text).map(|_| ())
    }
}

/// Parses Flink's duration notation: a whole number and a unit (`ns`, `us`, `ms`, `s`, `min`,
/// `h`, `d` and their long forms); a plain number is milliseconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const EXPECTED: &str = "a duration such as '500 ms', '10 s' or '1 min'";
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(EXPECTED.into());
    }
    // Durations are used as milliseconds in a u64.
    let too_long = || format!("{EXPECTED}, of at most {} s", u64::MAX / 1000);
    let n: u64 = number.parse().map_err(|_| too_long())?;
    let nanos_per: u64 = match unit.trim().to_lowercase().as_str() {
        "ns" | "nano" | "nanos" | "nanosecond" | "nanoseconds" => 1,
        "us" | "µs" | "micro" | "micros" | "microsecond" | "microseconds" => 1_000,
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1_000_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000_000,
        "m" | "min" | "minute" | "minutes" => 60 * 1_000_000_000,
        "h" | "hour" | "hours" => 3_600 * 1_000_000_000,
        "d" | "day" | "days" => 86_400 * 1_000_000_000,
        _ => return Err(EXPECTED.into()),
    };
    // Whole seconds and the nanoseconds left over, so that no unit can wrap around.
    let per_second = 1_000_000_000u64;
    let (secs, nanos) = if nanos_per >= per_second {
        (n.checked_mul(nanos_per / per_second).ok_or_else(too_long)?, 0)
    } else {
        let per = per_second / nanos_per;
        (n / per, (n % per) * nanos_per)
    };
    let duration = Duration::new(secs, nanos as u32);
    if secs > u64::MAX / 1000 {
        return Err(too_long());
    }
    Ok(duration)
}

/// A duration in the largest unit that shows it exactly: `10 s`, `5 min`, `500 ms`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    let units: [(u128, &str); 6] = [
        (86_400_000_000_000, "d"),
        (3_600_000_000_000, "h"),
        (60_000_000_000, "min"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
    ];
    let mut out = String::new();
    match units.iter().find(|(per, _)| nanos != 0 && nanos.is_multiple_of(*per)) {
        Some((per, unit)) => write!(out, "{} {unit}", nanos / per),
        None if nanos == 0 => write!(out, "0 ms"),
        None => write!(out, "{nanos} ns"),
    }
    .expect("writing to a String");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_flink_notation() {
        assert_eq!(parse_duration("500 ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1 min"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("2 h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1500 us"), Ok(Duration::from_micros(1500)));
        assert!(parse_duration("ten s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1 s").is_err());
    }

    #[test]
    fn durations_that_do_not_fit_are_rejected_not_wrapped() {
        // 18446744073709552 s * 1000 overflows u64 milliseconds.
        let err = parse_duration("18446744073709552s").unwrap_err();
        assert!(err.contains("at most"), "{err}");
        assert!(parse_duration("99999999999999999999 ms").is_err());
        assert!(parse_duration("999999999999999 d").is_err());
        assert_eq!(parse_duration("18446744073709551 s"), Ok(Duration::from_secs(18_446_744_073_709_551)));
        assert!(parse_duration("18446744073709552 s").unwrap_err().contains("at most 18446744073709551 s"));
    }

    #[test]
    fn durations_are_shown_in_their_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(600)), "10 min");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500 ms");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1 h");
        assert_eq!(format_duration(Duration::ZERO), "0 ms");
        for d in [Duration::from_millis(200), Duration::from_secs(50), Duration::from_micros(7)] {
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn port_ranges() {
        assert_eq!(PortRange::parse("8081"), Ok(PortRange::single(8081)));
        assert_eq!(PortRange::parse("50100-50200"), Ok(PortRange { first: 50100, last: 50200 }));
        assert!(PortRange::parse("70000").is_err());
        assert!(PortRange::parse("9-1").is_err());
        assert!(PortRange::parse("tcp://10.96.0.12:8081").is_err());
    }

    #[test]
    fn bounds_and_choices_name_key_value_and_expectation() {
        const SLOTS: ConfigOption<usize> = ConfigOption::new("x.slots", Section::TaskManager, 1, "").at_least(1.0);
        let err = SLOTS.parse("0").unwrap_err().to_string();
        assert!(err.contains("x.slots") && err.contains("'0'") && err.contains("at least 1"), "{err}");
        const KIND: ConfigOption<String> = ConfigOption::new("x.kind", Section::Pipeline, "a", "").one_of(&["a", "b"]);
        assert_eq!(KIND.parse("B").unwrap(), "B");
        let err = KIND.parse("c").unwrap_err().to_string();
        assert!(err.contains("one of a, b"), "{err}");
        const KEY: ConfigOption<Option<String>> = ConfigOption::new("x.key", Section::S3, None, "").secret();
        assert_eq!(KEY.default_value(), None);
    }
}
