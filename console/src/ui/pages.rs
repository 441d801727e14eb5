//! The console's pages, pure: data in, HTML out. maud escapes every interpolated string, so a
//! product named `<img src=x onerror=...>` is shown as text.

use gf_control::AuditEntry;
use gf_control::{Connection, ConnectionStatus, Product};
use gf_schemas::Provider;
use gf_schemas::deadletter::DeadLetter;
use gf_webhooks::delivery::{AttemptView, DeliveryView, TestOutcome};
use gf_webhooks::endpoints::Endpoint;
use maud::{DOCTYPE, Markup, html};

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    gf_schemas::time::format(t)
}

fn maybe_time(t: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.as_ref().map(time).unwrap_or_else(|| "—".into())
}

/// The page frame; `csrf` is `None` when logged out.
pub fn layout(title: &str, csrf: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · gf settings" }
                link rel="stylesheet" href="/assets/console.css";
            }
            body {
                header {
                    strong { "gf settings" }
                    @if let Some(csrf) = csrf {
                        a href="/products" { "Products" }
                        a href="/deadletters" { "Dead letters" }
                        a href="/audit" { "Audit log" }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
                script src="/assets/console.js" {}
            }
        }
    }
}

pub fn login(error: Option<&str>) -> Markup {
    layout(
        "Log in",
        None,
        html! {
            h1 { "Log in" }
            div.panel {
                p { "Use an admin key (" code { "gf admin-key create --name NAME" } " prints one)." }
                @if let Some(error) = error { p.error { (error) } }
                form method="post" action="/login" {
                    label for="key" { "Admin key" } " "
                    input #key type="password" name="key" autocomplete="off" required size="60";
                    " "
                    button type="submit" { "Log in" }
                }
            }
        },
    )
}

/// A hidden CSRF field and a one-button form.
fn action(csrf: &str, path: &str, label: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(path) data-confirm=[confirm] {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { (label) }
        }
    }
}

/// `can_create`: the key may make a product (an `admin` key over every product).
pub struct ProductsPage<'a> {
    pub csrf: &'a str,
    pub can_create: bool,
    pub products: &'a [Product],
    /// The search the list answers ("" for none).
    pub search: &'a str,
    /// The next page's link, when there is one.
    pub next: Option<String>,
    pub error: Option<&'a str>,
}

