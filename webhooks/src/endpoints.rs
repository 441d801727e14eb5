//! Webhook endpoints (`gf endpoint ...`): where a product's quality events go, which types, and
//! the signing secrets. A secret is shown once, at creation and rotation; after a rotation the
//! previous one keeps signing alongside the new one for 24 hours.

use gf_runtime::paging::{Cursor, Page, PageRequest};
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use serde::Serialize;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use uuid::Uuid;

use crate::event_types::{EventType, FAMILIES};
use crate::signing::{SigningError, SigningSecret};
use crate::ssrf::AddressPolicy;

/// How long a rotated-out secret keeps signing.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no product with id {0}")]
    ProductNotFound(Uuid),
    #[error("no endpoint with id {0}")]
    NotFound(Uuid),
    #[error("{0:?} is not an absolute http(s) URL")]
    BadUrl(String),
    #[error(
        "plain http:// is accepted only for hosts in GF_WEBHOOK_ALLOWED_NETS; use https:// for {0}"
    )]
    PlainHttp(String),
    #[error("{host} resolves to {address}, a {reason}, which webhooks may not reach")]
    Blocked {
        host: String,
        address: IpAddr,
        reason: &'static str,
    },
    #[error("cannot resolve {0}")]
    Unresolvable(String),
    #[error(
        "unknown event type {0:?}: use an exact type (conversation.rating), a prefix (conversation.*) or *"
    )]
    BadEventType(String),
    #[error("give at least one event type")]
    NoEventTypes,
    #[error(transparent)]
    Secret(#[from] SigningError),
    #[error(transparent)]
    Db(#[from] gf_runtime::db::DbError),
}

gf_runtime::db_error_from!(EndpointError::Db);

/// An endpoint as shown to operators: never its secrets.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    pub id: Uuid,
    pub product_id: Uuid,
    pub url: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<DateTime<Utc>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, product_id, url, event_types, enabled, disabled_reason, failing_since, \
     previous_secret_expires_at, created_at";

fn endpoint(row: &Row) -> Endpoint {
    Endpoint {
        id: row.get(0),
        product_id: row.get(1),
        url: row.get(2),
        event_types: row.get(3),
        enabled: row.get(4),
        disabled_reason: row.get(5),
        failing_since: row.get(6),
        previous_secret_expires_at: row.get(7),
        created_at: row.get(8),
    }
}

/// Checks a subscription list: exact known types, `prefix.*` of a known family, or `*`.
pub fn parse_event_types(list: &[String]) -> Result<Vec<String>, EndpointError> {
    let mut out = Vec::new();
    for item in list.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let known = item == "*"
            || EventType::parse(item).is_some()
            || item
                .strip_suffix(".*")
                .is_some_and(|prefix| FAMILIES.contains(&prefix));
        if !known {
            return Err(EndpointError::BadEventType(item.to_owned()));
        }
        if !out.iter().any(|s| s == item) {
            out.push(item.to_owned());
        }
    }
    if out.is_empty() {
        return Err(EndpointError::NoEventTypes);
    }
    Ok(out)
}

/// Checks a URL against the address policy as it resolves now (deliveries check again at
/// connect time): https anywhere public, http only into the operator's allowed networks.
pub async fn check_url(url: &str, policy: &AddressPolicy) -> Result<reqwest::Url, EndpointError> {
    let parsed = reqwest::Url::parse(url).map_err(|_| EndpointError::BadUrl(url.to_owned()))?;
    match (parsed.scheme(), parsed.host_str()) {
        ("http" | "https", Some(host)) if !host.is_empty() => {}
        _ => return Err(EndpointError::BadUrl(url.to_owned())),
    }
    check_addresses(&parsed, policy, true).await?;
    Ok(parsed)
}

