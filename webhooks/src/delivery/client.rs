//! The webhook HTTP client: no redirects, a time limit per attempt, and DNS that only ever
//! hands out addresses the policy allows.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::ATTEMPT_TIMEOUT;
use crate::ssrf::AddressPolicy;

/// The client could not be built (TLS roots, resolver).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the webhook client: {0}")]
pub struct ClientError(String);

/// Refused at connect time: every address the name resolved to is blocked.
#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses webhooks may not reach")]
pub(super) struct BlockedAddress {
    host: String,
}

/// Resolves names and keeps only the addresses the policy allows, so the check holds for the
/// address actually connected to, even if DNS changes after the endpoint was created.
pub(super) struct GuardedResolver {
    policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.check(a.ip()).is_ok())
                .collect();
            if resolved.is_empty() {
                return Err(Box::new(BlockedAddress { host }) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(resolved.into_iter()) as Addrs)
        })
    }
}

/// The webhook HTTP client: no redirects, a 5-second limit per attempt, guarded DNS.
pub fn webhook_client(policy: &AddressPolicy) -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        // HTTP(S)_PROXY from the environment would send webhooks where the address check never
        // looked; there is no proxy unless one is configured here.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(ATTEMPT_TIMEOUT)
        .user_agent(concat!("gf-notifier/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }))
        .build()
        .map_err(|e| ClientError(e.to_string()))
}
