//! Who an identity is: the pure part of user resolution, planned for a whole batch at once.
//!
//! Order of the rules: the external user id, then the email (trimmed, case-folded); no match
//! and an email present creates the user (an SDK identity may create one from its external id
//! alone); otherwise the identity stays anonymous. Users planned earlier in the batch count as
//! known, so two events of one new user create one row.
//!
//! A user is known by every key that resolved to it: an external id found through its e-mail
//! (and an e-mail found through its external id) becomes an alias of that user
//! (`user_identities`), so a later event with only that key finds the user, whatever arrived
//! first. An external id of one user seen with the e-mail of another is a conflict: attributed
//! by external id, never merged.

use std::collections::HashMap;

use gf_schemas::Provider;
use gf_schemas::attributed::UserResolution;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Where an identity comes from, which decides whether it may create a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A canonical event: creates a user only when it carries an email.
    Analytics(Provider),
    /// The SDK's conversation stream: its external id is authoritative and creates the user.
    Sdk,
}

/// One identity to resolve.
#[derive(Clone, Copy, Debug)]
pub struct Identity<'a> {
    pub product_id: Uuid,
    pub external_user_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    pub origin: Origin,
}

/// A user already in the database, as the lookup found it.
#[derive(Clone, Debug)]
pub struct KnownUser {
    pub id: Uuid,
    pub product_id: Uuid,
    pub external_user_id: Option<String>,
    pub email_key: Option<String>,
    pub organization_id: Option<Uuid>,
}

/// A user to insert.
#[derive(Clone, Debug, PartialEq)]
pub struct NewUser {
    pub id: Uuid,
    pub product_id: Uuid,
    pub external_user_id: Option<String>,
    pub email: Option<String>,
    /// `email`'s [`email_key`], computed once where the user is planned.
    pub email_key: Option<String>,
    pub name: Option<String>,
    pub properties: Map<String, Value>,
}

#[derive(Debug, Default)]
pub struct Plan {
    /// One entry per identity, in order.
    pub resolved: Vec<(Option<Uuid>, UserResolution)>,
    pub new_users: Vec<NewUser>,
    /// Identities to record: every key of a new user, and each key that resolved to a known user
    /// through the other key (an external id found by e-mail, an e-mail found by external id).
    pub identities: Vec<NewIdentity>,
    /// Identities that prove two known users are one; not merged, attributed by external id.
    pub conflicts: Vec<IdentityConflict>,
}

/// Which kind of key an identity is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum IdentityKind {
    ExternalId,
    Email,
}

impl IdentityKind {
    /// The name stored in `user_identities.kind`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A (product, kind, value) that names a user from now on.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NewIdentity {
    pub product_id: Uuid,
    pub kind: IdentityKind,
    pub value: String,
    pub user_id: Uuid,
}

/// An external id known as one user and an e-mail known as another, seen together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConflict {
    pub product_id: Uuid,
    pub by_external_id: Uuid,
    pub by_email: Uuid,
}

/// The form e-mails are matched in: Unicode whitespace trimmed, then Unicode default case
/// folding (so `ΟΔΟΣ` and `οδοσ`, `Straße` and `STRASSE` match). Computed here only: the
/// database stores it as written (`users.email_key`), never computes its own.
pub fn email_key(email: &str) -> Option<String> {
    let email = email.trim();
    // Folding an ASCII letter lowercases it and leaves every other ASCII byte alone, and most
    // addresses are ASCII: the Unicode tables are walked only for the rest.
    let key = if email.is_ascii() {
        email.to_ascii_lowercase()
    } else {
        caseless::default_case_fold_str(email)
    };
    (!key.is_empty()).then_some(key)
}

/// A present, non-blank external id.
fn external_id(id: Option<&str>) -> Option<&str> {
    id.filter(|id| !id.trim().is_empty())
}

/// A user key within a product: an external id or an email key.
pub type UserKey = (Uuid, String);

