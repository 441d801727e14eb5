//! The analytics tools that can post to an ingest URL.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter, IntoEnumIterator, IntoStaticStr};

/// Its name (`amplitude`) is the URL segment, header value and insert-id prefix.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    Display,
    EnumIter,
    IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Provider {
    Amplitude,
    Segment,
    Posthog,
    /// The public events API: canonical field names, posted from a team's own backend.
    Api,
}

impl Provider {
    /// Every provider, in the order the documentation lists them.
    pub fn all() -> impl Iterator<Item = Provider> {
        Provider::iter()
    }

    /// The URL segment, header value and insert-id prefix for this provider.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown provider {0:?}: expected amplitude, segment, posthog or api")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_name() {
        for p in Provider::all() {
            assert_eq!(p.as_str().parse::<Provider>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
    }

    #[test]
    fn names_are_exact() {
        assert!("Amplitude".parse::<Provider>().is_err());
        assert!("PostHog".parse::<Provider>().is_err());
        assert!("mixpanel".parse::<Provider>().is_err());
        assert!("".parse::<Provider>().is_err());
    }
}
