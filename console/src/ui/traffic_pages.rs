//! What flows, pure: a product's overview (events per hour as a chart, each connection's
//! requests, answers and last event, dead letters by reason, deliveries by endpoint) and a
//! connection's live request log. maud escapes every interpolated string: a sender's error
//! message is shown as text.

use chrono::{DateTime, Utc};
use gf_control::Connection;
use gf_control::traffic::RequestEntry;
use maud::{Markup, html};

use super::chart;
use super::pages::layout;
use crate::api::ProductOverview;

fn time(t: &DateTime<Utc>) -> String {
    gf_schemas::time::format(t)
}

/// Accepted and dropped events per hour over every connection of the product.
fn hourly_chart(overview: &ProductOverview) -> Markup {
    let mut hours: std::collections::BTreeMap<DateTime<Utc>, [f64; 2]> = Default::default();
    for c in &overview.stats.connections {
        for h in &c.hours {
            let slot = hours.entry(h.hour).or_default();
            slot[0] += h.accepted as f64;
            slot[1] += h.dropped as f64;
        }
    }
    let groups: Vec<chart::Group> = hours
        .into_iter()
        .map(|(hour, values)| chart::Group {
            label: time(&hour),
            tick: hour.format("%H:00").to_string(),
            values,
        })
        .collect();
    chart::bars(
        "events-chart",
        &groups,
        &chart::Series {
            names: ["accepted", "dropped"],
            colours: ["#2f9e5b", "#9aa3ad"],
        },
        "No requests in the last 24 hours.",
    )
}

/// The overview section at the top of a product's page.
pub fn overview(overview: &ProductOverview) -> Markup {
    let stats = &overview.stats;
    let total = |f: fn(&gf_control::traffic::ConnectionStats) -> i64| -> i64 {
        stats.connections.iter().map(f).sum()
    };
    html! {
        section #overview {
            h2 { "Last 24 hours" }
            div.cards #totals {
                div.card data-total="requests" { h3 { "Requests" } p.big { (total(|c| c.requests)) } }
                div.card data-total="received" { h3 { "Events received" } p.big { (total(|c| c.received)) } }
                div.card data-total="accepted" { h3 { "Accepted" } p.big { (total(|c| c.accepted)) } }
                div.card data-total="dropped" { h3 { "Dropped" } p.big { (total(|c| c.dropped)) } }
            }
            (hourly_chart(overview))
            table #traffic {
                tr { th { "Connection" } th { "Requests" } th { "Received" } th { "Accepted" } th { "Dropped" } th { "Answers" } th { "Last event" } th {} }
                @for c in &stats.connections {
                    tr data-connection=(c.connection_id) {
                        td { (c.provider) " " span class={ "status " (c.status) } { (c.status) } }
                        td { (c.requests) } td { (c.received) } td { (c.accepted) } td { (c.dropped) }
                        td.answers {
                            @for s in &c.statuses {
                                span class={ "answer s" (s.status / 100) } data-status=(s.status) { (s.status) " × " (s.requests) } " "
                            }
                        }
                        td { (c.last_event_at.as_ref().map(time).unwrap_or_else(|| "—".into())) }
                        td { a href={ "/connections/" (c.connection_id) "/requests" } { "Live log →" } }
                    }
                }
            }
            div.cards {
                div.card #dead-letters {
                    h3 { "Dead letters" }
                    @match &overview.dead_letters {
                        None => p.error { "The broker did not answer; dead letters are not shown." },
                        Some(reasons) if reasons.is_empty() => p { "None." },
                        Some(reasons) => ul { @for r in reasons { li data-reason=(r.reason_class) { (r.reason_class) ": " (r.count) } } },
                    }
                    p { a href="/deadletters" { "All dead letters →" } }
                }
                div.card #webhook-deliveries {
                    h3 { "Webhook deliveries" }
                    @if stats.deliveries.is_empty() { p { "No endpoints." } }
                    ul { @for d in &stats.deliveries {
                        li { code { (d.url) } ": " (d.delivered) " delivered, " (d.pending) " pending, "
                             span class=[(d.failed > 0).then_some("error")] { (d.failed) " failed" } }
                    } }
                }
            }
        }
    }
}

