//! The settings console at `/`: server-rendered pages ([`pages`]) over the same operations as
//! the API ([`crate::ops`]), behind a login with an admin key. Every page carries a strict
//! Content-Security-Policy (scripts and styles from `/assets` only); every form posts a CSRF
//! token; secrets appear only on the page that answers the action that made them.
//!
//! A key's scope applies as in the API ([`crate::auth`]): a `read` key sees every page without
//! the forms that change things, and is refused 403 if it posts one anyway; a key limited to
//! products sees only theirs (another product's id in a path is answered 404).

pub mod chart;
pub mod outcome_pages;
pub mod pages;
pub mod session;
pub mod traffic_pages;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;
use gf_control::{Actor, Scope};
use gf_runtime::paging::PageRequest;
use gf_schemas::Provider;
use gf_webhooks::delivery::{DeliveryScope, RetrySelection};
use maud::Markup;
use serde::Deserialize;
use uuid::Uuid;

use crate::api::State;
use crate::error::ApiError;
use gf_control::settings::Transition;
use session::{COOKIE, Session};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

type Data = web::Data<State>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home))
        .route("/assets/console.css", web::get().to(css))
        .route("/assets/console.js", web::get().to(js))
        .route("/login", web::post().to(login))
        .route("/logout", web::post().to(logout))
        .route("/products", web::get().to(products))
        .route("/products", web::post().to(create_product))
        .route("/products/{id}", web::get().to(product))
        .route(
            "/products/{id}/connections",
            web::post().to(create_connection),
        )
        .route("/products/{id}/webhooks", web::get().to(webhooks))
        .route("/products/{id}/outcomes", web::get().to(outcomes))
        .route("/conversations/{id}", web::get().to(conversation))
        .route("/products/{id}/endpoints", web::post().to(create_endpoint))
        .route("/products/{id}/retry-failed", web::post().to(retry_failed))
        .route(
            "/connections/{id}/{action}",
            web::post().to(connection_action),
        )
        .route(
            "/connections/{id}/secret/clear",
            web::post().to(clear_secret),
        )
        .route("/endpoints/{id}/{action}", web::post().to(endpoint_action))
        .route("/deliveries/{id}", web::get().to(attempts))
        .route("/deliveries/{id}/retry", web::post().to(retry_one))
        .route("/connections/{id}/requests", web::get().to(request_log))
        .route(
            "/connections/{id}/requests/rows",
            web::get().to(request_rows),
        )
        .route("/deadletters", web::get().to(deadletters))
        .route("/audit", web::get().to(audit));
}

/// A page with the console's security headers.
fn page(status: actix_web::http::StatusCode, markup: Markup) -> HttpResponse {
    let mut response = HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string());
    secure_headers(&mut response);
    response
}

