//! Kafka's own command-line tools, run from the broker's classpath: a check that does not go
//! through our client code.

use crate::classpath::{JAVA, run};
use crate::{Classpath, Error};

/// The consumer-group command's main class (`kafka-consumer-groups.sh`).
const CONSUMER_GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

/// One partition of one group, as `kafka-consumer-groups --describe` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// The partition's end offset (`None` when not known).
    pub log_end: Option<i64>,
    /// `None` where the group has committed nothing for the partition (`-`).
    pub lag: Option<i64>,
}

impl GroupLag {
    /// Nothing left to read: lag 0, or an empty partition with nothing committed.
    pub fn drained(&self) -> bool {
        self.lag == Some(0) || (self.lag.is_none() && self.log_end == Some(0))
    }
}

impl Classpath {
    /// `kafka-consumer-groups --describe --all-groups` against `bootstrap`.
    pub fn describe_groups(&self, bootstrap: &str) -> Result<Vec<GroupLag>, Error> {
        let mut command = self.java(256);
        command.arg(CONSUMER_GROUPS).args([
            "--bootstrap-server",
            bootstrap,
            "--describe",
            "--all-groups",
        ]);
        let stdout = run(&mut command, "kafka-consumer-groups --describe", JAVA)?;
        Ok(parse_group_lags(&String::from_utf8_lossy(&stdout)))
    }
}

/// Rows of the command's tables (one per group, each under a `GROUP TOPIC PARTITION ...` header).
pub fn parse_group_lags(output: &str) -> Vec<GroupLag> {
    let mut rows = Vec::new();
    let mut columns: Vec<&str> = Vec::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first() == Some(&"GROUP") {
            columns = fields;
            continue;
        }
        let at = |name: &str| {
            columns
                .iter()
                .position(|c| *c == name)
                .and_then(|i| fields.get(i).copied())
        };
        let (Some(group), Some(topic), Some(partition), Some(log_end), Some(lag)) = (
            at("GROUP"),
            at("TOPIC"),
            at("PARTITION"),
            at("LOG-END-OFFSET"),
            at("LAG"),
        ) else {
            continue;
        };
        let Ok(partition) = partition.parse() else {
            continue;
        };
        rows.push(GroupLag {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
            log_end: log_end.parse().ok(),
            lag: lag.parse().ok(),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_describe_table_is_read_by_its_header() {
        let printed = "
Consumer group 'gf-x-normalizer' has no active members.

GROUP             TOPIC         PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID
gf-x-normalizer   gf-x.raw.v1   0          120             120             0               -               -               -
gf-x-normalizer   gf-x.raw.v1   1          -               4               -               -               -               -

GROUP             TOPIC                   PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG   CONSUMER-ID  HOST  CLIENT-ID
gf-x-attributor   gf-x.events.v1          2          7               9               2     c-1          /127.0.0.1  gf
";
        assert_eq!(
            parse_group_lags(printed),
            vec![
                GroupLag {
                    group: "gf-x-normalizer".into(),
                    topic: "gf-x.raw.v1".into(),
                    partition: 0,
                    log_end: Some(120),
                    lag: Some(0)
                },
                GroupLag {
                    group: "gf-x-normalizer".into(),
                    topic: "gf-x.raw.v1".into(),
                    partition: 1,
                    log_end: Some(4),
                    lag: None
                },
                GroupLag {
                    group: "gf-x-attributor".into(),
                    topic: "gf-x.events.v1".into(),
                    partition: 2,
                    log_end: Some(9),
                    lag: Some(2)
                },
            ]
        );
        let rows = parse_group_lags(printed);
        assert_eq!(
            rows.iter().map(GroupLag::drained).collect::<Vec<_>>(),
            [true, false, false]
        );
    }
}