/// A connection's live log: the page polls its rows every two seconds (`data-poll`).
/// `can_change`: the caller's key may turn body excerpts on or off.
pub fn request_log(
    csrf: &str,
    can_change: bool,
    connection: &Connection,
    entries: &[RequestEntry],
) -> Markup {
    let (toggle, label) = if connection.log_bodies {
        ("hide-bodies", "Stop keeping body excerpts")
    } else {
        ("show-bodies", "Keep body excerpts")
    };
    let poll = format!("/connections/{}/requests/rows", connection.id);
    layout(
        "Live request log",
        Some(csrf),
        html! {
            h1 { "Live request log · " (connection.provider.as_str()) }
            p { a href={ "/products/" (connection.product_id) } { "← Product" } }
            p.hint { "The newest 100 requests this connection received and what each was answered. Refreshes by itself." }
            p #body-excerpts {
                @if connection.log_bodies {
                    "Body excerpts are kept: the first 2 KiB of each request body, shown escaped. "
                } @else {
                    "Bodies are not kept (only what each request was answered). "
                }
                @if can_change {
                    form.inline method="post" action={ "/connections/" (connection.id) "/" (toggle) } {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { (label) }
                    }
                }
            }
            div #log data-poll=(poll) { (request_rows(entries)) }
        },
    )
}

/// The log's rows (what the page polls).
pub fn request_rows(entries: &[RequestEntry]) -> Markup {
    html! {
        @if entries.is_empty() {
            p #waiting { "Waiting for the first request… point your sender at the URL and send an event; it shows here within seconds." }
        } @else {
            table #requests {
                tr { th { "At" } th { "Method" } th { "Status" } th { "Received" } th { "Accepted" } th { "Dropped" } th { "Bytes" } th { "What happened" } }
                @for r in entries {
                    tr data-request=(r.id) data-status=(r.status) {
                        td { (time(&r.at)) }
                        td { (r.method) }
                        td { span class={ "answer s" (r.status / 100) } { (r.status) } }
                        td { (r.received) } td { (r.accepted) } td { (r.dropped) } td { (r.bytes) }
                        td.outcome {
                            @if let Some(e) = &r.error {
                                span.error.refusal { code { (e.code) } " " (e.message) }
                            }
                            @if let Some(why) = &r.dropped_because { p.hint.dropped { "Dropped: " (why) } }
                            @if let Some(excerpt) = &r.excerpt { pre.excerpt { (excerpt) } }
                            @if !r.events.is_empty() {
                                ul.events { @for e in &r.events {
                                    li data-event=(e.id) { (e.event_type) " (" (e.influence) ")"
                                        @if let Some(warnings) = e.warnings.as_array().filter(|w| !w.is_empty()) {
                                            " " span.warning { (warnings.len()) " warning(s): " (e.warnings.to_string()) }
                                        }
                                    }
                                } }
                            } @else if r.accepted > 0 {
                                p.hint.pending { "Stored; its canonical events appear here once the pipeline has attributed them." }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_excerpt_and_a_refusal_are_shown_as_text() {
        let entry = RequestEntry {
            id: uuid::Uuid::nil(),
            at: chrono::DateTime::UNIX_EPOCH,
            method: "POST".into(),
            status: 400,
            received: 0,
            accepted: 0,
            dropped: 0,
            error: Some(gf_control::traffic::RequestError {
                code: "invalid_json".into(),
                message: "<img src=x onerror=alert(1)>".into(),
            }),
            bytes: 30,
            excerpt: Some("<script>alert(1)</script>".into()),
            dropped_because: None,
            events: Vec::new(),
            event_ids: Vec::new(),
        };
        let html = request_rows(&[entry]).into_string();
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(
            html.contains("&lt;img src=x onerror=alert(1)&gt;"),
            "{html}"
        );
        assert!(
            !html.contains("<script>") && !html.contains("<img"),
            "{html}"
        );
        assert!(
            request_rows(&[])
                .into_string()
                .contains("Waiting for the first request")
        );
    }
}
