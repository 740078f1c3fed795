//! The lifecycle of a stored message.

use std::fmt;
use std::str::FromStr;

/// Where a stored message is in its lifecycle.
///
/// `Pending` → `Claimed` (leased by a relay) → deleted on success, or `Failed` (waiting for its
/// next attempt) → ... → `Dead` after the last attempt. `Published` is seen only when the store
/// keeps published rows for a retention window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Committed, waiting for a relay.
    Pending,
    /// Leased by a relay that is publishing it.
    Claimed,
    /// A publish attempt failed; it is retried at its next attempt time.
    Failed,
    /// Every attempt failed; kept with its last error until an operator retries or purges it.
    Dead,
    /// Published and kept for the retention window.
    Published,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Claimed,
        Status::Failed,
        Status::Dead,
        Status::Published,
    ];

    /// The lowercase name used in output and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Claimed => "claimed",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Published => "published",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no [`Status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}; expected one of pending, claimed, failed, dead, published")]
pub struct ParseStatusError(String);

impl FromStr for Status {
    type Err = ParseStatusError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ParseStatusError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_strings() {
        for status in Status::ALL {
            assert_eq!(status.to_string().parse::<Status>().unwrap(), status);
        }
        assert_eq!("DEAD".parse::<Status>().unwrap(), Status::Dead);
        let err = "gone".parse::<Status>().unwrap_err();
        assert!(err.to_string().contains("pending"));
    }
}