pub fn products(page: &ProductsPage<'_>) -> Markup {
    let (csrf, can_create, products, error) =
        (page.csrf, page.can_create, page.products, page.error);
    layout(
        "Products",
        Some(csrf),
        html! {
            h1 { "Products" }
            @if let Some(error) = error { p.error { (error) } }
            form #search method="get" action="/products" {
                input name="q" type="search" value=(page.search) placeholder="Search by name" maxlength="200";
                " " button type="submit" { "Search" }
            }
            @if products.is_empty() && !page.search.is_empty() { p { "No product's name holds “" (page.search) "”." } }
            table {
                tr { th { "Name" } th { "Created" } th {} }
                @for p in products {
                    tr {
                        td { a href={ "/products/" (p.id) } { (p.name) } }
                        td { (time(&p.created_at)) }
                        td { a href={ "/products/" (p.id) "/webhooks" } { "Webhooks" } }
                    }
                }
            }
            @if let Some(next) = &page.next { p { a #next href=(next) { "More products →" } } }
            @if can_create {
                h2 { "New product" }
                form method="post" action="/products" {
                    input type="hidden" name="csrf" value=(csrf);
                    input name="name" required maxlength="200" placeholder="Support bot";
                    " " button type="submit" { "Create product" }
                }
            }
        },
    )
}

fn provider_card(provider: Provider) -> (&'static str, &'static str) {
    match provider {
        Provider::Amplitude => (
            "Amplitude",
            "Event Streaming or Webhook destination; Amplitude SDKs with server_url",
        ),
        Provider::Segment => ("Segment", "Webhooks (Actions) destination; analytics SDKs"),
        Provider::Posthog => ("PostHog", "CDP HTTP Webhook destination; PostHog SDKs"),
        Provider::Api => ("Public events API", "Post events from your own backend"),
    }
}

/// How to paste the URL into the sender, step by step.
fn setup_steps(provider: Provider) -> Markup {
    html! {
        ol {
            @match provider {
                Provider::Amplitude => {
                    li { "In Amplitude, open Data → Catalog → Destinations and pick Webhook (or Event Streaming)." }
                    li { "Create a sync, paste the URL as the Webhook URL, keep the default payload." }
                    li { "Turn on Send Events (Send Users is accepted too) and enable the sync." }
                }
                Provider::Segment => {
                    li { "In Segment, add the Webhooks (Actions) destination to your source." }
                    li { "Paste the URL in a Send mapping; POST, PUT or PATCH, batched or not." }
                    li { "Enable the destination." }
                }
                Provider::Posthog => {
                    li { "In PostHog, open Data pipelines → Destinations and add HTTP Webhook." }
                    li { "Paste the URL, keep the default body, and enable it." }
                    li { "Or set a PostHog SDK's host to the URL." }
                }
                Provider::Api => {
                    li { "POST " code { "{\"events\": [...]}" } " with canonical field names to the URL," }
                    li { "or POST to " code { "/v1/events" } " with " code { "Authorization: Bearer <the token at the end of the URL>" } "." }
                }
            }
            li { "The connection turns Active on its first accepted event." }
        }
    }
}

pub struct ProductPage<'a> {
    pub csrf: &'a str,
    /// Whether the key may change things: a read-only key gets no forms.
    pub can_change: bool,
    pub product: &'a Product,
    pub connections: &'a [Connection],
    pub error: Option<&'a str>,
    /// What flowed in the last 24 hours ([`super::traffic_pages::overview`]).
    pub overview: Option<Markup>,
}

pub fn product(page: &ProductPage<'_>) -> Markup {
    let csrf = page.csrf;
    let id = page.product.id;
    layout(
        &page.product.name,
        Some(csrf),
        html! {
            h1 { (page.product.name) }
            p { a href={ "/products/" (id) "/outcomes" } { "Outcomes →" } " · " a href={ "/products/" (id) "/webhooks" } { "Webhooks →" } }
            @if let Some(error) = page.error { p.error { (error) } }
            @if let Some(overview) = &page.overview { (overview) }
            @if page.can_change {
                h2 { "Connect → Events" }
                div.cards {
                    @for provider in Provider::all() {
                        @let (name, what) = provider_card(provider);
                        div.card data-provider=(provider.as_str()) {
                            h3 { (name) }
                            p { (what) }
                            form method="post" action={ "/products/" (id) "/connections" } {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="provider" value=(provider.as_str());
                                input name="secret" type="password" placeholder="Shared secret (optional)" autocomplete="off";
                                " " button type="submit" { "Create source" }
                            }
                        }
                    }
                }
            }
            h2 { "Connections" }
            table #connections {
                tr { th { "Provider" } th { "Status" } th { "First event" } th { "Last event" } th { "Shared secret" } th { "Actions" } }
                @for c in page.connections {
                    tr data-connection=(c.id) {
                        td { (c.provider.as_str()) }
                        td { span class={ "status " (c.status.as_str()) } { (c.status.as_str()) } }
                        td { (maybe_time(&c.first_event_at)) }
                        td { (maybe_time(&c.last_event_at)) }
                        td {
                            (if c.has_shared_secret { "required" } else { "none" })
                            @if page.can_change && c.status != ConnectionStatus::Disconnected {
                                form method="post" action={ "/connections/" (c.id) "/secret" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input name="secret" type="password" placeholder="New shared secret" autocomplete="off";
                                    button type="submit" { "Set" }
                                }
                                @if c.has_shared_secret {
                                    (action(csrf, &format!("/connections/{}/secret/clear", c.id), "Clear secret", None))
                                }
                            }
                        }
                        td {
                            @if page.can_change && c.status != ConnectionStatus::Disconnected {
                                (action(csrf, &format!("/connections/{}/rotate", c.id), "Rotate URL", Some("The current URL stops working at once. Rotate?")))
                                " "
                                @if c.status == ConnectionStatus::Paused {
                                    (action(csrf, &format!("/connections/{}/resume", c.id), "Resume", None))
                                } @else {
                                    (action(csrf, &format!("/connections/{}/pause", c.id), "Pause", None))
                                }
                                " "
                                (action(csrf, &format!("/connections/{}/disconnect", c.id), "Disconnect", Some("Disconnect for good? The URL stops working and cannot be rotated or resumed.")))
                            }
                        }
                    }
                }
            }
        },
    )
}

