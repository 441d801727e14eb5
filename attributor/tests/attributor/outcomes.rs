//! Conversation outcomes as the attributor publishes them: the verdict, revenue and refunds, the
//! times to the first positive and negative event, silent churn by the product's event-time
//! watermark (and a user's return turning it back), and the settling of a churn two writers
//! missed between them.

use crate::support::{Db, at, cancel, db, event, message, neutral, refund};
use gf_attributor::store::{
    Batch, NoPublish, OutcomeRules, Written, fill_missing_outcomes, settle_silent_churn, write,
    write_with,
};
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use gf_schemas::outcome::{ConversationOutcome, Verdict};

impl Db {
    async fn write(
        &self,
        conversations: Vec<ConversationMessage>,
        events: Vec<CanonicalEvent>,
    ) -> Written {
        write(
            &self.pool,
            &Batch {
                conversations,
                events,
            },
            &NoPublish,
        )
        .await
        .expect("batch written")
    }

    fn says(&self, conversation: &str, user: &str, minutes: i64) -> ConversationMessage {
        message(
            self.product,
            conversation,
            ConversationKind::Message,
            Some(user),
            at(minutes, 0),
        )
    }
}

/// The one outcome of `conversation` among those a batch published.
fn published<'a>(written: &'a Written, conversation: &str) -> &'a ConversationOutcome {
    let found: Vec<&ConversationOutcome> = written
        .outcomes
        .iter()
        .filter(|o| o.external_conversation_id == conversation)
        .collect();
    assert_eq!(found.len(), 1, "{conversation} in {:#?}", written.outcomes);
    found[0]
}