/// Checks every address `url`'s host stands for against the policy, and that plain http goes
/// only into the allowed networks. IP literals are checked as they are; names are resolved only
/// when `resolve_names` (deliveries leave https names to the guarded resolver, which checks the
/// address actually connected to).
pub async fn check_addresses(
    url: &reqwest::Url,
    policy: &AddressPolicy,
    resolve_names: bool,
) -> Result<(), EndpointError> {
    let host = url.host_str().unwrap_or_default().to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) if resolve_names => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|_| EndpointError::Unresolvable(host.clone()))?
            .map(|a| a.ip())
            .collect(),
        Err(_) => return Ok(()),
    };
    if addresses.is_empty() {
        return Err(EndpointError::Unresolvable(host));
    }
    for address in &addresses {
        if let Err(reason) = policy.check(*address) {
            return Err(EndpointError::Blocked {
                host,
                address: *address,
                reason: reason.as_str(),
            });
        }
    }
    if url.scheme() == "http" && !addresses.iter().all(|a| policy.explicitly_allowed(*a)) {
        return Err(EndpointError::PlainHttp(host));
    }
    Ok(())
}

/// The endpoints stored in PostgreSQL.
#[derive(Clone)]
pub struct Endpoints {
    pool: Pool,
}

impl Endpoints {
    pub fn new(pool: Pool) -> Self {
        Endpoints { pool }
    }

    /// Creates an endpoint; returns it and its signing secret (shown only this once).
    pub async fn create(
        &self,
        policy: &AddressPolicy,
        product_id: Uuid,
        url: &str,
        event_types: &[String],
    ) -> Result<(Endpoint, SigningSecret), EndpointError> {
        let event_types = parse_event_types(event_types)?;
        let url = check_url(url, policy).await?;
        let secret = SigningSecret::generate()?;
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                &format!(
                    "INSERT INTO webhook_endpoints (id, product_id, url, event_types, secret)
                     VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
                ),
                &[
                    &Uuid::now_v7(),
                    &product_id,
                    &url.as_str(),
                    &event_types,
                    &secret.reveal(),
                ],
            )
            .await
            .map_err(|e| match e.code() {
                Some(code) if *code == SqlState::FOREIGN_KEY_VIOLATION => {
                    EndpointError::ProductNotFound(product_id)
                }
                _ => e.into(),
            })?;
        Ok((endpoint(&row), secret))
    }

    /// Endpoints (of one product, when given) in creation order, one page read by PostgreSQL.
    pub async fn list(
        &self,
        product_id: Option<Uuid>,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, EndpointError> {
        self.list_in(None, product_id, page).await
    }

    /// [`Endpoints::list`] of the products in `visible` (every product when `None`).
    pub async fn list_in(
        &self,
        visible: Option<&[Uuid]>,
        product_id: Option<Uuid>,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, EndpointError> {
        let client = self.pool.get().await?;
        let (at, id) = page.after_parts();
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM webhook_endpoints
                      WHERE ($1::uuid IS NULL OR product_id = $1)
                        AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3))
                        AND ($6::uuid[] IS NULL OR product_id = ANY($6))
                      ORDER BY created_at, id OFFSET $4 LIMIT $5"
                ),
                &[&product_id, &at, &id, &page.offset, &page.fetch(), &visible],
            )
            .await?;
        let endpoints = rows.iter().map(endpoint).collect();
        Ok(Page::of(endpoints, page, |e: &Endpoint| Cursor {
            at: e.created_at,
            id: e.id,
        }))
    }

    pub async fn get(&self, id: Uuid) -> Result<Endpoint, EndpointError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM webhook_endpoints WHERE id = $1"),
                &[&id],
            )
            .await?;
        row.as_ref()
            .map(endpoint)
            .ok_or(EndpointError::NotFound(id))
    }

    /// Enables (clearing the failure record) or disables an endpoint.
    pub async fn set_enabled(
        &self,
        id: Uuid,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<Endpoint, EndpointError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE webhook_endpoints
                        SET enabled = $2, disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END,
                            failing_since = CASE WHEN $2 THEN NULL ELSE failing_since END,
                            updated_at = now()
                      WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[&id, &enabled, &reason],
            )
            .await?;
        row.as_ref()
            .map(endpoint)
            .ok_or(EndpointError::NotFound(id))
    }

    /// Issues a new secret; the current one keeps signing too for [`ROTATION_OVERLAP`].
    pub async fn rotate_secret(
        &self,
        id: Uuid,
    ) -> Result<(Endpoint, SigningSecret), EndpointError> {
        let secret = SigningSecret::generate()?;
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE webhook_endpoints
                        SET previous_secret = secret, secret = $2,
                            previous_secret_expires_at = now() + $3::text::interval,
                            updated_at = now()
                      WHERE id = $1 RETURNING {COLUMNS}"
                ),
                &[
                    &id,
                    &secret.reveal(),
                    &format!("{} seconds", ROTATION_OVERLAP.num_seconds()),
                ],
            )
            .await?;
        let endpoint = row
            .as_ref()
            .map(endpoint)
            .ok_or(EndpointError::NotFound(id))?;
        Ok((endpoint, secret))
    }
}

