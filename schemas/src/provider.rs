//! The analytics tools that can post to an ingest URL.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Amplitude,
    Segment,
    Posthog,
    /// The public events API: canonical field names, posted from a team's own backend.
    Api,
}

impl Provider {
    pub const ALL: [Provider; 4] = [
        Provider::Amplitude,
        Provider::Segment,
        Provider::Posthog,
        Provider::Api,
    ];

    /// The URL segment, header value and insert-id prefix for this provider.
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Amplitude => "amplitude",
            Provider::Segment => "segment",
            Provider::Posthog => "posthog",
            Provider::Api => "api",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown provider {0:?}: expected amplitude, segment, posthog or api")]
pub struct UnknownProvider(pub String);

impl FromStr for Provider {
    type Err = UnknownProvider;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProvider(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_name() {
        for p in Provider::ALL {
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
