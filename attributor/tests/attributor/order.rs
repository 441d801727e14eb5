//! Attribution does not depend on arrival order: one set of events and conversation messages,
//! applied through `store::write` (real PostgreSQL) in many orders and batch splits, gives every
//! event the same user, organization and conversation, and every conversation the same outcome
//! and verdict (silent churn included), in all of them; and a replay of the whole set (a newer
//! mapper version) gives them again.

use std::collections::BTreeMap;

use crate::support::{at, cancel, event, message, neutral, product, refund, with_email, with_org};
use gf_attributor::store::{Batch, NoPublish, write};
use gf_schemas::canonical::CanonicalEvent;
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use gf_tests::TestDb;
use uuid::Uuid;

#[derive(Clone)]
enum Input {
    Event(Box<CanonicalEvent>),
    Message(Box<ConversationMessage>),
}

fn sdk(
    product: Uuid,
    conversation: &str,
    user: &str,
    email: Option<&str>,
    minutes: i64,
    seconds: i64,
) -> Input {
    let mut m = message(
        product,
        conversation,
        ConversationKind::Message,
        Some(user),
        at(minutes, seconds),
    );
    m.email = email.map(str::to_owned);
    Input::Message(Box::new(m))
}

fn analytics(e: CanonicalEvent) -> Input {
    Input::Event(Box::new(e))
}

/// The set: the three-event request of the report (`alice` with e-mail and organization, `alice`
/// without e-mail, `alice-2` with the same e-mail in lower case), conversation messages before
/// and between them, an event read before its conversation's first message, a user known only
/// from the SDK, and an explicit conversation.
fn inputs(p: Uuid) -> Vec<Input> {
    let mut explicit = event(p, "e6", Some("alice"), at(3, 0));
    explicit.external_conversation_id = Some("c-explicit".into());
    vec![
        analytics(with_org(
            with_email(
                event(p, "e1", Some("alice"), at(0, 0)),
                "Alice@Example.com",
                None,
            ),
            "acme",
            Some("Acme"),
        )),
        analytics(event(p, "e2", Some("alice"), at(1, 0))),
        analytics(with_email(
            event(p, "e3", Some("alice-2"), at(2, 0)),
            "alice@example.com",
            None,
        )),
        sdk(p, "c1", "alice", Some("alice@example.com"), -2, 0),
        // A later conversation of alice's between e2 and e3: e3 belongs to it. (The SDK knows
        // her e-mail: an SDK identity without it, read first, would be another user that e1
        // then proves to be alice too; that conflict is not merged, see the store tests.)
        sdk(p, "c4", "alice", Some("ALICE@example.com"), 1, 30),
        // bob is known only from the SDK; his event may come first.
        analytics(event(p, "e4", Some("bob"), at(5, 0))),
        sdk(p, "c2", "bob", None, 0, 0),
        // carol's message is a minute before her event, which may be read first.
        analytics(with_email(
            event(p, "e5", Some("carol"), at(20, 0)),
            "carol@x.io",
            None,
        )),
        sdk(p, "c3", "carol", None, 19, 0),
        analytics(explicit),
        // Outside every window: no conversation in any order.
        analytics(event(p, "e7", Some("alice"), at(40, 0))),
        // dave bought, then was refunded: the latest decides.
        sdk(p, "c5", "dave", None, 50, 0),
        analytics(event(p, "e8", Some("dave"), at(52, 0))),
        analytics(refund(event(p, "e9", Some("dave"), at(55, 0)), 49.0)),
        // erin's conversation has no event and erin sends nothing for 15 days, while frank's
        // event moves the product's watermark past her silent-churn time.
        sdk(p, "c6", "erin", None, 60, 0),
        analytics(neutral(event(p, "e10", Some("frank"), at(15 * DAY, 0)))),
        // gina comes back three days later (outside every window): not churned.
        sdk(p, "c7", "gina", None, 70, 0),
        analytics(neutral(event(p, "e11", Some("gina"), at(3 * DAY, 0)))),
        // hank cancels: negative without a refund.
        sdk(p, "c8", "hank", None, 80, 0),
        analytics(cancel(event(p, "e12", Some("hank"), at(81, 0)))),
    ]
}

const DAY: i64 = 24 * 60;

/// Deterministic pseudo-random numbers (xorshift), so a failing order can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % below as u64) as usize
    }
}

/// Every event's links, with user ids replaced by the first event of each user (ids differ
/// between databases), and every outcome summary.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: BTreeMap<String, (String, Option<String>, Option<String>)>,
    summaries: BTreeMap<String, Summary>,
}

/// counts (total, positive, negative), total value, verdict, revenue, refunds, silent-churn time
type Summary = (
    i32,
    i32,
    i32,
    f64,
    String,
    f64,
    f64,
    Option<chrono::DateTime<chrono::Utc>>,
);