/// The secrets that sign a delivery now: the current one, and the previous one until it expires.
pub fn signing_secrets(
    current: &str,
    previous: Option<&str>,
    previous_expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<SigningSecret>, SigningError> {
    let mut secrets = vec![SigningSecret::parse(current)?];
    if let (Some(previous), Some(until)) = (previous, previous_expires_at)
        && now < until
    {
        secrets.push(SigningSecret::parse(previous)?);
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn event_types_are_exact_prefixes_or_everything() {
        assert_eq!(
            parse_event_types(&types(&[
                "conversation.rating, product.*",
                "*",
                "product.*"
            ]))
            .unwrap(),
            types(&["conversation.rating", "product.*", "*"])
        );
        for bad in [
            "conversation.ratings",
            "conv.*",
            "conversation",
            "anything.*",
        ] {
            assert!(
                matches!(
                    parse_event_types(&types(&[bad])),
                    Err(EndpointError::BadEventType(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_event_types(&types(&[" , "])),
            Err(EndpointError::NoEventTypes)
        ));
    }

    #[tokio::test]
    async fn urls_are_checked_against_the_address_policy() {
        let closed = AddressPolicy::default();
        let local = AddressPolicy::parse("127.0.0.0/8").unwrap();
        assert!(matches!(
            check_url("http://127.0.0.1:9000/hook", &closed).await,
            Err(EndpointError::Blocked {
                reason: "loopback address",
                ..
            })
        ));
        assert!(
            check_url("http://127.0.0.1:9000/hook", &local)
                .await
                .is_ok()
        );
        assert!(matches!(
            check_url("https://169.254.169.254/latest", &local).await,
            Err(EndpointError::Blocked {
                reason: "cloud metadata address",
                ..
            })
        ));
        // A name that resolves into a blocked range is refused like the address itself.
        assert!(matches!(
            check_url("https://localhost/hook", &closed).await,
            Err(EndpointError::Blocked { .. })
        ));
        assert!(matches!(
            check_url("http://93.184.216.34/hook", &local).await,
            Err(EndpointError::PlainHttp(_))
        ));
        assert!(
            check_url("https://93.184.216.34/hook", &closed)
                .await
                .is_ok()
        );
        for bad in ["ftp://example.com/x", "not a url", "mailto:ops@example.com"] {
            assert!(
                matches!(check_url(bad, &closed).await, Err(EndpointError::BadUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_previous_secret_signs_until_it_expires() {
        let now = Utc::now();
        let a = SigningSecret::generate().unwrap().reveal();
        let b = SigningSecret::generate().unwrap().reveal();
        let later = now + chrono::Duration::hours(1);
        assert_eq!(
            signing_secrets(&a, Some(&b), Some(later), now)
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            signing_secrets(&a, Some(&b), Some(now), now).unwrap().len(),
            1
        );
        assert_eq!(signing_secrets(&a, None, None, now).unwrap().len(), 1);
    }
}
