//! Topic names and how each topic is created.

/// The consumer group of a stage: `gf-normalizer` etc. under the default prefix. Deriving it from
/// the topic prefix keeps two pipelines on one cluster (or two test runs) out of each other's groups.
pub fn consumer_group(prefix: &str, stage: &str) -> String {
    format!("{prefix}-{stage}")
}

/// The pipeline's topics, under a configurable prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    pub raw: String,
    pub events: String,
    pub attributed: String,
    pub conversations: String,
    pub signals: String,
    pub deadletter: String,
    /// Compacted: each conversation's current outcome.
    pub outcomes: String,
}

/// How the pipeline's topics are laid out on the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicLayout {
    pub partitions: i32,
    pub replication: i32,
    /// `min.insync.replicas`: with `acks=all`, a write is refused rather than acknowledged by
    /// fewer replicas than this.
    pub min_insync: i32,
    pub raw_retention_hours: u32,
    /// Every topic takes records as large as a raw record (`max.message.bytes`).
    pub max_record_bytes: usize,
}

const HOUR_MS: u64 = 3_600_000;
/// Canonical and input topics: a week, Kafka's own default, written down so a cluster-wide
/// override does not change ours.
const DERIVED_RETENTION_HOURS: u64 = 7 * 24;
/// Dead letters wait for an operator's fix longer than events wait for a consumer.
const DEADLETTER_RETENTION_HOURS: u64 = 30 * 24;

impl TopicLayout {
    /// From `GF_TOPIC_PARTITIONS`, `GF_TOPIC_REPLICATION`, `GF_TOPIC_MIN_INSYNC` and
    /// `GF_RAW_RETENTION_HOURS`.
    pub fn from_config(config: &crate::Config, max_record_bytes: usize) -> Self {
        TopicLayout {
            partitions: config.topic_partitions,
            replication: config.topic_replication,
            min_insync: config.topic_min_insync,
            raw_retention_hours: config.raw_retention_hours,
            max_record_bytes,
        }
    }

    /// One replica, `partitions` each: a test's or a benchmark's topics on one local broker.
    pub fn local(partitions: i32, max_record_bytes: usize) -> Self {
        TopicLayout {
            partitions,
            replication: 1,
            min_insync: 1,
            raw_retention_hours: DERIVED_RETENTION_HOURS as u32,
            max_record_bytes,
        }
    }
}

/// A topic as `gf topics ensure` creates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    /// Topic-level configuration (`max.message.bytes`, ...).
    pub config: Vec<(&'static str, String)>,
}

impl Topics {
    pub fn new(prefix: &str) -> Self {
        use gf_schemas::topic;
        let name = |suffix| topic::name(prefix, suffix);
        Topics {
            raw: name(topic::RAW),
            events: name(topic::EVENTS),
            attributed: name(topic::ATTRIBUTED),
            conversations: name(topic::CONVERSATIONS),
            signals: name(topic::SIGNALS),
            deadletter: name(topic::DEADLETTER),
            outcomes: name(topic::OUTCOMES),
        }
    }

    pub fn names(&self) -> [&str; 7] {
        [
            &self.raw,
            &self.events,
            &self.attributed,
            &self.conversations,
            &self.signals,
            &self.deadletter,
            &self.outcomes,
        ]
    }

    /// Every topic with its settings. All take records as large as a raw record, since canonical
    /// events and dead letters carry properties and excerpts from raw bodies. Retention is by
    /// time only, except for outcomes, which are compacted (the last record per conversation is
    /// kept however old): the raw topic's retention bounds how far back `gf replay` reaches.
    pub fn specs(&self, layout: &TopicLayout) -> Vec<TopicSpec> {
        self.names()
            .into_iter()
            .map(|name| {
                let retention_hours = if name == self.raw {
                    u64::from(layout.raw_retention_hours)
                } else if name == self.deadletter {
                    DEADLETTER_RETENTION_HOURS
                } else {
                    DERIVED_RETENTION_HOURS
                };
                let cleanup = if name == self.outcomes {
                    "compact"
                } else {
                    "delete"
                };
                TopicSpec {
                    name: name.to_owned(),
                    partitions: layout.partitions,
                    replication: layout.replication,
                    config: vec![
                        ("max.message.bytes", layout.max_record_bytes.to_string()),
                        ("min.insync.replicas", layout.min_insync.to_string()),
                        ("cleanup.policy", cleanup.into()),
                        ("retention.ms", (retention_hours * HOUR_MS).to_string()),
                        ("retention.bytes", "-1".into()),
                        // A replica that missed writes never becomes leader: no acknowledged
                        // record is lost to an election (Kafka's default, pinned per topic).
                        ("unclean.leader.election.enable", "false".into()),
                    ],
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let t = Topics::new("gf");
        assert_eq!(
            t.names(),
            [
                "gf.raw.v1",
                "gf.events.v1",
                "gf.events.attributed.v1",
                "gf.conversations.v1",
                "gf.signals.v1",
                "gf.deadletter.v1",
                "gf.outcomes.v1"
            ]
        );
        assert_eq!(Topics::new("test-1").raw, "test-1.raw.v1");
        assert_eq!(consumer_group("gf", "normalizer"), "gf-normalizer");
    }

    #[test]
    fn every_topic_gets_the_layout_and_the_raw_topic_its_retention() {
        let t = Topics::new("gf");
        let layout = TopicLayout {
            partitions: 6,
            replication: 3,
            min_insync: 2,
            raw_retention_hours: 720,
            max_record_bytes: 11_534_336,
        };
        let specs = t.specs(&layout);
        assert_eq!(specs.len(), 7);
        let config = |spec: &TopicSpec, key: &str| {
            spec.config
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        for spec in &specs {
            assert_eq!((spec.partitions, spec.replication), (6, 3));
            assert_eq!(config(spec, "min.insync.replicas").as_deref(), Some("2"));
            assert_eq!(
                config(spec, "max.message.bytes").as_deref(),
                Some("11534336")
            );
        }
        let retention = |name: &str| {
            config(
                specs.iter().find(|s| s.name == name).unwrap(),
                "retention.ms",
            )
            .unwrap()
        };
        assert_eq!(retention("gf.raw.v1"), (720 * HOUR_MS).to_string());
        assert_eq!(retention("gf.events.v1"), (168 * HOUR_MS).to_string());
        assert_eq!(retention("gf.deadletter.v1"), (720 * HOUR_MS).to_string());
        let cleanup = |name: &str| {
            config(
                specs.iter().find(|s| s.name == name).unwrap(),
                "cleanup.policy",
            )
            .unwrap()
        };
        assert_eq!(cleanup("gf.outcomes.v1"), "compact");
        assert_eq!(cleanup("gf.events.v1"), "delete");
    }
}
