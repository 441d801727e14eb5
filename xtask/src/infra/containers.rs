//! `cargo xtask test --backend containers`: PostgreSQL and Apache Kafka in Docker containers,
//! started with testcontainers instead of the local processes, for machines with a Docker engine.
//! The containers live as long as [`Containers`]; dropping it removes them.

use anyhow::Context;
use testcontainers_modules::kafka::apache;
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{Container, ImageExt};

/// PostgreSQL's major version, as in docker-compose.yml.
const POSTGRES_TAG: &str = "16-alpine";
/// Apache Kafka in KRaft mode; the JVM image of the version the local broker runs, as in
/// docker-compose.yml.
const KAFKA_TAG: &str = gf_localkafka::KAFKA_VERSION;

pub struct Containers {
    _postgres: Container<Postgres>,
    _kafka: Container<apache::Kafka>,
    pub vars: Vec<(String, String)>,
}

pub fn start() -> anyhow::Result<Containers> {
    let postgres = Postgres::default()
        .with_tag(POSTGRES_TAG)
        .start()
        .context("starting PostgreSQL with testcontainers (is a Docker engine running?)")?;
    let database_url = format!(
        "postgres://postgres:postgres@{}:{}/postgres",
        postgres.get_host()?,
        postgres.get_host_port_ipv4(5432)?
    );
    let kafka = apache::Kafka::default()
        .with_jvm_image()
        .with_tag(KAFKA_TAG)
        .start()
        .context("starting Apache Kafka with testcontainers")?;
    let brokers = format!(
        "{}:{}",
        kafka.get_host()?,
        kafka.get_host_port_ipv4(apache::KAFKA_PORT)?
    );
    eprintln!("PostgreSQL  {database_url} (container)\nKafka       {brokers} (container)");
    Ok(Containers {
        _postgres: postgres,
        _kafka: kafka,
        vars: vec![
            ("DATABASE_URL".into(), database_url),
            ("KAFKA_BROKERS".into(), brokers),
        ],
    })
}
