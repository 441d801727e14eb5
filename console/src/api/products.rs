//! Products: create and list.

use actix_web::web;
use gf_control::Product;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Answer, Data, ErrorBody, Page, Paged, created};
use crate::auth::Admin;

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProduct {
    name: String,
}

#[utoipa::path(post, path = "/api/v1/products", request_body = CreateProduct, tag = "products",
    responses((status = 201, body = Product), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn create_product(
    state: Data,
    admin: Admin,
    body: web::Json<CreateProduct>,
) -> Answer {
    created(
        &state
            .settings
            .create_product(&admin.actor(), &body.name)
            .await?,
    )
}

#[utoipa::path(get, path = "/api/v1/products", params(Page), tag = "products",
    responses((status = 200, body = Paged<Product>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_products(state: Data, _: Admin, page: web::Query<Page>) -> Answer {
    let products = state
        .settings
        .control
        .list_products(&page.request()?)
        .await?;
    page.answer(products)
}