async fn outcome(client: &tokio_postgres::Client) -> Outcome {
    let rows = client
        .query(
            "SELECT e.insert_id, e.user_id, o.external_organization_id, c.external_conversation_id
               FROM business_events e
               LEFT JOIN organizations o ON o.id = e.organization_id
               LEFT JOIN conversations c ON c.id = e.conversation_id
              ORDER BY e.insert_id",
            &[],
        )
        .await
        .unwrap();
    let mut first_of_user: BTreeMap<Uuid, String> = BTreeMap::new();
    for r in &rows {
        if let Some(user) = r.get::<_, Option<Uuid>>(1) {
            first_of_user.entry(user).or_insert_with(|| r.get(0));
        }
    }
    let events = rows
        .iter()
        .map(|r| {
            let user = r.get::<_, Option<Uuid>>(1).map_or("none".to_owned(), |u| {
                format!("user of {}", first_of_user[&u])
            });
            (r.get(0), (user, r.get(2), r.get(3)))
        })
        .collect();
    let summaries = client
        .query(
            "SELECT c.external_conversation_id, o.events, o.positive_events, o.negative_events,
                    o.total_value, o.verdict, o.revenue, o.refunds, o.silent_churn_at
               FROM conversation_outcomes o JOIN conversations c ON c.id = o.conversation_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let summary = (
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
            );
            (r.get(0), summary)
        })
        .collect();
    Outcome { events, summaries }
}

/// Applies `order` of `inputs` in batches of 1 to 4, each batch one `store::write`.
async fn apply(pool: &deadpool_postgres::Pool, inputs: &[Input], rng: &mut Rng) {
    let mut rest: &[Input] = inputs;
    while !rest.is_empty() {
        let n = (1 + rng.next(4)).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut batch = Batch::default();
        for input in chunk {
            match input {
                Input::Event(e) => batch.events.push((**e).clone()),
                Input::Message(m) => batch.conversations.push((**m).clone()),
            }
        }
        write(pool, &batch, &NoPublish)
            .await
            .expect("batch written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_inputs_give_the_same_attribution_in_any_order() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let mut expected: Option<Outcome> = None;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // The worst orders of the report first, then shuffles.
    let named: [&[usize]; 4] = [
        &[
            2, 1, 0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
        ],
        &[
            1, 2, 0, 5, 7, 9, 10, 3, 4, 6, 8, 19, 18, 17, 16, 15, 14, 13, 12, 11,
        ],
        &[
            5, 7, 2, 1, 9, 10, 0, 8, 6, 4, 3, 16, 13, 15, 11, 12, 14, 17, 19, 18,
        ],
        // The watermark moves first: erin's conversation churns as it is written.
        &[
            15, 17, 14, 16, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 18, 19,
        ],
    ];
    for round in 0..20 {
        let db = TestDb::migrated().await;
        let client = db.client().await;
        let p = product(&client).await;
        let pool = gf_runtime::db::pool(&db.url, 2).unwrap();
        let all = inputs(p);
        let mut order: Vec<usize> = (0..all.len()).collect();
        match named.get(round) {
            Some(fixed) => order = fixed.to_vec(),
            None => {
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.next(i + 1));
                }
            }
        }
        let ordered: Vec<Input> = order.iter().map(|&i| all[i].clone()).collect();
        apply(&pool, &ordered, &mut rng).await;
        let got = outcome(&client).await;

        // A replay of the whole set with a newer mapper version gives the same again.
        let replayed: Vec<Input> = all
            .iter()
            .map(|input| match input {
                Input::Event(e) => {
                    let mut e = e.clone();
                    e.mapper_version += 1;
                    Input::Event(e)
                }
                other => other.clone(),
            })
            .collect();
        let mut one_batch = Rng(1);
        apply(&pool, &replayed, &mut one_batch).await;
        let after_replay = outcome(&client).await;
        assert_eq!(
            after_replay, got,
            "order {order:?}: a replay attributed differently"
        );

        match &expected {
            None => {
                // The report's three events: one user for all of them.
                let user = &got.events["amplitude:e1"].0;
                for id in [
                    "amplitude:e2",
                    "amplitude:e3",
                    "amplitude:e6",
                    "amplitude:e7",
                ] {
                    assert_eq!(&got.events[id].0, user, "{id} in order {order:?}: {got:#?}");
                }
                assert_eq!(got.events["amplitude:e1"].2.as_deref(), Some("c1"));
                assert_eq!(got.events["amplitude:e2"].2.as_deref(), Some("c1"));
                assert_eq!(got.events["amplitude:e3"].2.as_deref(), Some("c4"));
                assert_eq!(got.events["amplitude:e4"].2.as_deref(), Some("c2"));
                assert_eq!(got.events["amplitude:e5"].2.as_deref(), Some("c3"));
                assert_eq!(got.events["amplitude:e6"].2.as_deref(), Some("c-explicit"));
                assert_eq!(got.events["amplitude:e7"].2, None);
                assert_eq!(got.events["amplitude:e1"].1.as_deref(), Some("acme"));
                let verdict = |c: &str| got.summaries[c].4.as_str();
                for c in ["c1", "c2", "c3", "c4", "c-explicit"] {
                    assert_eq!(verdict(c), "converted", "{c} in order {order:?}");
                }
                assert_eq!(verdict("c5"), "refunded", "order {order:?}");
                assert_eq!((got.summaries["c5"].5, got.summaries["c5"].6), (49.0, 49.0));
                assert_eq!(verdict("c6"), "churned_silently", "order {order:?}");
                assert_eq!(
                    got.summaries["c6"].7,
                    Some(at(60, 0) + chrono::Duration::days(14))
                );
                assert_eq!(verdict("c7"), "open", "order {order:?}: gina came back");
                assert_eq!(got.summaries["c7"].7, None);
                assert_eq!(verdict("c8"), "negative", "order {order:?}");
                expected = Some(got);
            }
            Some(first) => assert_eq!(&got, first, "order {order:?} attributed differently"),
        }
    }
}