/// A secret shown once, right after the answer that made it.
pub fn shown_once(
    csrf: &str,
    title: &str,
    what: &str,
    value: &str,
    back: &str,
    steps: Option<Provider>,
) -> Markup {
    layout(
        title,
        Some(csrf),
        html! {
            h1 { (title) }
            div.once {
                p { strong { (what) } " It is shown only now: copy it before you leave this page." }
                p { code #secret { (value) } " " button type="button" data-copy="secret" { "Copy" } }
            }
            @if let Some(provider) = steps { h2 { "Set it up" } (setup_steps(provider)) }
            p { a href=(back) { "Done" } }
        },
    )
}

pub struct WebhooksPage<'a> {
    pub csrf: &'a str,
    /// Whether the key may change things: a read-only key gets no forms.
    pub can_change: bool,
    pub product: &'a Product,
    pub endpoints: &'a [Endpoint],
    pub deliveries: &'a [DeliveryView],
    pub error: Option<&'a str>,
}

pub fn webhooks(page: &WebhooksPage<'_>) -> Markup {
    let csrf = page.csrf;
    let id = page.product.id;
    layout(
        "Webhooks",
        Some(csrf),
        html! {
            h1 { "Webhooks · " (page.product.name) }
            p { a href={ "/products/" (id) } { "← Connections" } }
            @if let Some(error) = page.error { p.error { (error) } }
            h2 { "Endpoints" }
            table #endpoints {
                tr { th { "URL" } th { "Events" } th { "State" } th { "Actions" } }
                @for e in page.endpoints {
                    tr data-endpoint=(e.id) {
                        td { code { (e.url) } }
                        td { (e.event_types.join(", ")) }
                        td {
                            @if e.enabled { "enabled" } @else { "disabled" @if let Some(r) = &e.disabled_reason { ": " (r) } }
                        }
                        td {
                            @if page.can_change {
                                (action(csrf, &format!("/endpoints/{}/test", e.id), "Test Delivery", None)) " "
                                @if e.enabled {
                                    (action(csrf, &format!("/endpoints/{}/disable", e.id), "Disable", None))
                                } @else {
                                    (action(csrf, &format!("/endpoints/{}/enable", e.id), "Enable", None))
                                }
                                " "
                                (action(csrf, &format!("/endpoints/{}/rotate-secret", e.id), "Rotate secret", Some("Issue a new signing secret? The old one keeps signing for 24 hours.")))
                            }
                        }
                    }
                }
            }
            @if page.can_change {
                h2 { "New endpoint" }
                form method="post" action={ "/products/" (id) "/endpoints" } {
                    input type="hidden" name="csrf" value=(csrf);
                    input name="url" type="url" required placeholder="https://example.com/webhooks" size="40";
                    " "
                    input name="events" required value="*" placeholder="conversation.*, product.quality_index" size="30";
                    " " button type="submit" { "Create endpoint" }
                }
            }
            h2 { "Webhook logs" }
            @if page.can_change {
                form method="post" action={ "/products/" (id) "/retry-failed" } {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Retry failed deliveries (last 7 days)" }
                }
            }
            table #deliveries {
                tr { th { "Created" } th { "Event" } th { "Status" } th { "Attempts" } th { "Last answer" } th {} }
                @for d in page.deliveries {
                    tr data-delivery=(d.id) {
                        td { (time(&d.created_at)) }
                        td { (d.event_type) }
                        td { (d.status) }
                        td { (d.attempts) }
                        td {
                            @match (&d.last_status_code, &d.last_error) {
                                (Some(code), _) => { "HTTP " (code) }
                                (None, Some(error)) => { (error) }
                                (None, None) => { "—" }
                            }
                        }
                        td { a href={ "/deliveries/" (d.id) } { "Attempts" } }
                    }
                }
            }
        },
    )
}

