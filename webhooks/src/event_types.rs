//! The webhook event types endpoints subscribe to, and what a subscription covers (pure).

use strum::{EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};

/// A webhook event type; its name (`conversation.rating`) is what endpoints subscribe to and
/// what every delivery's `type` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, EnumString, IntoStaticStr)]
pub enum EventType {
    #[strum(serialize = "conversation.started")]
    ConversationStarted,
    #[strum(serialize = "conversation.quality_index")]
    ConversationQualityIndex,
    #[strum(serialize = "conversation.sentiment")]
    ConversationSentiment,
    #[strum(serialize = "conversation.frustration")]
    ConversationFrustration,
    #[strum(serialize = "conversation.struggle")]
    ConversationStruggle,
    #[strum(serialize = "conversation.commercial_intent")]
    ConversationCommercialIntent,
    #[strum(serialize = "conversation.rating")]
    ConversationRating,
    #[strum(serialize = "product.quality_index")]
    ProductQualityIndex,
    #[strum(serialize = "product.sentiment")]
    ProductSentiment,
    #[strum(serialize = "custom_analysis.guardrail_triggered")]
    GuardrailTriggered,
    #[strum(serialize = "custom_analysis.expectation_failed")]
    ExpectationFailed,
    #[strum(serialize = "custom_analysis.evidence_found")]
    EvidenceFound,
}

/// The families a subscription may cover with `family.*`.
pub const FAMILIES: [&str; 3] = ["conversation", "product", "custom_analysis"];

impl EventType {
    /// Every type, in the order the documentation lists them.
    pub fn all() -> impl Iterator<Item = EventType> {
        EventType::iter()
    }

    /// The name endpoints subscribe to.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(name: &str) -> Option<EventType> {
        name.parse().ok()
    }
}

/// Whether an endpoint's subscription (`conversation.rating`, `conversation.*`, `*`) covers a type.
pub fn subscribed(pattern: &str, event_type: EventType) -> bool {
    let name = event_type.as_str();
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => prefix.ends_with('.') && name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_match_exactly_or_by_prefix() {
        use EventType::*;
        assert!(subscribed("conversation.rating", ConversationRating));
        assert!(!subscribed("conversation.rating", ConversationStarted));
        assert!(subscribed("conversation.*", ConversationStarted));
        assert!(!subscribed("conversation.*", ProductSentiment));
        assert!(subscribed("custom_analysis.*", EvidenceFound));
        assert!(subscribed("*", ProductQualityIndex));
        assert!(!subscribed("conv*", ConversationStarted));
        assert_eq!(EventType::all().count(), 12);
        for t in EventType::all() {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert!(
                FAMILIES
                    .iter()
                    .any(|f| t.as_str().starts_with(&format!("{f}.")))
            );
        }
        assert_eq!(EventType::parse("conversation"), None);
    }

    proptest::proptest! {
        /// `*` covers everything, a name only itself, `prefix.*` exactly the names under it.
        #[test]
        fn subscriptions_cover_what_they_name(
            pattern in proptest::sample::select(EventType::all().collect::<Vec<_>>()),
            event in proptest::sample::select(EventType::all().collect::<Vec<_>>()),
            star in proptest::bool::ANY,
        ) {
            proptest::prop_assert!(subscribed("*", event));
            proptest::prop_assert_eq!(subscribed(pattern.as_str(), event), pattern == event);
            let family = pattern.as_str().split('.').next().unwrap();
            let wildcard = if star { format!("{family}.*") } else { format!("{family}*") };
            proptest::prop_assert_eq!(
                subscribed(&wildcard, event),
                star && event.as_str().starts_with(&format!("{family}."))
            );
        }
    }
}