/// The lookup keys a batch needs: (product, external id) and (product, email key).
pub fn lookup_keys(identities: &[Identity<'_>]) -> (Vec<UserKey>, Vec<UserKey>) {
    let mut by_external = Vec::new();
    let mut by_email = Vec::new();
    for identity in identities {
        if let Some(ext) = external_id(identity.external_user_id) {
            by_external.push((identity.product_id, ext.to_owned()));
        }
        if let Some(key) = identity.email.and_then(email_key) {
            by_email.push((identity.product_id, key));
        }
    }
    by_external.sort();
    by_external.dedup();
    by_email.sort();
    by_email.dedup();
    (by_external, by_email)
}

/// The advisory-lock keys of a batch's users, sorted and without repeats: one per external id
/// and per email key (a user the batch may create, or find unattributed events for) and one per
/// resolved user (which other keys may also name). Two batches that could see each other's
/// user share a key. Derived by name-based UUIDs (SHA-1), so every process and build agrees.
pub fn lock_keys(identities: &[Identity<'_>], users: impl IntoIterator<Item = Uuid>) -> Vec<i64> {
    let fold = |id: Uuid| {
        let (high, low) = id.as_u64_pair();
        (high ^ low) as i64
    };
    let named = |(product, value): UserKey, kind: &str| {
        fold(Uuid::new_v5(&product, format!("{kind}:{value}").as_bytes()))
    };
    let (by_external, by_email) = lookup_keys(identities);
    let mut keys: Vec<i64> = by_external
        .into_iter()
        .map(|k| named(k, "external"))
        .chain(by_email.into_iter().map(|k| named(k, "email")))
        .chain(users.into_iter().map(fold))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Resolves every identity against the known users, planning the users to create.
pub fn plan(identities: &[Identity<'_>], known: &[KnownUser]) -> Plan {
    let mut by_external: HashMap<UserKey, Uuid> = HashMap::new();
    let mut by_email: HashMap<UserKey, Uuid> = HashMap::new();
    for user in known {
        if let Some(ext) = &user.external_user_id {
            by_external.insert((user.product_id, ext.clone()), user.id);
        }
        if let Some(key) = &user.email_key {
            by_email.insert((user.product_id, key.clone()), user.id);
        }
    }
    let mut plan = Plan::default();
    for identity in identities {
        let ext = external_id(identity.external_user_id);
        let key = identity.email.and_then(email_key);
        let product = identity.product_id;
        let identity_of = |kind, value: &str, user_id| NewIdentity {
            product_id: product,
            kind,
            value: value.to_owned(),
            user_id,
        };
        if let Some(id) = ext.and_then(|e| by_external.get(&(product, e.to_owned())).copied()) {
            if let Some(k) = &key {
                match by_email.get(&(product, k.clone())).copied() {
                    Some(other) if other != id => plan.conflicts.push(IdentityConflict {
                        product_id: product,
                        by_external_id: id,
                        by_email: other,
                    }),
                    Some(_) => {}
                    None => {
                        by_email.insert((product, k.clone()), id);
                        plan.identities
                            .push(identity_of(IdentityKind::Email, k, id));
                    }
                }
            }
            plan.resolved.push((Some(id), UserResolution::ExternalId));
            continue;
        }
        if let Some(id) = key
            .as_ref()
            .and_then(|k| by_email.get(&(product, k.clone())).copied())
        {
            // The external id is not known (checked above): from now on it names this user.
            if let Some(e) = ext {
                by_external.insert((product, e.to_owned()), id);
                plan.identities
                    .push(identity_of(IdentityKind::ExternalId, e, id));
            }
            plan.resolved.push((Some(id), UserResolution::Email));
            continue;
        }
        let creates = match identity.origin {
            Origin::Analytics(_) => key.is_some(),
            Origin::Sdk => key.is_some() || ext.is_some(),
        };
        if !creates {
            plan.resolved.push((None, UserResolution::None));
            continue;
        }
        let id = Uuid::now_v7();
        if let Some(ext) = ext {
            by_external.insert((product, ext.to_owned()), id);
            plan.identities
                .push(identity_of(IdentityKind::ExternalId, ext, id));
        }
        if let Some(key) = &key {
            by_email.insert((product, key.clone()), id);
            plan.identities
                .push(identity_of(IdentityKind::Email, key, id));
        }
        plan.new_users.push(NewUser {
            id,
            product_id: product,
            external_user_id: ext.map(str::to_owned),
            email: key
                .is_some()
                .then(|| identity.email.unwrap_or_default().trim().to_owned()),
            email_key: key,
            name: identity
                .name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            properties: created_from(identity.origin),
        });
        plan.resolved.push((Some(id), UserResolution::Created));
    }
    // An identity left anonymous whose external id a later identity of the batch made known
    // (created, or aliased by e-mail) is that user: the batch's order does not matter either.
    for (identity, resolved) in identities.iter().zip(plan.resolved.iter_mut()) {
        if resolved.0.is_none()
            && let Some(id) = external_id(identity.external_user_id)
                .and_then(|e| by_external.get(&(identity.product_id, e.to_owned())))
        {
            *resolved = (Some(*id), UserResolution::ExternalId);
        }
    }
    plan
}

/// The properties that say who created a row.
pub fn created_from(origin: Origin) -> Map<String, Value> {
    let value = match origin {
        Origin::Analytics(source) => {
            json!({"created_from": "analytics", "source": source.as_str()})
        }
        Origin::Sdk => json!({"created_from": "sdk"}),
    };
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod lock_tests {
    use super::*;

    fn identity(
        product: Uuid,
        ext: Option<&'static str>,
        email: Option<&'static str>,
    ) -> Identity<'static> {
        Identity {
            product_id: product,
            external_user_id: ext,
            email,
            name: None,
            origin: Origin::Sdk,
        }
    }

    #[test]
    fn batches_that_name_one_user_share_a_lock_key() {
        let p = Uuid::from_u128(1);
        let user = Uuid::from_u128(7);
        let conversation = lock_keys(&[identity(p, Some("u1"), None)], [user]);
        // The same external id unresolved, an email written another way, the resolved user.
        let event = lock_keys(&[identity(p, Some("u1"), None)], []);
        let by_email = lock_keys(&[identity(p, None, Some(" Ada@Example.com"))], []);
        let same_email = lock_keys(&[identity(p, Some("u2"), Some("ada@example.com"))], []);
        let resolved = lock_keys(&[identity(p, Some("u3"), None)], [user]);
        let shared = |a: &[i64], b: &[i64]| a.iter().any(|k| b.contains(k));
        assert!(shared(&conversation, &event));
        assert!(shared(&by_email, &same_email));
        assert!(shared(&conversation, &resolved));
        // Another product's same external id, another user: nothing shared.
        let other = lock_keys(&[identity(Uuid::from_u128(2), Some("u1"), None)], []);
        assert!(!shared(&event, &other));
        assert!(!shared(
            &event,
            &lock_keys(&[identity(p, Some("u9"), None)], [])
        ));
    }

    #[test]
    fn lock_keys_are_sorted_once_each() {
        let p = Uuid::from_u128(1);
        let ids = [
            identity(p, Some("b"), Some("x@y.z")),
            identity(p, Some("a"), None),
            identity(p, Some("b"), Some("X@Y.Z")),
        ];
        let keys = lock_keys(&ids, [Uuid::from_u128(5), Uuid::from_u128(5)]);
        assert_eq!(keys.len(), 4);
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Uuid = Uuid::from_u128(1);
    const OTHER: Uuid = Uuid::from_u128(2);

    fn event<'a>(ext: Option<&'a str>, email: Option<&'a str>) -> Identity<'a> {
        Identity {
            product_id: P,
            external_user_id: ext,
            email,
            name: Some("Ada Lovelace"),
            origin: Origin::Analytics(Provider::Amplitude),
        }
    }

    fn known(id: u128, ext: Option<&str>, email: Option<&str>) -> KnownUser {
        KnownUser {
            id: Uuid::from_u128(id),
            product_id: P,
            external_user_id: ext.map(str::to_owned),
            email_key: email.and_then(email_key),
            organization_id: None,
        }
    }

    #[test]
    fn external_id_wins_over_email() {
        let users = [known(10, Some("u1"), None), known(11, None, Some("a@x.io"))];
        let plan = plan(&[event(Some("u1"), Some("a@x.io"))], &users);
        assert_eq!(
            plan.resolved,
            [(Some(Uuid::from_u128(10)), UserResolution::ExternalId)]
        );
        assert!(plan.new_users.is_empty());
    }

    #[test]
    fn email_matches_trimmed_and_case_insensitively() {
        let users = [known(11, None, Some("ada@example.com"))];
        let plan = plan(&[event(Some("new"), Some("  Ada@Example.COM "))], &users);
        assert_eq!(
            plan.resolved,
            [(Some(Uuid::from_u128(11)), UserResolution::Email)]
        );
    }

    #[test]
    fn email_keys_fold_case_and_trim_unicode_whitespace() {
        let same = [
            ("Ada@Example.com", "ada@example.com"),
            ("\t ada@example.com\n", "ada@example.com"),
            ("\u{a0}ada@example.com\u{3000}", "ada@example.com"),
            ("Ä…@x.io", "ä…@x.io"),
            ("ÄRGER@X.IO", "ärger@x.io"),
            // Final sigma and sigma fold to the same letter.
            ("ΟΔΟΣ@x.gr", "οδοσ@x.gr"),
            ("οδος@x.gr", "οδοσ@x.gr"),
            ("STRASSE@x.de", "straße@x.de"),
            // Dotted capital I folds to i + combining dot, not to plain i.
            ("İ@x.tr", "i\u{307}@x.tr"),
        ];
        for (a, b) in same {
            assert_eq!(email_key(a), email_key(b), "{a:?} vs {b:?}");
        }
        assert_ne!(email_key("İ@x.tr"), email_key("i@x.tr"));
        // The ASCII shortcut folds exactly as the Unicode tables do.
        let ascii: String = (0u8..128).map(char::from).collect();
        assert_eq!(
            email_key(&format!("x{ascii}x")),
            Some(caseless::default_case_fold_str(&format!("x{ascii}x")))
        );
        assert_eq!(email_key(" \t "), None);
        assert_eq!(email_key(""), None);
    }

    #[test]
    fn unknown_with_email_is_created_once_per_batch() {
        let identities = [
            event(Some("u9"), Some("Nine@x.io")),
            event(Some("u9"), None),
            event(None, Some("nine@x.io")),
        ];
        let plan = plan(&identities, &[]);
        assert_eq!(plan.new_users.len(), 1);
        let user = &plan.new_users[0];
        assert_eq!(user.email.as_deref(), Some("Nine@x.io"));
        assert_eq!(user.email_key.as_deref(), Some("nine@x.io"));
        assert_eq!(user.external_user_id.as_deref(), Some("u9"));
        assert_eq!(user.properties["created_from"], "analytics");
        assert_eq!(user.properties["source"], "amplitude");
        assert_eq!(
            plan.resolved,
            [
                (Some(user.id), UserResolution::Created),
                (Some(user.id), UserResolution::ExternalId),
                (Some(user.id), UserResolution::Email),
            ]
        );
    }

    #[test]
    fn anonymous_events_create_nothing() {
        for identity in [
            event(Some("device-1"), None),
            event(None, None),
            event(None, Some("   ")),
        ] {
            let plan = plan(&[identity], &[]);
            assert_eq!(plan.resolved, [(None, UserResolution::None)]);
            assert!(plan.new_users.is_empty());
        }
    }

    #[test]
    fn sdk_identity_creates_from_external_id_alone() {
        let sdk = Identity {
            origin: Origin::Sdk,
            ..event(Some("u5"), None)
        };
        let plan = plan(&[sdk, event(Some("u5"), None)], &[]);
        assert_eq!(plan.new_users.len(), 1);
        assert_eq!(plan.new_users[0].properties["created_from"], "sdk");
        assert_eq!(plan.resolved[1].1, UserResolution::ExternalId);
    }

    #[test]
    fn products_do_not_share_users() {
        let users = [known(10, Some("u1"), Some("a@x.io"))];
        let other = Identity {
            product_id: OTHER,
            ..event(Some("u1"), Some("a@x.io"))
        };
        let plan = plan(&[other], &users);
        assert_eq!(plan.resolved[0].1, UserResolution::Created);
        assert_eq!(plan.new_users[0].product_id, OTHER);
    }

    #[test]
    fn lookup_keys_are_normalized_and_deduplicated() {
        let (ext, email) = lookup_keys(&[
            event(Some("u1"), Some(" A@x.io")),
            event(Some("u1"), Some("a@X.io")),
            event(Some(" "), None),
        ]);
        assert_eq!(ext, [(P, "u1".to_owned())]);
        assert_eq!(email, [(P, "a@x.io".to_owned())]);
    }
}
