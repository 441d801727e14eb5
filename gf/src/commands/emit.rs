//! `gf emit`: publishes one input event, acknowledged by the broker before it returns.

use std::time::Duration;

use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::topics::Topics;
use gf_schemas::conversation::{ConversationKind, ConversationMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use uuid::Uuid;

use gf_schemas::signal::{CustomAnalysisResult, Signal};

use crate::cli::{ConversationKindArg, EmitCommand, EmitConversationArgs, EmitSignalArgs};
use crate::output::Output;

pub async fn run(cmd: EmitCommand, config: &Config, out: &Output) -> anyhow::Result<()> {
    match cmd {
        EmitCommand::Conversation(args) => conversation(args, config, out).await,
        EmitCommand::Signal(args) => signal(args, config, out).await,
    }
}

async fn signal(args: EmitSignalArgs, config: &Config, out: &Output) -> anyhow::Result<()> {
    let analysis = |analysis_type| -> anyhow::Result<Option<CustomAnalysisResult>> {
        Ok(Some(CustomAnalysisResult {
            analysis_id: args
                .analysis_id
                .clone()
                .ok_or_else(|| anyhow::anyhow!("a custom analysis needs --analysis-id"))?,
            name: args
                .analysis_name
                .clone()
                .unwrap_or_else(|| args.analysis_id.clone().unwrap_or_default()),
            analysis_type,
            triggered: args.triggered,
            explanation: None,
        }))
    };
    let (kind, analysis_type) = args.kind.parts();
    let custom_analysis = match analysis_type {
        Some(analysis_type) => analysis(analysis_type)?,
        None => None,
    };
    let signal = Signal {
        id: args.id.unwrap_or_else(Uuid::now_v7),
        product_id: args.product,
        kind,
        external_conversation_id: args.conversation,
        score: args.score,
        label: args.label,
        custom_analysis,
        occurred_at: args.at.unwrap_or_else(chrono::Utc::now),
        details: Default::default(),
    };
    let topic = Topics::new(&config.topic_prefix).signals;
    let value = serde_json::to_vec(&signal)?;
    let (partition, offset) = publish(config, &topic, &signal.kafka_key(), &value).await?;
    out.print(
        &json!({"topic": topic, "partition": partition, "offset": offset, "signal": signal}),
        || {
            format!(
                "Published signal {} to {topic} (partition {partition}, offset {offset}).",
                signal.id
            )
        },
    )
}

async fn conversation(
    args: EmitConversationArgs,
    config: &Config,
    out: &Output,
) -> anyhow::Result<()> {
    if args.conversation.trim().is_empty() {
        anyhow::bail!("--conversation must not be empty");
    }
    let message = ConversationMessage {
        id: args.id.unwrap_or_else(Uuid::now_v7),
        kind: match args.kind {
            ConversationKindArg::Started => ConversationKind::Started,
            ConversationKindArg::Message => ConversationKind::Message,
            ConversationKindArg::Ended => ConversationKind::Ended,
        },
        product_id: args.product,
        external_conversation_id: args.conversation,
        external_user_id: args.user,
        email: args.email,
        name: args.name,
        occurred_at: args.at.unwrap_or_else(chrono::Utc::now),
        role: args.role,
        metadata: Default::default(),
    };
    let topic = Topics::new(&config.topic_prefix).conversations;
    let value = serde_json::to_vec(&message)?;
    let (partition, offset) = publish(config, &topic, &message.kafka_key(), &value).await?;
    out.print(
        &json!({"topic": topic, "partition": partition, "offset": offset, "message": message}),
        || {
            format!(
                "Published {:?} of conversation {} to {topic} (partition {partition}, offset {offset}).",
                message.kind, message.external_conversation_id
            )
        },
    )
}

/// Produces one record and waits for the broker's acknowledgement.
async fn publish(
    config: &Config,
    topic: &str,
    key: &str,
    value: &[u8],
) -> anyhow::Result<(i32, i64)> {
    let settings = KafkaSettings::from_config(config)?;
    let producer: FutureProducer = settings.producer_config("gf-emit").create()?;
    let record = FutureRecord::to(topic).key(key).payload(value);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|delivery| (delivery.partition, delivery.offset))
        .map_err(|(e, _)| anyhow::anyhow!("the broker did not take the message: {e}"))
}
