//! Outbound webhooks as a library: where events go, how they are signed, which addresses they
//! may reach, and the delivery log. The notifier stage drives deliveries with it; the control
//! plane manages endpoints and reads deliveries with it. It holds no loop of its own.
//!
//! - [`event_types`]: the event types endpoints subscribe to, and what a subscription covers;
//! - [`endpoints`]: where events go, with URL checks and secret rotation;
//! - [`signing`]: `whsec_` secrets and Standard Webhooks-compatible signatures (pure);
//! - [`ssrf`]: which addresses a webhook may connect to, and the operator's allow-list (pure);
//! - [`events`]: a webhook event and its pending deliveries, recorded in the caller's transaction;
//! - [`schedule`]: when a failed delivery is tried again, when an endpoint is given up on (pure);
//! - [`delivery`]: one signed attempt, the client that makes it, the delivery log, test deliveries.

pub mod delivery;
pub mod endpoints;
pub mod event_types;
pub mod events;
pub mod schedule;
pub mod signing;
pub mod ssrf;

pub use event_types::EventType;
