//! Products: create (a key over every product) and list (those the key sees).

use actix_web::web;
use gf_control::Product;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{Answer, Data, ErrorBody, Page, Paged, created};
use crate::auth::{Admin, EveryProduct};

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProduct {
    name: String,
}

#[utoipa::path(post, path = "/api/v1/products", request_body = CreateProduct, tag = "products",
    responses((status = 201, body = Product), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "The key is read-only, or limited to products (it could not see the new one)")))]
pub(super) async fn create_product(
    state: Data,
    EveryProduct(admin): EveryProduct,
    body: web::Json<CreateProduct>,
) -> Answer {
    created(
        &state
            .settings
            .create_product(&admin.actor(), &body.name)
            .await?,
    )
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Only products whose name holds this text (any case).
    q: Option<String>,
    /// 1 to 500; default 100.
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    offset: Option<u32>,
    /// The `nextCursor` of the previous page.
    after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/products", params(ProductQuery), tag = "products",
    responses((status = 200, body = Paged<Product>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn list_products(
    state: Data,
    admin: Admin,
    query: web::Query<ProductQuery>,
) -> Answer {
    let page = Page {
        limit: query.limit,
        offset: query.offset,
        after: query.after.clone(),
    };
    let products = state
        .settings
        .control
        .list_products_in(admin.visible(), query.q.as_deref(), &page.request()?)
        .await?;
    page.answer(products)
}
