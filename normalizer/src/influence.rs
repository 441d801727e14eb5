//! Influence of an event from its name: positive, negative or neutral.
//!
//! The name is split into lowercase words at spaces and punctuation (`snake_case`, `kebab-case`,
//! `Title Case With Spaces`) and at case changes (`camelCase`, `PascalCase`, acronyms as in
//! `HTTPError`). A keyword matches a whole word in one of its listed forms, never a part of a
//! word (`completeness` is not `complete`). Two-word forms (`sign up`, `signed up`, `un subscribe`)
//! match adjacent words.
//!
//! | keyword | positive forms |
//! |---|---|
//! | signup | signup, signups, sign up, signed up, signing up |
//! | upgrade | upgrade, upgraded, upgrades, upgrading |
//! | purchase | purchase, purchased, purchases, purchasing |
//! | subscribe | subscribe, subscribed, subscribes, subscribing, subscription, subscriptions |
//! | convert | convert, converted, converts, converting, conversion |
//! | activate | activate, activated, activates, activating, activation |
//! | complete | complete, completed, completes, completing, completion |
//!
//! | keyword | negative forms |
//! |---|---|
//! | churn | churn, churned, churns, churning |
//! | cancel | cancel, cancels, cancelled, canceled, cancelling, canceling, cancellation |
//! | unsubscribe | unsubscribe(d/s), unsubscribing, un subscribe(d) |
//! | refund | refund, refunded, refunds, refunding |
//! | downgrade | downgrade, downgraded, downgrades, downgrading |
//! | delete | delete, deleted, deletes, deleting, deletion |
//! | failed | fail, failed, fails, failing, failure |
//! | error | error, errors, errored |
//!
//! When positive and negative words both appear, negative wins (`upgrade_failed` is negative);
//! a `subscribe` preceded by `un` is never positive. Revenue and `gf_influence` come first (see
//! [`crate::mapping`]); this is the rule for the name alone. Every row below is a test:
#![doc = include_str!("influence_table.md")]

use gf_schemas::canonical::Influence;

/// Whole words that make a name positive.
pub const POSITIVE: &[&str] = &[
    "signup",
    "signups",
    "upgrade",
    "upgraded",
    "upgrades",
    "upgrading",
    "purchase",
    "purchased",
    "purchases",
    "purchasing",
    "subscribe",
    "subscribed",
    "subscribes",
    "subscribing",
    "subscription",
    "subscriptions",
    "convert",
    "converted",
    "converts",
    "converting",
    "conversion",
    "activate",
    "activated",
    "activates",
    "activating",
    "activation",
    "complete",
    "completed",
    "completes",
    "completing",
    "completion",
];

/// Whole words that make a name negative; they win over positive ones.
pub const NEGATIVE: &[&str] = &[
    "churn",
    "churned",
    "churns",
    "churning",
    "cancel",
    "cancels",
    "cancelled",
    "canceled",
    "cancelling",
    "canceling",
    "cancellation",
    "unsubscribe",
    "unsubscribed",
    "unsubscribes",
    "unsubscribing",
    "refund",
    "refunded",
    "refunds",
    "refunding",
    "downgrade",
    "downgraded",
    "downgrades",
    "downgrading",
    "delete",
    "deleted",
    "deletes",
    "deleting",
    "deletion",
    "fail",
    "failed",
    "fails",
    "failing",
    "failure",
    "error",
    "errors",
    "errored",
];

/// First words of two-word positive forms followed by `up` (`sign up`, `signed up`).
pub const SIGN: &[&str] = &["sign", "signed", "signing"];

