//! `gf.events.attributed.v1`: a canonical event tied to a user, an organization and a conversation.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::canonical::CanonicalEvent;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributedEvent {
    #[serde(flatten)]
    pub event: CanonicalEvent,
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub resolution: Resolution,
}

/// How each link was found, so consumers can weigh them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    pub user: UserResolution,
    pub organization: OrganizationResolution,
    pub conversation: ConversationResolution,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum UserResolution {
    /// Matched an existing user by externalUserId.
    ExternalId,
    /// Matched an existing user by email.
    Email,
    /// No match; created from the event's email.
    Created,
    /// No match and no email: left unattributed.
    None,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum OrganizationResolution {
    /// Upserted by externalOrganizationId.
    ExternalId,
    None,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, strum::IntoStaticStr, strum::EnumIter,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ConversationResolution {
    /// Named by `gf_conversation_id`.
    Explicit,
    /// The user's latest conversation within 15 minutes before the event.
    Window,
    None,
}