pub fn test_result(csrf: &str, back: &str, outcome: &TestOutcome) -> Markup {
    layout(
        "Test Delivery",
        Some(csrf),
        html! {
            h1 { "Test Delivery" }
            div.panel #test-result {
                @match outcome.status {
                    Some(status) => p { "Status " strong #test-status { (status) } " in " span #test-latency { (outcome.latency_ms) } " ms" },
                    None => p.error { "No answer (" (outcome.error_class.unwrap_or("error")) "): " (outcome.error.clone().unwrap_or_default()) },
                }
                h3 { "Headers" }
                pre #test-headers { @for (k, v) in &outcome.headers { (k) ": " (v) "\n" } }
                h3 { "Body" }
                pre #test-body { (outcome.body.clone().unwrap_or_default()) }
            }
            p { a href=(back) { "Back to webhooks" } }
        },
    )
}

pub fn attempts(
    csrf: &str,
    can_change: bool,
    delivery: &uuid::Uuid,
    attempts: &[AttemptView],
) -> Markup {
    layout(
        "Attempts",
        Some(csrf),
        html! {
            h1 { "Delivery " code { (delivery) } }
            @if can_change { (action(csrf, &format!("/deliveries/{delivery}/retry"), "Retry now", None)) }
            table #attempts {
                tr { th { "#" } th { "Started" } th { "Latency" } th { "Status" } th { "Error" } th { "Body" } }
                @for a in attempts {
                    tr {
                        td { (a.attempt) }
                        td { (time(&a.started_at)) }
                        td { (a.latency_ms) " ms" }
                        td { @if let Some(code) = a.status_code { (code) } @else { "—" } }
                        td { (a.error_class.clone().unwrap_or_default()) " " (a.error.clone().unwrap_or_default()) }
                        td { pre { (a.response_body.clone().unwrap_or_default()) } }
                    }
                }
            }
        },
    )
}

pub fn deadletters(csrf: &str, letters: &[DeadLetter]) -> Markup {
    layout(
        "Dead letters",
        Some(csrf),
        html! {
            h1 { "Dead letters" }
            p { "Records a stage refused, oldest first; " code { "gf deadletters replay" } " re-drives them after a fix." }
            table {
                tr { th { "Failed at" } th { "Stage" } th { "Reason" } th { "Excerpt" } }
                @for l in letters {
                    tr {
                        td { (time(&l.failed_at)) }
                        td { (l.stage) }
                        td { (l.reason) }
                        td { code { (l.excerpt.chars().take(200).collect::<String>()) } }
                    }
                }
            }
        },
    )
}

pub fn audit(csrf: &str, entries: &[AuditEntry]) -> Markup {
    layout(
        "Audit log",
        Some(csrf),
        html! {
            h1 { "Audit log" }
            table {
                tr { th { "At" } th { "Who" } th { "What" } th { "Subject" } th { "Detail" } }
                @for e in entries.iter().rev() {
                    tr {
                        td { (time(&e.at)) }
                        td { (e.actor) }
                        td { (e.action) }
                        td { @if let Some(s) = e.subject_id { code { (s) } } }
                        td { code { (e.detail.to_string()) } }
                    }
                }
            }
        },
    )
}
