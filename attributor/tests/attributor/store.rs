//! Every attribution rule against a real PostgreSQL, through `store::write`.

use crate::support::{Db, at, db, event, message, product, with_email, with_org};
use gf_attributor::store::{Batch, NoPublish, Written, write};
use gf_runtime::stage::{RetryPolicy, rerun_conflicts};
use gf_schemas::attributed::{ConversationResolution, OrganizationResolution, UserResolution};
use gf_schemas::canonical::{CanonicalEvent, EventValue, Influence};
use gf_schemas::conversation::ConversationKind;
use uuid::Uuid;

impl Db {
    async fn events(&self, events: Vec<CanonicalEvent>) -> Written {
        write(
            &self.pool,
            &Batch {
                conversations: Vec::new(),
                events,
            },
            &NoPublish,
        )
        .await
        .expect("batch written")
    }

    async fn messages(&self, conversations: Vec<gf_schemas::conversation::ConversationMessage>) {
        write(
            &self.pool,
            &Batch {
                conversations,
                events: Vec::new(),
            },
            &NoPublish,
        )
        .await
        .expect("messages written");
    }

    async fn count(&self, sql: &str) -> i64 {
        self.client.query_one(sql, &[]).await.unwrap().get(0)
    }

    /// (events, positive, negative, positive value, negative value, total value) of the one outcome row.
    async fn outcome(&self) -> (i32, i32, i32, f64, f64, f64) {
        let r = self
            .client
            .query_one(
                "SELECT events, positive_events, negative_events, positive_value, negative_value,
                        total_value FROM conversation_outcomes",
                &[],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
    }

    async fn user_by_ext(&self, ext: &str) -> Uuid {
        self.client
            .query_one("SELECT id FROM users WHERE external_user_id = $1", &[&ext])
            .await
            .unwrap()
            .get(0)
    }

    async fn conversation(&self, ext: &str) -> Uuid {
        self.client
            .query_one(
                "SELECT id FROM conversations WHERE external_conversation_id = $1",
                &[&ext],
            )
            .await
            .unwrap()
            .get(0)
    }
}

#[tokio::test]
async fn matches_by_external_id_first_then_by_email() {
    let db = db().await;
    let p = db.product;
    db.events(vec![with_email(
        event(p, "1", Some("u1"), at(0, 0)),
        "ada@example.com",
        Some("Ada"),
    )])
    .await;
    let ada = db.user_by_ext("u1").await;

    let written = db
        .events(vec![
            event(p, "2", Some("u1"), at(1, 0)),
            // Another id but Ada's address, differently cased and padded.
            with_email(
                event(p, "3", Some("device-77"), at(2, 0)),
                "  ADA@Example.com ",
                None,
            ),
        ])
        .await;
    let by: Vec<_> = written
        .attributed
        .iter()
        .map(|a| (a.user_id, a.resolution.user))
        .collect();
    assert_eq!(
        by,
        [
            (Some(ada), UserResolution::ExternalId),
            (Some(ada), UserResolution::Email)
        ]
    );
    assert_eq!(db.count("SELECT count(*) FROM users").await, 1);
}

#[tokio::test]
async fn an_unknown_user_with_email_is_created_with_its_origin() {
    let db = db().await;
    let p = db.product;
    let written = db
        .events(vec![with_email(
            event(p, "1", Some("u2"), at(0, 0)),
            "Grace@Example.com",
            Some("Grace Hopper"),
        )])
        .await;
    assert_eq!(
        written.attributed[0].resolution.user,
        UserResolution::Created
    );
    assert_eq!(written.users_created, 1);
    let row = db
        .client
        .query_one(
            "SELECT id, email, name, properties FROM users WHERE external_user_id = 'u2'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(Some(row.get::<_, Uuid>(0)), written.attributed[0].user_id);
    assert_eq!(row.get::<_, String>(1), "Grace@Example.com");
    assert_eq!(row.get::<_, String>(2), "Grace Hopper");
    let properties: serde_json::Value = row.get(3);
    assert_eq!(
        properties,
        serde_json::json!({"created_from": "analytics", "source": "amplitude"})
    );
}

#[tokio::test]
async fn anonymous_events_create_no_user() {
    let db = db().await;
    let p = db.product;
    let written = db
        .events(vec![
            event(p, "1", Some("device-1"), at(0, 0)),
            event(p, "2", None, at(0, 1)),
        ])
        .await;
    for a in &written.attributed {
        assert_eq!((a.user_id, a.resolution.user), (None, UserResolution::None));
    }
    assert_eq!(db.count("SELECT count(*) FROM users").await, 0);
    assert_eq!(
        db.count("SELECT count(*) FROM business_events WHERE user_id IS NULL")
            .await,
        2
    );
}

#[tokio::test]
async fn a_later_sdk_identity_reuses_the_analytics_user() {
    let db = db().await;
    let p = db.product;
    db.events(vec![with_email(
        event(p, "1", Some("u3"), at(0, 0)),
        "u3@example.com",
        None,
    )])
    .await;
    db.messages(vec![message(
        p,
        "c1",
        ConversationKind::Started,
        Some("u3"),
        at(1, 0),
    )])
    .await;
    assert_eq!(db.count("SELECT count(*) FROM users").await, 1);
    let user = db.user_by_ext("u3").await;
    let owner: Uuid = db
        .client
        .query_one(
            "SELECT user_id FROM conversations WHERE external_conversation_id = 'c1'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, user);
}

#[tokio::test]
async fn organizations_are_upserted_by_external_id_only_and_users_linked() {
    let db = db().await;
    let p = db.product;
    let written = db
        .events(vec![
            with_org(
                with_email(event(p, "1", Some("u4"), at(0, 0)), "u4@x.io", None),
                "org-1",
                Some("Acme"),
            ),
            with_org(
                event(p, "2", Some("u4"), at(0, 1)),
                "org-1",
                Some("Acme Inc"),
            ),
            // A name without an id upserts nothing.
            {
                let mut e = event(p, "3", Some("u4"), at(0, 2));
                e.organization_hints.name = Some("Acme".into());
                e
            },
        ])
        .await;
    assert_eq!(db.count("SELECT count(*) FROM organizations").await, 1);
    let row = db
        .client
        .query_one("SELECT id, name, properties FROM organizations WHERE external_organization_id = 'org-1'", &[])
        .await
        .unwrap();
    let org: Uuid = row.get(0);
    assert_eq!(row.get::<_, String>(1), "Acme Inc");
    let properties: serde_json::Value = row.get(2);
    assert_eq!(properties["created_from"], "analytics");
    assert_eq!(properties["source"], "amplitude");
    let resolutions: Vec<_> = written
        .attributed
        .iter()
        .map(|a| (a.organization_id, a.resolution.organization))
        .collect();
    assert_eq!(
        resolutions,
        [
            (Some(org), OrganizationResolution::ExternalId),
            (Some(org), OrganizationResolution::ExternalId),
            (None, OrganizationResolution::None)
        ]
    );
    let linked: Option<Uuid> = db
        .client
        .query_one(
            "SELECT organization_id FROM users WHERE external_user_id = 'u4'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(linked, Some(org));
}

#[tokio::test]
async fn gf_conversation_id_attaches_and_creates_the_conversation() {
    let db = db().await;
    let p = db.product;
    let mut e = event(p, "1", None, at(0, 0));
    e.external_conversation_id = Some("conv-explicit".into());
    let written = db.events(vec![e]).await;
    let conversation = db.conversation("conv-explicit").await;
    assert_eq!(written.attributed[0].conversation_id, Some(conversation));
    assert_eq!(
        written.attributed[0].resolution.conversation,
        ConversationResolution::Explicit
    );
    let created_from: String = db
        .client
        .query_one(
            "SELECT created_from FROM conversations WHERE id = $1",
            &[&conversation],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(created_from, "analytics");
    // The stream's later start message lands on the same row.
    db.messages(vec![message(
        p,
        "conv-explicit",
        ConversationKind::Started,
        Some("u9"),
        at(0, 0),
    )])
    .await;
    assert_eq!(db.count("SELECT count(*) FROM conversations").await, 1);
}

#[tokio::test]
async fn the_window_is_fifteen_minutes_of_event_time() {
    let db = db().await;
    let p = db.product;
    db.messages(vec![message(
        p,
        "c1",
        ConversationKind::Message,
        Some("u5"),
        at(0, 0),
    )])
    .await;
    let conversation = db.conversation("c1").await;
    let written = db
        .events(vec![
            event(p, "inside", Some("u5"), at(14, 59)),
            event(p, "edge", Some("u5"), at(15, 0)),
            event(p, "outside", Some("u5"), at(15, 1)),
            // Before the conversation's activity: not attributed to it.
            event(p, "before", Some("u5"), at(-1, 0)),
        ])
        .await;
    let got: Vec<_> = written
        .attributed
        .iter()
        .map(|a| (a.conversation_id, a.resolution.conversation))
        .collect();
    assert_eq!(
        got,
        [
            (Some(conversation), ConversationResolution::Window),
            (Some(conversation), ConversationResolution::Window),
            (None, ConversationResolution::None),
            (None, ConversationResolution::None),
        ]
    );
}

#[tokio::test]
async fn the_latest_of_two_conversations_wins() {
    let db = db().await;
    let p = db.product;
    db.messages(vec![
        message(p, "older", ConversationKind::Started, Some("u6"), at(0, 0)),
        message(p, "newer", ConversationKind::Started, Some("u6"), at(5, 0)),
        // Later activity in the older conversation, but after the event: ignored.
        message(p, "older", ConversationKind::Message, Some("u6"), at(12, 0)),
    ])
    .await;
    let written = db.events(vec![event(p, "1", Some("u6"), at(10, 0))]).await;
    assert_eq!(
        written.attributed[0].conversation_id,
        Some(db.conversation("newer").await)
    );
}

#[tokio::test]
async fn a_conversation_in_another_product_is_ignored() {
    let db = db().await;
    let other = product(&db.client).await;
    db.messages(vec![message(
        other,
        "elsewhere",
        ConversationKind::Started,
        Some("u7"),
        at(0, 0),
    )])
    .await;
    let written = db
        .events(vec![event(db.product, "1", Some("u7"), at(1, 0))])
        .await;
    assert_eq!(written.attributed[0].conversation_id, None);
    assert_eq!(
        db.count("SELECT count(*) FROM users").await,
        1,
        "only the SDK's user, in the other product"
    );
}

#[tokio::test]
async fn a_duplicate_changes_nothing() {
    let db = db().await;
    let p = db.product;
    let e = event(p, "dup", Some("u8"), at(0, 0));
    assert_eq!(
        db.events(vec![e.clone(), e.clone()]).await.attributed.len(),
        1
    );
    let again = db.events(vec![e]).await;
    assert!(again.attributed.is_empty());
    assert_eq!(again.unchanged, 1);
    assert_eq!(db.count("SELECT count(*) FROM business_events").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_of_the_same_events_store_each_once() {
    let db = db().await;
    let p = db.product;
    // Anonymous events take no user lock, so the writers meet in the events' own insert: the
    // one that finds an id taken after its read runs again, as the runner runs conflicts.
    let events: Vec<CanonicalEvent> = (0..500)
        .map(|i| event(p, &format!("race-{i}"), None, at(0, i % 60)))
        .collect();
    let writers: Vec<_> = (0..6)
        .map(|_| {
            let pool = db.pool.clone();
            let batch = Batch {
                conversations: Vec::new(),
                events: events.clone(),
            };
            tokio::spawn(async move {
                rerun_conflicts(&RetryPolicy::default(), || async {
                    Ok(write(&pool, &batch, &NoPublish).await?)
                })
                .await
            })
        })
        .collect();
    let mut new = 0;
    let mut unchanged = 0;
    for writer in writers {
        let written = writer.await.unwrap().expect("written");
        new += written.attributed.len();
        unchanged += written.unchanged;
    }
    assert_eq!(new, 500, "each event is new to exactly one writer");
    assert_eq!(unchanged, 5 * 500);
    assert_eq!(db.count("SELECT count(*) FROM business_events").await, 500);
}

#[tokio::test]
async fn a_newer_mapper_version_replaces_the_row_and_the_outcomes() {
    let db = db().await;
    let p = db.product;
    db.messages(vec![message(
        p,
        "c1",
        ConversationKind::Started,
        Some("u9"),
        at(0, 0),
    )])
    .await;
    let v1 = event(p, "refund", Some("u9"), at(1, 0));
    db.events(vec![v1.clone()]).await;
    assert_eq!(db.outcome().await, (1, 1, 0, 49.0, 0.0, 49.0));

    // The fixed mapper reads it as a refund.
    let mut v2 = v1.clone();
    v2.mapper_version = 2;
    v2.event_type = "refund".into();
    v2.value = Some(EventValue::Number(-49.0));
    v2.influence = Influence::Negative;
    let written = db.events(vec![v2.clone()]).await;
    assert_eq!(written.attributed.len(), 1);
    assert_eq!(db.outcome().await, (1, 0, 1, 0.0, -49.0, -49.0));
    let row = db
        .client
        .query_one(
            "SELECT event_type, mapper_version, influence FROM business_events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2)
        ),
        ("refund".into(), 2, "negative".into())
    );

    // An older version arriving late changes nothing.
    assert!(db.events(vec![v1]).await.attributed.is_empty());
    assert_eq!(db.outcome().await, (1, 0, 1, 0.0, -49.0, -49.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_events_of_one_user_create_one_row() {
    let db = db().await;
    let p = db.product;
    let mut writers = Vec::new();
    for w in 0..8 {
        let pool = db.pool.clone();
        writers.push(tokio::spawn(async move {
            let events = (0..5)
                .map(|i| {
                    let mut e = with_email(
                        event(p, &format!("w{w}-{i}"), Some("brand-new"), at(0, i)),
                        "New@Example.com",
                        None,
                    );
                    e.external_conversation_id = Some("shared".into());
                    e
                })
                .collect();
            write(
                &pool,
                &Batch {
                    conversations: Vec::new(),
                    events,
                },
                &NoPublish,
            )
            .await
        }));
    }
    let mut users = std::collections::HashSet::new();
    for writer in writers {
        for a in writer.await.unwrap().expect("written").attributed {
            users.insert(a.user_id.expect("attributed to the user"));
        }
    }
    assert_eq!(users.len(), 1);
    assert_eq!(db.count("SELECT count(*) FROM users").await, 1);
    assert_eq!(db.count("SELECT count(*) FROM business_events").await, 40);
    // Every writer's events are counted in the one conversation's summary.
    assert_eq!(
        db.outcome().await,
        (40, 40, 0, 40.0 * 49.0, 0.0, 40.0 * 49.0)
    );
    assert_eq!(db.count("SELECT count(*) FROM conversations").await, 1);
}

#[tokio::test]
async fn data_postgresql_refuses_is_reported_as_data() {
    let db = db().await;
    let mut e = event(db.product, "nul", None, at(0, 0));
    e.properties
        .insert("bad".into(), serde_json::json!("a\u{0}b"));
    let error = write(
        &db.pool,
        &Batch {
            conversations: Vec::new(),
            events: vec![e],
        },
        &NoPublish,
    )
    .await
    .expect_err("PostgreSQL refuses NUL in jsonb");
    assert!(error.is_refusal(), "{error}");
    assert_eq!(db.count("SELECT count(*) FROM business_events").await, 0);
}

/// The e-mail key is the attributor's alone: an e-mail whose case PostgreSQL's `lower()` folds
/// differently (final sigma, non-ASCII capitals) used to plan a user the unique index then
/// refused, forever. Each pair here is one person.
#[tokio::test]
async fn emails_rust_and_postgresql_would_fold_differently_match_one_user() {
    let db = db().await;
    let pairs = [
        ("ΟΔΟΣ@x.gr", "οδοσ@x.gr"),
        ("Ä…@x.io", "ä…@x.io"),
        ("\tSTRASSE@x.de ", "straße@x.de"),
    ];
    for (i, (first, second)) in pairs.iter().enumerate() {
        let known = with_email(
            event(
                db.product,
                &format!("a{i}"),
                Some(&format!("user-{i}")),
                at(0, 0),
            ),
            first,
            None,
        );
        db.events(vec![known]).await;
        // No user id, the same e-mail written another way: the same user, no conflict.
        let later = with_email(
            event(db.product, &format!("b{i}"), None, at(0, 1)),
            second,
            None,
        );
        let written = db.events(vec![later]).await;
        assert_eq!(
            written.attributed[0].resolution.user,
            UserResolution::Email,
            "{first} / {second}"
        );
        assert_eq!(
            written.attributed[0].user_id,
            Some(db.user_by_ext(&format!("user-{i}")).await)
        );
    }
    assert_eq!(db.count("SELECT count(*) FROM users").await, 3);
}

/// An event whose external id names one user and whose e-mail names another proves they are one
/// person; they are not merged silently: the event goes to the external id's user (the
/// documented precedence), the e-mail stays the other's, and the conflict is counted.
#[tokio::test]
async fn an_identity_conflict_is_attributed_by_external_id_and_counted() {
    let db = db().await;
    let conflicts = || {
        gf_runtime::metrics::render(gf_runtime::metrics::registry())
            .lines()
            .find_map(|l| l.strip_prefix("gf_attributor_identity_conflicts_total "))
            .map_or(0, |v| v.trim().parse::<u64>().unwrap())
    };
    // The SDK knows alice by her id only; analytics knows alice-2 by an e-mail.
    db.messages(vec![message(
        db.product,
        "c1",
        ConversationKind::Started,
        Some("alice"),
        at(0, 0),
    )])
    .await;
    db.events(vec![with_email(
        event(db.product, "a", Some("alice-2"), at(0, 1)),
        "a@x.io",
        None,
    )])
    .await;
    let before = conflicts();
    let written = db
        .events(vec![with_email(
            event(db.product, "b", Some("alice"), at(0, 2)),
            "A@x.io",
            None,
        )])
        .await;
    let a = &written.attributed[0];
    assert_eq!(a.resolution.user, UserResolution::ExternalId);
    assert_eq!(a.user_id, Some(db.user_by_ext("alice").await));
    assert_ne!(a.user_id, Some(db.user_by_ext("alice-2").await));
    assert_eq!(
        db.count("SELECT count(*) FROM users").await,
        2,
        "not merged"
    );
    let email_owner: Uuid = db
        .client
        .query_one(
            "SELECT user_id FROM user_identities WHERE kind = 'email' AND value = 'a@x.io'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(email_owner, db.user_by_ext("alice-2").await);
    assert!(conflicts() > before, "the conflict was not counted");
}

/// An external id found through an e-mail becomes an alias: the next event with only that id
/// finds the user (it used to get none).
#[tokio::test]
async fn an_external_id_found_by_email_becomes_an_alias() {
    let db = db().await;
    let first = with_email(
        event(db.product, "1", Some("alice-2"), at(0, 0)),
        "alice@example.com",
        None,
    );
    db.events(vec![first]).await;
    let by_email = with_email(
        event(db.product, "2", Some("alice"), at(0, 1)),
        "Alice@Example.com",
        None,
    );
    let written = db.events(vec![by_email]).await;
    assert_eq!(written.attributed[0].resolution.user, UserResolution::Email);
    let user = written.attributed[0].user_id;
    let written = db
        .events(vec![event(db.product, "3", Some("alice"), at(0, 2))])
        .await;
    assert_eq!(
        written.attributed[0].resolution.user,
        UserResolution::ExternalId
    );
    assert_eq!(written.attributed[0].user_id, user);
}

/// An event read before the first message of its conversation gets it when the message comes:
/// re-attributed in the message's transaction and published again (same id), and the outcome
/// summary counts it.
#[tokio::test]
async fn a_late_conversation_message_attaches_the_events_after_it() {
    let db = db().await;
    let mut started = message(
        db.product,
        "c-late",
        ConversationKind::Started,
        Some("u1"),
        at(0, 0),
    );
    started.email = Some("u1@x.io".into());
    // The user exists (from an earlier event with an e-mail), the conversation not yet.
    db.events(vec![with_email(
        event(db.product, "0", Some("u1"), at(0, 0)),
        "u1@x.io",
        None,
    )])
    .await;
    let early = db
        .events(vec![event(db.product, "1", Some("u1"), at(5, 0))])
        .await;
    assert_eq!(early.attributed[0].conversation_id, None);
    let written = write(
        &db.pool,
        &Batch {
            conversations: vec![started],
            events: Vec::new(),
        },
        &NoPublish,
    )
    .await
    .unwrap();
    let conversation = db.conversation("c-late").await;
    let republished: Vec<_> = written
        .attributed
        .iter()
        .filter(|a| a.event.id == early.attributed[0].event.id)
        .collect();
    assert_eq!(republished.len(), 1, "published again, once");
    assert_eq!(republished[0].conversation_id, Some(conversation));
    assert_eq!(
        republished[0].resolution.conversation,
        ConversationResolution::Window
    );
    let stored: Option<Uuid> = db
        .client
        .query_one(
            "SELECT conversation_id FROM business_events WHERE id = $1",
            &[&early.attributed[0].event.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, Some(conversation));
    // Both events of u1 are within 15 minutes after the start: both are counted.
    assert_eq!(db.outcome().await.0, 2);
}

/// A conversation message and an event in its window, written by two transactions at once (two
/// attributors: conversations are keyed by conversation, events by user, so they meet on
/// different partitions). Each transaction alone would miss the other's
/// uncommitted row; whichever commits second must still see the first, so the event ends in
/// the window as it does in either sequential order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conversation_and_an_event_in_its_window_written_at_once_are_linked() {
    let db = db().await;
    let p = db.product;
    // Each external id has an earlier event and no user yet: the message creates the user and
    // takes over the events of its external id, the event looks the user up.
    let users: Vec<String> = (0..24).map(|u| format!("racer-{u}")).collect();
    db.events(
        users
            .iter()
            .map(|u| event(p, &format!("{u}-setup"), Some(u), at(-60, 0)))
            .collect(),
    )
    .await;
    for (round, user) in users.iter().enumerate() {
        let conversation = format!("race-{round}");
        let message = message(
            p,
            &conversation,
            ConversationKind::Started,
            Some(user),
            at(0, 0),
        );
        let later = event(p, &format!("{user}-in-window"), Some(user), at(1, 0));
        let batches = [
            Batch {
                conversations: vec![message],
                events: Vec::new(),
            },
            Batch {
                conversations: Vec::new(),
                events: vec![later],
            },
        ];
        let writers: Vec<_> = batches
            .into_iter()
            .map(|batch| {
                let pool = db.pool.clone();
                tokio::spawn(async move {
                    // Racing writers conflict; the runner's one policy runs them again.
                    rerun_conflicts(&RetryPolicy::default(), || async {
                        Ok(write(&pool, &batch, &NoPublish).await?)
                    })
                    .await
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap().expect("written");
        }
        let linked: Option<Uuid> = db
            .client
            .query_one(
                "SELECT conversation_id FROM business_events WHERE insert_id = $1",
                &[&format!("amplitude:{user}-in-window")],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            linked,
            Some(db.conversation(&conversation).await),
            "round {round}: the event missed the conversation written beside it"
        );
    }
}