const DAY: i64 = 24 * 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_converts_and_a_later_refund_decides() {
    let db = db().await;
    let p = db.product;
    let written = db.write(vec![db.says("c1", "u1", 0)], Vec::new()).await;
    let open = published(&written, "c1");
    assert_eq!(open.verdict, Verdict::Open);
    assert_eq!(open.silent_churn_at, Some(at(14 * DAY, 0)));

    let purchase = event(p, "buy", Some("u1"), at(2, 0));
    let written = db.write(Vec::new(), vec![purchase.clone()]).await;
    let converted = published(&written, "c1");
    assert_eq!(converted.verdict, Verdict::Converted);
    assert_eq!(converted.decided_by_event_id, Some(purchase.id));
    assert_eq!((converted.revenue, converted.refunds), (49.0, 0.0));
    assert_eq!(converted.seconds_to_first_positive, Some(120.0));
    assert_eq!(converted.silent_churn_at, None);

    let mut money_back = refund(event(p, "refund", Some("u1"), at(10, 0)), 20.0);
    money_back.quality_impact_score = Some(-0.5);
    let written = db.write(Vec::new(), vec![money_back.clone()]).await;
    let refunded = published(&written, "c1");
    assert_eq!(refunded.verdict, Verdict::Refunded);
    assert_eq!(refunded.decided_by_event_id, Some(money_back.id));
    assert_eq!((refunded.revenue, refunded.refunds), (49.0, 20.0));
    assert_eq!(
        (
            refunded.counts.total,
            refunded.counts.positive,
            refunded.counts.negative
        ),
        (2, 1, 1)
    );
    assert_eq!(refunded.value.total, 29.0);
    assert_eq!(refunded.quality_impact, -0.5);
    assert_eq!(refunded.seconds_to_first_negative, Some(600.0));
    assert_eq!(refunded.first_event_at, Some(at(2, 0)));
    assert_eq!(refunded.last_event_at, Some(at(10, 0)));

    // A purchase read late but older than the refund does not change the verdict; a newer one
    // does.
    let earlier = event(p, "buy-0", Some("u1"), at(1, 0));
    let written = db.write(Vec::new(), vec![earlier]).await;
    assert_eq!(published(&written, "c1").verdict, Verdict::Refunded);
    let again = event(p, "buy-2", Some("u1"), at(12, 0));
    let written = db.write(Vec::new(), vec![again]).await;
    assert_eq!(published(&written, "c1").verdict, Verdict::Converted);

    // A cancellation without a value is negative, not a refund.
    let written = db
        .write(
            vec![db.says("c2", "u2", 100)],
            vec![cancel(event(p, "cancel", Some("u2"), at(101, 0)))],
        )
        .await;
    assert_eq!(published(&written, "c2").verdict, Verdict::Negative);

    // A duplicate changes nothing and publishes nothing.
    let written = db
        .write(Vec::new(), vec![event(p, "buy", Some("u1"), at(2, 0))])
        .await;
    assert!(written.outcomes.is_empty(), "{:#?}", written.outcomes);
    let stored: String = db
        .client
        .query_one("SELECT verdict FROM conversation_outcomes o JOIN conversations c ON c.id = o.conversation_id WHERE c.external_conversation_id = 'c1'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, "converted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_churns_by_event_time_and_a_return_turns_it_back() {
    let db = db().await;
    let p = db.product;
    let rules = OutcomeRules {
        silent_churn: chrono::Duration::days(7),
    };
    let write_ruled = |conversations: Vec<ConversationMessage>, events: Vec<CanonicalEvent>| {
        let pool = db.pool.clone();
        async move {
            write_with(
                &pool,
                &Batch {
                    conversations,
                    events,
                },
                &rules,
                &NoPublish,
            )
            .await
            .expect("batch written")
        }
    };
    write_ruled(
        vec![db.says("quiet", "u1", 0)],
        vec![neutral(event(p, "view", Some("u1"), at(5, 0)))],
    )
    .await;
    // Six days of someone else's events: not yet (the wall clock is years later; it does not
    // count).
    let written = write_ruled(
        Vec::new(),
        vec![neutral(event(p, "other-1", Some("u2"), at(6 * DAY, 0)))],
    )
    .await;
    assert!(
        written
            .outcomes
            .iter()
            .all(|o| o.external_conversation_id != "quiet")
    );
    // Past seven days after the last event (not the last message): churned silently.
    let written = write_ruled(
        Vec::new(),
        vec![neutral(event(p, "other-2", Some("u2"), at(7 * DAY + 6, 0)))],
    )
    .await;
    let churned = published(&written, "quiet");
    assert_eq!(churned.verdict, Verdict::ChurnedSilently);
    assert_eq!(churned.silent_churn_at, Some(at(7 * DAY + 5, 0)));
    // u1's event from day 3, read late: u1 did not go silent after all.
    let written = write_ruled(
        Vec::new(),
        vec![neutral(event(p, "late", Some("u1"), at(3 * DAY, 0)))],
    )
    .await;
    let back = published(&written, "quiet");
    assert_eq!(back.verdict, Verdict::Open);
    assert_eq!(back.silent_churn_at, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settling_churns_what_two_writers_missed_between_them() {
    let db = db().await;
    let p = db.product;
    db.write(vec![db.says("missed", "u1", 0)], Vec::new()).await;
    // Another attributor moved the watermark while this conversation was uncommitted: its
    // batch could not see it, and this one read the old watermark.
    db.client
        .execute(
            "INSERT INTO product_watermarks (product_id, event_at) VALUES ($1, $2)",
            &[&p, &at(30 * DAY, 0)],
        )
        .await
        .unwrap();
    let settled = settle_silent_churn(&db.pool, &OutcomeRules::default(), &NoPublish)
        .await
        .expect("settled");
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].verdict, Verdict::ChurnedSilently);
    // Once settled, nothing is left to settle.
    let settled = settle_silent_churn(&db.pool, &OutcomeRules::default(), &NoPublish)
        .await
        .expect("settled");
    assert!(settled.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_stored_before_outcomes_get_theirs() {
    let db = db().await;
    let p = db.product;
    db.write(
        vec![db.says("old", "u1", 0)],
        vec![event(p, "buy", Some("u1"), at(1, 0))],
    )
    .await;
    // As a database migrated from before outcomes were kept: counts, no verdict.
    db.client
        .execute(
            "UPDATE conversation_outcomes SET verdict = 'open', quiet_since = NULL,
                    decided_by_event_id = NULL, revenue = 0",
            &[],
        )
        .await
        .unwrap();
    let rules = OutcomeRules::default();
    assert_eq!(
        fill_missing_outcomes(&db.pool, &rules, &NoPublish, 500)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        fill_missing_outcomes(&db.pool, &rules, &NoPublish, 500)
            .await
            .unwrap(),
        0
    );
    let row = db
        .client
        .query_one("SELECT verdict, revenue FROM conversation_outcomes", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, f64>(1)),
        ("converted".into(), 49.0)
    );
}

/// What a conversation's stored events add up to, read independently of the outcome code:
/// (events, revenue, refunds, the deciding event).
async fn read_from_every_event(db: &Db, conversation: &str) -> (i64, f64, f64, Option<uuid::Uuid>) {
    let row = db
        .client
        .query_one(
            "SELECT count(*),
                    coalesce(sum(e.numeric_value) FILTER (WHERE e.value_type = 'currency'
                                                           AND e.numeric_value > 0), 0),
                    coalesce(-sum(e.numeric_value) FILTER (WHERE e.value_type = 'currency'
                                                            AND e.numeric_value < 0), 0),
                    (SELECT d.id FROM business_events d
                      WHERE d.conversation_id = c.id AND d.influence <> 'neutral'
                      ORDER BY d.event_at DESC, d.id DESC LIMIT 1)
               FROM conversations c JOIN business_events e ON e.conversation_id = c.id
              WHERE c.external_conversation_id = $1
              GROUP BY c.id",
            &[&conversation],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

async fn held(db: &Db, conversation: &str) -> (i64, f64, f64, Option<uuid::Uuid>) {
    let row = db
        .client
        .query_one(
            "SELECT o.events::bigint, o.revenue, o.refunds, o.decided_by_event_id
               FROM conversation_outcomes o JOIN conversations c ON c.id = o.conversation_id
              WHERE c.external_conversation_id = $1",
            &[&conversation],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_kept_batch_by_batch_adds_up_to_every_event_it_has() {
    let db = db().await;
    let p = db.product;
    let purchase = event(p, "buy", Some("u1"), at(2, 0));
    let mut batches = vec![
        (vec![db.says("c1", "u1", 0)], vec![purchase.clone()]),
        (
            Vec::new(),
            vec![
                neutral(event(p, "look", Some("u1"), at(3, 0))),
                refund(event(p, "refund", Some("u1"), at(5, 0)), 20.0),
            ],
        ),
        // A later mapper version lowers the purchase: added sums alone would keep the old 49.
        (Vec::new(), {
            let mut lower = purchase.clone();
            lower.mapper_version = 2;
            lower.value = Some(gf_schemas::canonical::EventValue::Number(10.0));
            vec![lower, event(p, "buy-again", Some("u1"), at(4, 0))]
        }),
        // An event older than the deciding one does not take its place.
        (Vec::new(), vec![event(p, "early", Some("u1"), at(1, 0))]),
        (Vec::new(), vec![event(p, "late", Some("u1"), at(9, 0))]),
    ];
    for (i, (conversations, events)) in batches.drain(..).enumerate() {
        db.write(conversations, events).await;
        assert_eq!(
            held(&db, "c1").await,
            read_from_every_event(&db, "c1").await,
            "after batch {i}"
        );
    }
    let (events, revenue, refunds, decided) = held(&db, "c1").await;
    assert_eq!((events, revenue, refunds), (6, 10.0 + 49.0 * 3.0, 20.0));
    assert_eq!(decided, Some(event(p, "late", Some("u1"), at(9, 0)).id));
}
