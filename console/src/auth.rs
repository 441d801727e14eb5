//! `Authorization: Bearer gfa_...` on every API call, checked by one middleware before anything
//! else is read (a bad body never tells a caller without a key anything). A refusal says only
//! that a key is needed, never why the presented one failed.

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::AUTHORIZATION;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use gf_control::{Actor, AdminKey};

use crate::api::State;
use crate::error::ApiError;

/// The admin key a request was made with (set by [`require_admin`]).
#[derive(Clone)]
pub struct Admin(pub AdminKey);

impl Admin {
    pub fn actor(&self) -> Actor {
        Actor::AdminKey {
            id: self.0.id,
            name: self.0.name.clone(),
        }
    }
}

/// Lets the request through only with a live admin key, which handlers then read as [`Admin`].
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
    match state
        .keys
        .authenticate(&presented)
        .await
        .map_err(ApiError::from)?
    {
        Some(key) => {
            req.extensions_mut().insert(Admin(key));
            next.call(req).await
        }
        None => Err(ApiError::unauthorized().into()),
    }
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
