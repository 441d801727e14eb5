//! `Authorization: Bearer gfa_...` on every API call, checked by one middleware before anything
//! else is read (a bad body never tells a caller without a key anything). A refusal says only
//! that a key is needed, never why the presented one failed.
//!
//! The same middleware applies the key's [`Scope`] once, for every route, before the handler
//! runs (so a refused change is neither made nor audited):
//! - a `read` key's change (any method but GET and HEAD) is answered 403 `forbidden`;
//! - an id in the path ([`subject_in_path`]) of a product the key does not see is answered 404,
//!   in the words a missing one gets, so ids of other products do not leak.
//!
//! Handlers do the rest through [`Admin`]: lists pass [`Admin::visible`] to their query, an id
//! named in a query or a body goes through [`Admin::check`] (or [`Admin::product_filter`]), and
//! what spans products takes [`EveryProduct`] (403 for a key limited to products).

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use gf_control::{Actor, AdminKey, AdminKeys, Scope, Subject};
use uuid::Uuid;

use crate::api::State;
use crate::error::ApiError;

/// The admin key a request was made with (set by [`require_admin`]), and what it may touch.
#[derive(Clone)]
pub struct Admin {
    key: AdminKey,
    scope: Scope,
}

impl Admin {
    fn new(key: AdminKey) -> Admin {
        let scope = key.scope();
        Admin { key, scope }
    }

    /// Who the audit log says made a change.
    pub fn actor(&self) -> Actor {
        Actor::AdminKey {
            id: self.key.id,
            name: self.key.name.clone(),
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The products this key sees, `None` for all: pass it to a list's query
    /// (`($n::uuid[] IS NULL OR product_id = ANY($n))`).
    pub fn visible(&self) -> Option<&[Uuid]> {
        self.scope.products()
    }

    /// 404 unless this key sees `subject` (an object of another product, or none at all).
    pub async fn check(&self, state: &State, subject: Subject) -> Result<(), ApiError> {
        check(&state.keys, &self.scope, subject).await
    }

    /// A list's `productId` filter, when this key sees that product (404 otherwise).
    pub fn product_filter(&self, asked: Option<Uuid>) -> Result<Option<Uuid>, ApiError> {
        match asked {
            Some(product) if !self.scope.sees(product) => {
                Err(ApiError::not_found(Subject::Product(product).not_found()))
            }
            _ => Ok(asked),
        }
    }
}

/// An admin key that sees every product: for what spans products (dead letters, the audit log,
/// making a product). A key limited to products gets 403.
pub struct EveryProduct(pub Admin);

/// 404 unless `scope` sees `subject`; the console's pages check with it too.
pub async fn check(keys: &AdminKeys, scope: &Scope, subject: Subject) -> Result<(), ApiError> {
    if keys.sees(scope, subject).await? {
        Ok(())
    } else {
        Err(ApiError::not_found(subject.not_found()))
    }
}

/// 403 unless `scope` may change things.
pub fn may_change(scope: &Scope) -> Result<(), ApiError> {
    if scope.may_change() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "this admin key is read-only: it cannot change anything",
        ))
    }
}

/// 403 unless `scope` sees every product.
pub fn every_product(scope: &Scope) -> Result<(), ApiError> {
    if scope.sees_every_product() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "this admin key is limited to some products: what spans products (dead letters, the audit log, a new product) needs a key over every product",
        ))
    }
}

/// Whether a request with `method` changes something: anything but GET and HEAD.
pub fn is_change(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// The object a path names by id: `/products/{id}…`, `/connections/{id}…`, `/endpoints/{id}…`,
/// `/deliveries/{id}…` or `/conversations/{id}…`, under `/api/v1` or not (the console's pages
/// use the same paths). A route added under one of these is checked without a line of its own.
pub fn subject_in_path(path: &str) -> Option<Subject> {
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    let mut segments = path.trim_start_matches('/').split('/');
    let kind = segments.next()?;
    let id = Uuid::parse_str(segments.next()?).ok()?;
    Some(match kind {
        "products" => Subject::Product(id),
        "connections" => Subject::Connection(id),
        "endpoints" => Subject::Endpoint(id),
        "deliveries" => Subject::Delivery(id),
        "conversations" => Subject::Conversation(id),
        _ => return None,
    })
}

/// Lets the request through only with a live admin key whose scope allows it; handlers then
/// read the key as [`Admin`].
pub async fn require_admin(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|v| v.trim().to_owned());
    let state = req.app_data::<web::Data<State>>().cloned();
    let (Some(presented), Some(state)) = (presented, state) else {
        return Err(ApiError::unauthorized().into());
    };
    let Some(key) = state
        .keys
        .authenticate(&presented)
        .await
        .map_err(ApiError::from)?
    else {
        return Err(ApiError::unauthorized().into());
    };
    let admin = Admin::new(key);
    if is_change(req.method()) {
        may_change(admin.scope()).inspect_err(|_| {
            tracing::info!(key = %admin.key.id, method = %req.method(), path = req.path(), "a read-only admin key was refused a change");
        })?;
    }
    if let Some(subject) = subject_in_path(req.path()) {
        admin.check(&state, subject).await?;
    }
    req.extensions_mut().insert(admin);
    next.call(req).await
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Admin, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Admin>()
                .cloned()
                .ok_or_else(ApiError::unauthorized),
        )
    }
}

impl FromRequest for EveryProduct {
    type Error = ApiError;
    type Future = Ready<Result<EveryProduct, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Admin>()
                .cloned()
                .ok_or_else(ApiError::unauthorized)
                .and_then(|admin| {
                    every_product(admin.scope())?;
                    Ok(EveryProduct(admin))
                }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_paths_are_subjects() {
        let id = Uuid::now_v7();
        for (path, subject) in [
            (
                format!("/api/v1/products/{id}/outcomes"),
                Subject::Product(id),
            ),
            (
                format!("/api/v1/connections/{id}/rotate"),
                Subject::Connection(id),
            ),
            (format!("/api/v1/endpoints/{id}"), Subject::Endpoint(id)),
            (format!("/deliveries/{id}/retry"), Subject::Delivery(id)),
            (format!("/conversations/{id}"), Subject::Conversation(id)),
        ] {
            assert_eq!(subject_in_path(&path), Some(subject), "{path}");
        }
        for path in [
            "/api/v1/products",
            "/api/v1/deliveries/retry",
            "/products/not-an-id",
            "/api/v1/audit",
            &format!("/api/v1/things/{id}"),
        ] {
            assert_eq!(subject_in_path(path), None, "{path}");
        }
    }

    #[test]
    fn only_gets_read() {
        assert!(!is_change(&Method::GET) && !is_change(&Method::HEAD));
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            assert!(is_change(&method), "{method}");
        }
    }
}