/// The influence of an event name.
pub fn from_name(name: &str) -> Influence {
    let words = words(name);
    let mut positive = false;
    let mut negative = false;
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1).map(String::as_str);
        let previous = i.checked_sub(1).map(|p| words[p].as_str());
        if NEGATIVE.contains(&word.as_str()) {
            negative = true;
        } else if POSITIVE.contains(&word.as_str()) {
            if previous == Some("un") && word.starts_with("subscri") {
                negative = true;
            } else {
                positive = true;
            }
        } else if SIGN.contains(&word.as_str()) && next == Some("up") {
            positive = true;
        }
    }
    match (positive, negative) {
        (_, true) => Influence::Negative,
        (true, false) => Influence::Positive,
        (false, false) => Influence::Neutral,
    }
}

/// [`from_name`] remembered for the names of one batch: a batch usually repeats a handful of
/// names, and splitting a name into words allocates. Bounded, so a batch of distinct names costs
/// no more than computing each.
#[derive(Debug, Default)]
pub struct Memo {
    names: Vec<(String, Influence)>,
}

impl Memo {
    /// Names remembered at most; past it, names are computed each time.
    const CAPACITY: usize = 32;

    pub fn of(&mut self, name: &str) -> Influence {
        if let Some((_, influence)) = self.names.iter().find(|(n, _)| n == name) {
            return *influence;
        }
        let influence = from_name(name);
        if self.names.len() < Self::CAPACITY {
            self.names.push((name.to_owned(), influence));
        }
        influence
    }
}

/// Lowercase words of a name, split at punctuation, spaces and case changes.
pub fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1).copied();
        let boundary = c.is_uppercase()
            && prev.is_some_and(|p| {
                // fooBar | HTTPError (the E before "rror")
                p.is_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_uppercase() && next.is_some_and(char::is_lowercase))
            });
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented table, parsed from the same file the crate docs show.
    fn table() -> Vec<(String, Influence)> {
        include_str!("influence_table.md")
            .lines()
            .skip(2)
            .filter_map(|line| {
                let cells: Vec<&str> = line
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .map(str::trim)
                    .collect();
                let name = cells.first()?.trim_matches('`').to_owned();
                let influence = match *cells.get(1)? {
                    "positive" => Influence::Positive,
                    "negative" => Influence::Negative,
                    "neutral" => Influence::Neutral,
                    other => panic!("unknown influence {other:?} in the table"),
                };
                Some((name, influence))
            })
            .collect()
    }

    #[test]
    fn the_documented_table_holds() {
        let rows = table();
        assert!(
            rows.len() >= 40,
            "the table must keep at least 40 names, has {}",
            rows.len()
        );
        for (name, expected) in rows {
            assert_eq!(
                from_name(&name),
                expected,
                "{name:?} (words {:?})",
                words(&name)
            );
        }
    }

    #[test]
    fn words_split_every_convention() {
        let cases: &[(&str, &[&str])] = &[
            ("order_completed", &["order", "completed"]),
            ("order-completed", &["order", "completed"]),
            ("Order Completed", &["order", "completed"]),
            ("orderCompleted", &["order", "completed"]),
            ("OrderCompleted", &["order", "completed"]),
            ("HTTPError", &["http", "error"]),
            ("v2Upgrade", &["v2", "upgrade"]),
            ("  spaced  out ", &["spaced", "out"]),
            ("ÉTÉ Signé", &["été", "signé"]),
        ];
        for (name, expected) in cases {
            assert_eq!(words(name), *expected, "{name}");
        }
    }

    #[test]
    fn the_memo_answers_as_from_name_past_its_capacity() {
        let mut memo = Memo::default();
        let names: Vec<String> = table().into_iter().map(|(name, _)| name).collect();
        for _ in 0..2 {
            for name in &names {
                assert_eq!(memo.of(name), from_name(name), "{name}");
            }
        }
        assert_eq!(memo.names.len(), Memo::CAPACITY.min(names.len()));
    }

    #[test]
    fn matching_is_case_insensitive() {
        for name in [
            "PURCHASE",
            "purchase",
            "Purchase",
            "PURCHASE_COMPLETED",
            "Purchase-Completed",
        ] {
            assert_eq!(from_name(name), Influence::Positive, "{name}");
        }
    }
}
