//! The Outcomes pages, pure: a product's totals by verdict, revenue and refunds by day as an SVG
//! chart drawn here (no script), its conversations by verdict, and one conversation's timeline.

use gf_control::Product;
use gf_control::outcomes::{ConversationDetail, DayTotal, ProductOutcomes};
use gf_schemas::outcome::{ConversationOutcome, Verdict};
use maud::{Markup, html};

use super::chart;
use super::pages::layout;

fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    gf_schemas::time::format(t)
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

fn verdict_label(v: Verdict) -> &'static str {
    match v {
        Verdict::Converted => "converted",
        Verdict::Refunded => "refunded",
        Verdict::Negative => "negative",
        Verdict::ChurnedSilently => "churned silently",
        Verdict::Open => "open",
    }
}

fn badge(v: Verdict) -> Markup {
    html! { span class={ "verdict " (v.as_str()) } data-verdict=(v.as_str()) { (verdict_label(v)) } }
}

pub struct OutcomesPage<'a> {
    pub csrf: &'a str,
    pub product: &'a Product,
    pub totals: &'a ProductOutcomes,
    pub conversations: &'a [ConversationOutcome],
    pub verdict: Option<Verdict>,
    /// The link to the next page of conversations, when there is one.
    pub next: Option<String>,
}

pub fn outcomes(page: &OutcomesPage<'_>) -> Markup {
    let id = page.product.id;
    let base = format!("/products/{id}/outcomes");
    layout(
        &format!("Outcomes · {}", page.product.name),
        Some(page.csrf),
        html! {
            h1 { "Outcomes · " (page.product.name) }
            p { a href={ "/products/" (id) } { "← Connections" } " · " a href={ "/products/" (id) "/webhooks" } { "Webhooks" } }
            div.cards #verdicts {
                div.card data-total="all" {
                    h3 { "All conversations" }
                    p.big { (page.totals.conversations) }
                    p { "revenue " (money(page.totals.revenue)) " · refunds " (money(page.totals.refunds)) }
                }
                @for t in &page.totals.by_verdict {
                    div.card data-total=(t.verdict.as_str()) {
                        h3 { (badge(t.verdict)) }
                        p.big { (t.conversations) }
                        p { "revenue " (money(t.revenue)) " · refunds " (money(t.refunds)) }
                    }
                }
            }
            h2 { "Revenue and refunds by day" }
            p.hint { "By the day each conversation went quiet (UTC)." }
            (chart(&page.totals.by_day))
            h2 { "Conversations" }
            p.filters {
                a href=(base) class=[page.verdict.is_none().then_some("current")] { "all" }
                @for v in <Verdict as strum::IntoEnumIterator>::iter() {
                    " · "
                    a href={ (base) "?verdict=" (v.as_str()) } class=[(page.verdict == Some(v)).then_some("current")] { (verdict_label(v)) }
                }
            }
            table #conversations {
                tr { th { "Conversation" } th { "Verdict" } th { "Revenue" } th { "Refunds" } th { "Events +/−/=" } th { "Last message" } th { "Last event" } }
                @for o in page.conversations {
                    tr data-conversation=(o.conversation_id) data-verdict=(o.verdict.as_str()) {
                        td { a href={ "/conversations/" (o.conversation_id) } { (o.external_conversation_id) } }
                        td { (badge(o.verdict)) }
                        td.revenue { (money(o.revenue)) }
                        td { (money(o.refunds)) }
                        td { (o.counts.positive) " / " (o.counts.negative) " / " (o.counts.neutral) }
                        td { (o.last_activity_at.as_ref().map(time).unwrap_or_else(|| "—".into())) }
                        td { (o.last_event_at.as_ref().map(time).unwrap_or_else(|| "—".into())) }
                    }
                }
            }
            @if page.conversations.is_empty() { p { "No conversations yet." } }
            @if let Some(next) = &page.next { p { a href=(next) { "Older conversations →" } } }
        },
    )
}

/// Revenue (green) and refunds (red) per day.
pub fn chart(days: &[DayTotal]) -> Markup {
    let groups: Vec<chart::Group> = days
        .iter()
        .map(|d| chart::Group {
            label: d.day.to_string(),
            tick: d.day.format("%m-%d").to_string(),
            values: [d.revenue, d.refunds],
        })
        .collect();
    chart::bars(
        "chart",
        &groups,
        &chart::Series {
            names: ["revenue", "refunds"],
            colours: ["#2f9e5b", "#c0392b"],
        },
        "No revenue or refunds in this range.",
    )
}

pub fn conversation(csrf: &str, detail: &ConversationDetail) -> Markup {
    let o = &detail.outcome;
    // Messages and events on one time line.
    let mut timeline: Vec<(chrono::DateTime<chrono::Utc>, Markup)> = detail
        .activity
        .iter()
        .map(|a| {
            (
                a.occurred_at,
                html! { tr.activity { td { (time(&a.occurred_at)) } td { "conversation " (a.kind) } td {} td {} td {} } },
            )
        })
        .collect();
    timeline.extend(detail.events.iter().map(|e| {
        let value = e.value.as_ref().map_or("—".to_owned(), |v| v.to_string());
        (
            e.event_at,
            html! {
                tr.event data-influence=(e.influence) {
                    td { (time(&e.event_at)) }
                    td { (e.event_type) }
                    td { span class={ "influence " (e.influence) } { (e.influence) } " (" (e.influence_rule) ")" }
                    td { (value) @if let Some(t) = &e.value_type { " " (t) } }
                    td { (e.conversation_resolution) }
                }
            },
        )
    }));
    timeline.sort_by_key(|(at, _)| *at);
    layout(
        &format!("Conversation {}", o.external_conversation_id),
        Some(csrf),
        html! {
            h1 { "Conversation " (o.external_conversation_id) }
            p { a href={ "/products/" (o.product_id) "/outcomes" } { "← Outcomes" } }
            div.panel #outcome {
                p { "Verdict " (badge(o.verdict)) }
                p { "Revenue " strong.revenue { (money(o.revenue)) } " · refunds " strong { (money(o.refunds)) } " · quality impact " (o.quality_impact) }
                p { "Events: " (o.counts.positive) " positive, " (o.counts.negative) " negative, " (o.counts.neutral) " neutral" }
                @if let Some(s) = o.seconds_to_first_positive { p { "First positive event " (s) " s after the last message" } }
                @if let Some(s) = o.seconds_to_first_negative { p { "First negative event " (s) " s after the last message" } }
                @if let Some(at) = &o.silent_churn_at { p { "Churns silently at " (time(at)) " (event time) unless the user sends an event before" } }
            }
            h2 { "Timeline" }
            table #timeline {
                tr { th { "At" } th { "What" } th { "Influence" } th { "Value" } th { "Linked by" } }
                @for (_, row) in &timeline { (row) }
            }
            @if detail.events_truncated { p { "Only the first 1000 events are shown." } }
        },
    )
}
