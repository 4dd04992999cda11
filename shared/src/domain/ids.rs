//! Ids and times as the API, Redis and MySQL carry them.

use chrono::{DateTime, Utc};

/// A user id as the token's `sub` carries it. It becomes part of a receipt, a Redis key and a
/// URL path, so only a conservative alphabet is accepted (Cognito's UUIDs and typical ids pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.@:|".contains(&b) || b == b'-');
        ok.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Largest id the API accepts: ids are BIGINT UNSIGNED in MySQL, but JSON clients lose
/// precision above 2^53, so nothing larger is ever handed out or accepted.
pub const MAX_ID: u64 = (1 << 53) - 1;

pub fn valid_id(id: u64) -> bool {
    (1..=MAX_ID).contains(&id)
}

pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_with_separators_or_spaces_are_refused() {
        assert!(UserId::parse("7f1c2a4e-0b9d-4c35-9a57-6f0e5d7f9a11").is_some());
        assert!(UserId::parse("user_42@example.com").is_some());
        for bad in ["", "a/b", "a b", "a{b}", "é", &"x".repeat(129)] {
            assert!(UserId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
