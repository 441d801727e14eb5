//! Admin keys and the audit log against a real PostgreSQL.

use gf_control::{Actor, AdminKeys, Audit};
use gf_tests::TestDb;

#[tokio::test]
async fn a_key_works_until_it_is_revoked_and_every_change_is_audited() {
    let db = TestDb::migrated().await;
    let pool = gf_runtime::db::pool(&db.url, 2).unwrap();
    let keys = AdminKeys::new(pool.clone());
    let ops = Actor::Cli { user: "ops".into() };

    let (key, secret) = keys.create("  release bot ", &ops).await.unwrap();
    assert_eq!(key.name, "release bot");
    let text = secret.reveal();
    assert!(text.starts_with(&key.prefix));
    let listed = keys.list().await.unwrap();
    assert_eq!(listed, vec![key.clone()]);
    assert!(
        !serde_json::to_string(&listed)
            .unwrap()
            .contains(&text[key.prefix.len()..]),
        "a list shows the secret"
    );

    let found = keys.authenticate(&text).await.unwrap().expect("a live key");
    assert_eq!(found.id, key.id);
    assert!(keys.list().await.unwrap()[0].last_used_at.is_some());
    // A wrong secret with the right lookup, another shape, nothing: all plainly refused.
    let wrong = gf_tests::nearly(&text);
    for bad in [wrong.as_str(), "gfa_nope", "", "Bearer x"] {
        assert!(
            keys.authenticate(bad).await.unwrap().is_none(),
            "a bad key was accepted"
        );
    }
    assert!(keys.create(" ", &ops).await.is_err());

    let revoked = keys.revoke(key.id, &ops).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(keys.authenticate(&text).await.unwrap().is_none());
    assert!(keys.revoke(uuid::Uuid::now_v7(), &ops).await.is_err());

    let entries = Audit::new(pool.clone()).list(None, 0, 100).await.unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [
            ("cli:ops", "admin_key.create"),
            ("cli:ops", "admin_key.revoke")
        ]
    );
    assert!(entries.iter().all(|e| e.subject_id == Some(key.id)));
    // The console's page shows the newest entries, oldest of them first.
    let audit = Audit::new(pool.clone());
    let newest = audit.newest(1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].action, "admin_key.revoke");
    let both = audit.newest(10).await.unwrap();
    assert_eq!(
        both.iter().map(|e| e.id).collect::<Vec<_>>(),
        entries.iter().map(|e| e.id).collect::<Vec<_>>()
    );
    assert!(!serde_json::to_string(&entries).unwrap().contains(&text));
}
