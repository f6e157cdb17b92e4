//! Job ids: 32 lowercase hex digits (Flink's `JobID`), checked in one place.

use std::fmt;
use std::str::FromStr;

/// A job's id, as Flink writes it: 16 bytes shown as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId([u8; 16]);

/// Text that is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a job id (expected 32 hex digits)")]
pub struct JobIdError(pub String);

impl JobId {
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The stable id of a job identity (its name and arguments): the same identity gives the
    /// same id in every process and every run, so a rerun finds its checkpoints.
    pub fn derived_from(identity: &str) -> Self {
        let a = crate::keygroups::hash_key(&(identity, 1u8));
        let b = crate::keygroups::hash_key(&(identity, 2u8));
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&a.to_be_bytes());
        bytes[8..].copy_from_slice(&b.to_be_bytes());
        Self(bytes)
    }

    /// A fresh random id (a submission that fixes none).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut x = seed as u64 ^ ((seed >> 64) as u64) ^ (std::process::id() as u64).rotate_left(32);
        let counter = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        x ^= counter.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for chunk in bytes.chunks_mut(8) {
            // splitmix64
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_be_bytes());
        }
        Self(bytes)
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl FromStr for JobId {
    type Err = JobIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JobIdError(text.to_string()));
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| JobIdError(text.to_string()))?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl serde::Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_32_lowercase_hex_digits() {
        let id: JobId = "0123456789ABCDEF0123456789abcdef".parse().unwrap();
        assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
    }

    #[test]
    fn rejects_wrong_length_and_non_hex() {
        assert!("0123".parse::<JobId>().is_err());
        assert!("g123456789abcdef0123456789abcdef".parse::<JobId>().is_err());
        assert_eq!("xyz".parse::<JobId>().unwrap_err().to_string(), "'xyz' is not a job id (expected 32 hex digits)");
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = JobId::derived_from("word-count --input a");
        assert_eq!(a, JobId::derived_from("word-count --input a"));
        assert_ne!(a, JobId::derived_from("word-count --input b"));
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(JobId::random(), JobId::random());
    }
}
