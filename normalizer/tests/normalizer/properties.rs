//! Properties over arbitrary input: the mapping never panics and its ids are stable; the
//! influence matcher reads whole words whatever the naming convention.

use gf_normalizer::influence;
use gf_normalizer::mapping::{MapOptions, RawInput, map_record};
use gf_schemas::Provider;
use gf_schemas::canonical::Influence;
use gf_schemas::raw::RawRecordMeta;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use uuid::Uuid;

fn meta(provider: Provider) -> RawRecordMeta {
    RawRecordMeta {
        connection_id: Uuid::from_u128(1),
        product_id: Uuid::from_u128(2),
        provider,
        received_at_ms: 1_779_105_600_000,
        request_id: "p".into(),
        content_type: None,
        traceparent: None,
    }
}

/// Arbitrary JSON, biased towards the field names the mappers read.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("event_type".to_owned()),
        Just("user_id".to_owned()),
        Just("device_id".to_owned()),
        Just("time".to_owned()),
        Just("insert_id".to_owned()),
        Just("revenue".to_owned()),
        Just("price".to_owned()),
        Just("quantity".to_owned()),
        Just("event_properties".to_owned()),
        Just("user_properties".to_owned()),
        Just("groups".to_owned()),
        Just("type".to_owned()),
        Just("event".to_owned()),
        Just("userId".to_owned()),
        Just("anonymousId".to_owned()),
        Just("timestamp".to_owned()),
        Just("messageId".to_owned()),
        Just("properties".to_owned()),
        Just("context".to_owned()),
        Just("traits".to_owned()),
        Just("gf_value".to_owned()),
        Just("gf_value_type".to_owned()),
        Just("gf_influence".to_owned()),
        Just("gf_event_type".to_owned()),
        Just("gf_quality_impact_score".to_owned()),
        Just("email".to_owned()),
        Just("name".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop_oneof![
            Just("track".to_owned()),
            Just("page".to_owned()),
            Just("identify".to_owned()),
            Just("positive".to_owned()),
            Just("currency".to_owned()),
            Just("2026-05-18T12:00:00Z".to_owned()),
            "\\PC{0,12}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn body_shapes() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        prop::collection::vec(json_value(), 0..5).prop_map(|events| json!({ "events": events })),
        prop::collection::vec(json_value(), 0..5).prop_map(|batch| json!({ "batch": batch })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn mapping_never_panics_and_ids_are_stable(body in body_shapes(), raw in prop::collection::vec(any::<u8>(), 0..64)) {
        for provider in Provider::all() {
            let meta = meta(provider);
            for bytes in [serde_json::to_vec(&body).unwrap(), raw.clone()] {
                let input = RawInput { body: &bytes, meta: &meta, topic: "t", partition: 0, offset: 0 };
                let first = map_record(&input, &MapOptions::default());
                let second = map_record(&input, &MapOptions::default());
                if let (Ok(a), Ok(b)) = (&first, &second) {
                    let ids = |m: &gf_normalizer::mapping::Mapped| m.events.iter().map(|e| (e.id, e.insert_id.clone())).collect::<Vec<_>>();
                    prop_assert_eq!(ids(a), ids(b));
                    for e in &a.events {
                        prop_assert!(!e.event_type.is_empty());
                        prop_assert!(e.quality_impact_score.is_none_or(|s| (-1.0..=1.0).contains(&s)));
                        prop_assert!(serde_json::to_vec(e).is_ok());
                    }
                } else {
                    prop_assert_eq!(first.is_ok(), second.is_ok());
                }
            }
        }
    }
}

/// Influence words and ordinary ones, at least two letters (single capitals run together in
/// PascalCase, `AB`, which no convention can split back).
fn name_words() -> impl Strategy<Value = Vec<String>> {
    let keyword = prop::sample::select(
        [
            influence::POSITIVE,
            influence::NEGATIVE,
            influence::SIGN,
            &["up", "un"],
        ]
        .concat(),
    )
    .prop_map(str::to_owned);
    let word = prop_oneof![keyword, "[a-z]{2,9}"];
    prop::collection::vec(word, 1..5)
}

/// A name in one of the conventions senders use.
fn render(words: &[String], convention: usize) -> String {
    let capital = |w: &String| w[..1].to_uppercase() + &w[1..];
    match convention {
        0 => words.join("_"),
        1 => words.join("-"),
        2 => words.iter().map(capital).collect::<Vec<_>>().join(" "),
        3 => words[0].clone() + &words[1..].iter().map(capital).collect::<String>(),
        4 => words.iter().map(capital).collect(),
        _ => words.join("_").to_uppercase(),
    }
}

fn listed(word: &str) -> bool {
    influence::POSITIVE.contains(&word)
        || influence::NEGATIVE.contains(&word)
        || influence::SIGN.contains(&word)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, .. ProptestConfig::default() })]

    /// The convention a name is written in changes neither its words nor its influence.
    #[test]
    fn influence_ignores_the_naming_convention(words in name_words(), convention in 0usize..6) {
        let name = render(&words, convention);
        prop_assert_eq!(influence::words(&name), words.clone(), "{}", name);
        prop_assert_eq!(influence::from_name(&name), influence::from_name(&words.join("_")), "{}", name);
    }

    /// Any negative word makes the name negative, whatever else it holds.
    #[test]
    fn a_negative_word_always_wins(words in name_words(), at in any::<prop::sample::Index>(),
                                   negative in prop::sample::select(influence::NEGATIVE)) {
        let mut words = words;
        words.insert(at.index(words.len() + 1), negative.to_owned());
        prop_assert_eq!(influence::from_name(&words.join(" ")), Influence::Negative);
    }

    /// Without a listed word the name is neutral; a keyword inside a longer word is no keyword.
    #[test]
    fn only_whole_listed_words_count(words in prop::collection::vec("[a-z]{2,9}", 1..5),
                                     keyword in prop::sample::select([influence::POSITIVE, influence::NEGATIVE].concat()),
                                     prefix in "[a-z]{0,3}", suffix in "[a-z]{0,3}") {
        let glued = format!("{prefix}{keyword}{suffix}");
        prop_assume!(!listed(&glued) && !words.iter().any(|w| listed(w)));
        // `un` before `subscribe…` and `sign` before `up` are the two-word forms.
        prop_assume!(!words.iter().any(|w| w == "un" || w == "up"));
        let mut words = words;
        words.push(glued);
        prop_assert_eq!(influence::from_name(&words.join("_")), Influence::Neutral, "{:?}", words);
    }

    /// Splitting keeps every letter and digit, lowercased, and yields no empty word.
    #[test]
    fn words_lose_no_character(name in "\\PC{0,40}") {
        let words = influence::words(&name);
        prop_assert!(words.iter().all(|w| !w.is_empty()));
        let kept: String = name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect();
        prop_assert_eq!(words.concat(), kept);
    }
}
