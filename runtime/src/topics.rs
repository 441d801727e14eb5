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
        }
    }

    pub fn names(&self) -> [&str; 6] {
        [
            &self.raw,
            &self.events,
            &self.attributed,
            &self.conversations,
            &self.signals,
            &self.deadletter,
        ]
    }

    /// Every topic with its settings. All take records as large as a raw record, since canonical
    /// events and dead letters carry properties and excerpts from raw bodies.
    pub fn specs(
        &self,
        partitions: i32,
        replication: i32,
        max_record_bytes: usize,
    ) -> Vec<TopicSpec> {
        self.names()
            .into_iter()
            .map(|name| TopicSpec {
                name: name.to_owned(),
                partitions,
                replication,
                config: vec![("max.message.bytes", max_record_bytes.to_string())],
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
                "gf.deadletter.v1"
            ]
        );
        assert_eq!(Topics::new("test-1").raw, "test-1.raw.v1");
        assert_eq!(consumer_group("gf", "normalizer"), "gf-normalizer");
    }
}