fn secure_headers(response: &mut HttpResponse) {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

fn ok(markup: Markup) -> HttpResponse {
    page(actix_web::http::StatusCode::OK, markup)
}

fn redirect(to: &str) -> HttpResponse {
    let mut response = HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish();
    secure_headers(&mut response);
    response
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    let mut response = HttpResponse::Ok().content_type(content_type).body(body);
    secure_headers(&mut response);
    response
}

async fn css() -> HttpResponse {
    asset("text/css", include_str!("../../assets/console.css"))
}

async fn js() -> HttpResponse {
    asset("text/javascript", include_str!("../../assets/console.js"))
}

/// The logged-in caller: its session, who it acts as and what it may touch.
struct Caller {
    session: Session,
    actor: Actor,
    scope: Scope,
}

/// The caller of `req`, when its session is live and its key not revoked.
async fn caller(req: &HttpRequest, state: &State) -> Result<Option<Caller>, ApiError> {
    let Some(session) = req
        .cookie(COOKIE)
        .and_then(|c| state.sessions.get(c.value()))
    else {
        return Ok(None);
    };
    Ok(state.keys.live(session.key_id).await?.map(|key| Caller {
        session,
        scope: key.scope(),
        actor: Actor::AdminKey {
            id: key.id,
            name: key.name,
        },
    }))
}

/// Runs `f` for a logged-in caller that sees what the path names; everyone else is sent to the
/// login page.
async fn signed_in<F, Fut>(req: HttpRequest, state: Data, f: F) -> HttpResponse
where
    F: FnOnce(Caller, Data) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, ApiError>>,
{
    match caller(&req, &state).await {
        Ok(Some(caller)) => {
            if let Some(subject) = crate::auth::subject_in_path(req.path())
                && let Err(e) = crate::auth::check(&state.keys, &caller.scope, subject).await
            {
                return failure(e);
            }
            f(caller, state).await.unwrap_or_else(failure)
        }
        Ok(None) => redirect("/"),
        Err(e) => failure(e),
    }
}

/// A change posted from a form: the CSRF token must be the session's, and its key may change
/// things (the pages hide a read-only key's forms; this refuses one posted anyway).
async fn posted<F, Fut>(req: HttpRequest, state: Data, csrf: &str, f: F) -> HttpResponse
where
    F: FnOnce(Caller, Data) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, ApiError>>,
{
    with_csrf(req, state, csrf, |caller, state| async move {
        crate::auth::may_change(&caller.scope)?;
        f(caller, state).await
    })
    .await
}

/// A form posted with the session's CSRF token (logging out too, which any key may).
async fn with_csrf<F, Fut>(req: HttpRequest, state: Data, csrf: &str, f: F) -> HttpResponse
where
    F: FnOnce(Caller, Data) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse, ApiError>>,
{
    let csrf = csrf.to_owned();
    signed_in(req, state, |caller, state| async move {
        if !caller.session.csrf_matches(&csrf) {
            return Ok(page(
                actix_web::http::StatusCode::FORBIDDEN,
                pages::layout(
                    "Refused",
                    Some(&caller.session.csrf),
                    maud::html! { h1 { "Refused" } p.error { "This form is stale or was not sent from the console. Reload the page and try again." } },
                ),
            ));
        }
        f(caller, state).await
    })
    .await
}

fn failure(e: ApiError) -> HttpResponse {
    page(
        e.status,
        pages::layout(
            "Error",
            None,
            maud::html! { h1 { "That did not work" } p.error { (e.message) } p { a href="/products" { "Back" } } },
        ),
    )
}

async fn home(req: HttpRequest, state: Data) -> HttpResponse {
    match caller(&req, &state).await {
        Ok(Some(_)) => redirect("/products"),
        _ => ok(pages::login(None)),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(state: Data, form: web::Form<LoginForm>) -> HttpResponse {
    match state.keys.authenticate(&form.key).await {
        Ok(Some(key)) => {
            let id = state.sessions.start(key.id);
            let mut response = redirect("/products");
            if let Ok(value) =
                HeaderValue::from_str(&session::cookie(Some(&id), state.secure_cookies))
            {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Ok(None) => page(
            actix_web::http::StatusCode::UNAUTHORIZED,
            pages::login(Some("That key is not a live admin key.")),
        ),
        Err(e) => failure(e.into()),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(req: HttpRequest, state: Data, form: web::Form<CsrfForm>) -> HttpResponse {
    let cookie = req.cookie(COOKIE).map(|c| c.value().to_owned());
    with_csrf(req, state, &form.csrf, |_, state| async move {
        if let Some(id) = cookie {
            state.sessions.end(&id);
        }
        let mut response = redirect("/");
        if let Ok(value) = HeaderValue::from_str(&session::cookie(None, state.secure_cookies)) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
        Ok(response)
    })
    .await
}

#[derive(Deserialize)]
struct ProductsQuery {
    q: Option<String>,
    after: Option<String>,
}

/// The `after=` of a console list's "next page" link.
fn cursor(after: Option<&str>) -> Result<Option<gf_runtime::paging::Cursor>, ApiError> {
    after
        .map(|a| {
            a.parse().map_err(|e: gf_runtime::paging::BadCursor| {
                ApiError::invalid("after", e.to_string())
            })
        })
        .transpose()
}

/// Products per page of the list.
const PRODUCTS_PER_PAGE: i64 = 100;

async fn products(req: HttpRequest, state: Data, query: web::Query<ProductsQuery>) -> HttpResponse {
    let query = query.into_inner();
    signed_in(req, state, |caller, state| async move {
        let after = cursor(query.after.as_deref())?;
        let request = PageRequest {
            after,
            ..PageRequest::first(PRODUCTS_PER_PAGE)
        };
        let list = state
            .settings
            .control
            .list_products_in(caller.scope.products(), query.q.as_deref(), &request)
            .await?;
        let search = query.q.as_deref().unwrap_or_default();
        let next = list.next.map(|cursor| {
            let mut url = url::form_urlencoded::Serializer::new(String::new());
            if !search.is_empty() {
                url.append_pair("q", search);
            }
            url.append_pair("after", &cursor.to_string());
            format!("/products?{}", url.finish())
        });
        let can_create = caller.scope.may_change() && caller.scope.sees_every_product();
        Ok(ok(pages::products(&pages::ProductsPage {
            csrf: &caller.session.csrf,
            can_create,
            products: &list.items,
            search,
            next,
            error: None,
        })))
    })
    .await
}

#[derive(Deserialize)]
struct ProductForm {
    csrf: String,
    name: String,
}

async fn create_product(
    req: HttpRequest,
    state: Data,
    form: web::Form<ProductForm>,
) -> HttpResponse {
    let form = form.into_inner();
    posted(req, state, &form.csrf, |caller, state| async move {
        crate::auth::every_product(&caller.scope)?;
        let product = state
            .settings
            .create_product(&caller.actor, &form.name)
            .await?;
        Ok(redirect(&format!("/products/{}", product.id)))
    })
    .await
}

async fn product(req: HttpRequest, state: Data, id: web::Path<Uuid>) -> HttpResponse {
    let id = *id;
    signed_in(req, state, |caller, state| async move {
        let product = find_product(&state, id).await?;
        let connections = state
            .settings
            .control
            .list_connections(Some(id), &PageRequest::everything())
            .await?;
        let overview = crate::api::overview(&state, id, None).await?;
        Ok(ok(pages::product(&pages::ProductPage {
            csrf: &caller.session.csrf,
            can_change: caller.scope.may_change(),
            product: &product,
            connections: &connections.items,
            error: None,
            overview: Some(traffic_pages::overview(&overview)),
        })))
    })
    .await
}

#[derive(Deserialize)]
struct OutcomesQuery {
    verdict: Option<String>,
    after: Option<String>,
}

/// Conversations per page on the Outcomes page.
const CONVERSATIONS_PER_PAGE: i64 = 100;

async fn outcomes(
    req: HttpRequest,
    state: Data,
    id: web::Path<Uuid>,
    query: web::Query<OutcomesQuery>,
) -> HttpResponse {
    let (id, query) = (*id, query.into_inner());
    signed_in(req, state, |caller, state| async move {
        let product = find_product(&state, id).await?;
        let verdict = match query.verdict.as_deref().filter(|v| !v.is_empty()) {
            Some(v) => Some(
                v.parse::<gf_schemas::outcome::Verdict>()
                    .map_err(|_| ApiError::invalid("verdict", format!("{v:?} is not a verdict")))?,
            ),
            None => None,
        };
        let after = cursor(query.after.as_deref())?;
        let outcomes = &state.settings.outcomes;
        let totals = outcomes.product(id, None, None).await?;
        let filter = gf_control::outcomes::OutcomeFilter {
            product: Some(id),
            verdict,
            ..Default::default()
        };
        let request = PageRequest {
            after,
            ..PageRequest::first(CONVERSATIONS_PER_PAGE)
        };
        let conversations = outcomes.list(&filter, &request).await?;
        let next = conversations.next.map(|cursor| {
            let verdict = verdict.map_or(String::new(), |v| format!("verdict={}&", v.as_str()));
            format!("/products/{id}/outcomes?{verdict}after={cursor}")
        });
        Ok(ok(outcome_pages::outcomes(&outcome_pages::OutcomesPage {
            csrf: &caller.session.csrf,
            product: &product,
            totals: &totals,
            conversations: &conversations.items,
            verdict,
            next,
        })))
    })
    .await
}

async fn conversation(req: HttpRequest, state: Data, id: web::Path<Uuid>) -> HttpResponse {
    let id = *id;
    signed_in(req, state, |caller, state| async move {
        let detail = state
            .settings
            .outcomes
            .conversation(id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no conversation with id {id}")))?;
        Ok(ok(outcome_pages::conversation(
            &caller.session.csrf,
            &detail,
        )))
    })
    .await
}

async fn request_log(req: HttpRequest, state: Data, id: web::Path<Uuid>) -> HttpResponse {
    let id = *id;
    signed_in(req, state, |caller, state| async move {
        let entries = crate::api::requests(&state, id).await?;
        let connection = state.settings.control.connection(id).await?;
        Ok(ok(traffic_pages::request_log(
            &caller.session.csrf,
            caller.scope.may_change(),
            &connection,
            &entries,
        )))
    })
    .await
}

/// The log's rows alone, for the page's own polling.
async fn request_rows(req: HttpRequest, state: Data, id: web::Path<Uuid>) -> HttpResponse {
    let id = *id;
    signed_in(req, state, |_, state| async move {
        let entries = crate::api::requests(&state, id).await?;
        Ok(ok(traffic_pages::request_rows(&entries)))
    })
    .await
}

async fn find_product(state: &State, id: Uuid) -> Result<gf_control::Product, ApiError> {
    Ok(state.settings.control.product(id).await?)
}

#[derive(Deserialize)]
struct ConnectionForm {
    csrf: String,
    provider: String,
    secret: Option<String>,
}

async fn create_connection(
    req: HttpRequest,
    state: Data,
    id: web::Path<Uuid>,
    form: web::Form<ConnectionForm>,
) -> HttpResponse {
    let (id, form) = (*id, form.into_inner());
    posted(req, state, &form.csrf, |caller, state| async move {
        let provider: Provider =
            form.provider
                .parse()
                .map_err(|e: gf_schemas::provider::UnknownProvider| {
                    ApiError::invalid("provider", e.to_string())
                })?;
        let secret = form
            .secret
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let shown = state
            .settings
            .create_connection(&caller.actor, id, provider, secret)
            .await?;
        Ok(ok(pages::shown_once(
            &caller.session.csrf,
            "Source created",
            "The destination URL for this connection.",
            &shown.url,
            &format!("/products/{id}"),
            Some(provider),
        )))
    })
    .await
}

#[derive(Deserialize)]
struct SecretForm {
    csrf: String,
    secret: Option<String>,
}

async fn connection_action(
    req: HttpRequest,
    state: Data,
    path: web::Path<(Uuid, String)>,
    form: web::Form<SecretForm>,
) -> HttpResponse {
    let ((id, action), form) = (path.into_inner(), form.into_inner());
    posted(req, state, &form.csrf, |caller, state| async move {
        let connection = state.settings.control.connection(id).await?;
        let back = format!("/products/{}", connection.product_id);
        match action.as_str() {
            "rotate" => {
                let shown = state.settings.rotate(&caller.actor, id).await?;
                return Ok(ok(pages::shown_once(
                    &caller.session.csrf,
                    "URL rotated",
                    "The new destination URL; the old one is refused from now on.",
                    &shown.url,
                    &back,
                    Some(connection.provider),
                )));
            }
            "pause" => {
                state
                    .settings
                    .transition(&caller.actor, id, Transition::Pause)
                    .await?;
            }
            "resume" => {
                state
                    .settings
                    .transition(&caller.actor, id, Transition::Resume)
                    .await?;
            }
            "disconnect" => {
                state
                    .settings
                    .transition(&caller.actor, id, Transition::Disconnect)
                    .await?;
            }
            "show-bodies" | "hide-bodies" => {
                let on = action == "show-bodies";
                state.settings.set_log_bodies(&caller.actor, id, on).await?;
                return Ok(redirect(&format!("/connections/{id}/requests")));
            }
            "secret" => {
                let secret = form.secret.unwrap_or_default();
                state
                    .settings
                    .set_secret(&caller.actor, id, Some(secret.trim()))
                    .await?;
            }
            _ => return Ok(redirect(&back)),
        }
        Ok(redirect(&back))
    })
    .await
}

async fn clear_secret(
    req: HttpRequest,
    state: Data,
    id: web::Path<Uuid>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let id = *id;
    posted(req, state, &form.csrf, |caller, state| async move {
        let connection = state.settings.set_secret(&caller.actor, id, None).await?;
        Ok(redirect(&format!("/products/{}", connection.product_id)))
    })
    .await
}

async fn webhooks(req: HttpRequest, state: Data, id: web::Path<Uuid>) -> HttpResponse {
    let id = *id;
    signed_in(req, state, |caller, state| async move {
        let product = find_product(&state, id).await?;
        let endpoints = state
            .settings
            .endpoints
            .list(Some(id), &PageRequest::everything())
            .await?
            .items;
        let scope = DeliveryScope {
            product: Some(id),
            per_endpoint: Some(50),
            ..DeliveryScope::default()
        };
        let deliveries = state
            .settings
            .deliveries(scope, &PageRequest::everything())
            .await?
            .items;
        Ok(ok(pages::webhooks(&pages::WebhooksPage {
            csrf: &caller.session.csrf,
            can_change: caller.scope.may_change(),
            product: &product,
            endpoints: &endpoints,
            deliveries: &deliveries,
            error: None,
        })))
    })
    .await
}

#[derive(Deserialize)]
struct EndpointForm {
    csrf: String,
    url: String,
    events: String,
}

async fn create_endpoint(
    req: HttpRequest,
    state: Data,
    id: web::Path<Uuid>,
    form: web::Form<EndpointForm>,
) -> HttpResponse {
    let (id, form) = (*id, form.into_inner());
    posted(req, state, &form.csrf, |caller, state| async move {
        let events: Vec<String> = form
            .events
            .split(',')
            .map(|e| e.trim().to_owned())
            .filter(|e| !e.is_empty())
            .collect();
        let shown = state
            .settings
            .create_endpoint(&caller.actor, id, form.url.trim(), &events)
            .await?;
        Ok(ok(pages::shown_once(
            &caller.session.csrf,
            "Endpoint created",
            "The signing secret: verify each delivery's signature with it.",
            &shown.secret,
            &format!("/products/{id}/webhooks"),
            None,
        )))
    })
    .await
}

async fn endpoint_action(
    req: HttpRequest,
    state: Data,
    path: web::Path<(Uuid, String)>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let (id, action) = path.into_inner();
    posted(req, state, &form.csrf, |caller, state| async move {
        let endpoint = state.settings.endpoints.get(id).await?;
        let back = format!("/products/{}/webhooks", endpoint.product_id);
        match action.as_str() {
            "test" => {
                let outcome = state
                    .settings
                    .test_endpoint(&caller.actor, id, "conversation.started")
                    .await?;
                Ok(ok(pages::test_result(
                    &caller.session.csrf,
                    &back,
                    &outcome,
                )))
            }
            "enable" | "disable" => {
                state
                    .settings
                    .set_endpoint_enabled(&caller.actor, id, action == "enable")
                    .await?;
                Ok(redirect(&back))
            }
            "rotate-secret" => {
                let shown = state
                    .settings
                    .rotate_endpoint_secret(&caller.actor, id)
                    .await?;
                Ok(ok(pages::shown_once(
                    &caller.session.csrf,
                    "Signing secret rotated",
                    "The new signing secret; the previous one keeps signing for 24 hours.",
                    &shown.secret,
                    &back,
                    None,
                )))
            }
            _ => Ok(redirect(&back)),
        }
    })
    .await
}

async fn retry_failed(
    req: HttpRequest,
    state: Data,
    id: web::Path<Uuid>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let id = *id;
    posted(req, state, &form.csrf, |caller, state| async move {
        let since = Utc::now() - chrono::Duration::days(7);
        let endpoints = state
            .settings
            .endpoints
            .list(Some(id), &PageRequest::everything())
            .await?;
        for endpoint in endpoints.items {
            state
                .settings
                .retry(
                    &caller.actor,
                    RetrySelection::FailedSince {
                        endpoint: Some(endpoint.id),
                        since,
                    },
                )
                .await?;
        }
        Ok(redirect(&format!("/products/{id}/webhooks")))
    })
    .await
}

async fn attempts(req: HttpRequest, state: Data, id: web::Path<Uuid>) -> HttpResponse {
    let id = *id;
    signed_in(req, state, |caller, state| async move {
        let attempts = state.settings.attempts(id).await?.ok_or_else(|| {
            ApiError::new(
                actix_web::http::StatusCode::NOT_FOUND,
                "not_found",
                format!("no delivery with id {id}"),
            )
        })?;
        Ok(ok(pages::attempts(
            &caller.session.csrf,
            caller.scope.may_change(),
            &id,
            &attempts,
        )))
    })
    .await
}

async fn retry_one(
    req: HttpRequest,
    state: Data,
    id: web::Path<Uuid>,
    form: web::Form<CsrfForm>,
) -> HttpResponse {
    let id = *id;
    posted(req, state, &form.csrf, |caller, state| async move {
        state
            .settings
            .retry(&caller.actor, RetrySelection::One(id))
            .await?;
        Ok(redirect(&format!("/deliveries/{id}")))
    })
    .await
}

async fn deadletters(req: HttpRequest, state: Data) -> HttpResponse {
    signed_in(req, state, |caller, state| async move {
        crate::auth::every_product(&caller.scope)?;
        let letters =
            crate::api::read_deadletters(&state, crate::api::window(Default::default())).await?;
        Ok(ok(pages::deadletters(&caller.session.csrf, &letters)))
    })
    .await
}

async fn audit(req: HttpRequest, state: Data) -> HttpResponse {
    signed_in(req, state, |caller, state| async move {
        crate::auth::every_product(&caller.scope)?;
        let entries = state.settings.audit.newest(500).await?;
        Ok(ok(pages::audit(&caller.session.csrf, &entries)))
    })
    .await
}
