//! The command tree. The names are stable: scripts rely on them.

use clap::{Args, Parser, Subcommand, ValueEnum};
use gf_schemas::Provider;
use gf_schemas::signal::SignalType;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "gf",
    version,
    about = "Operate the gf analytics ingestion pipeline"
)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Apply pending PostgreSQL migrations (safe to run concurrently and repeatedly).
    Migrate,
    /// Manage Kafka topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// Manage products.
    #[command(subcommand)]
    Product(ProductCommand),
    /// Manage connections (one ingest URL each).
    #[command(subcommand)]
    Connection(ConnectionCommand),
    /// Run a pipeline stage in the foreground until SIGINT/SIGTERM.
    #[command(subcommand)]
    Run(RunCommand),
    /// Re-normalize a time range of the raw topic with the current mapper.
    Replay(ReplayArgs),
    /// Bring a customer's exported analytics history (Amplitude Export API zips, Segment or
    /// PostHog JSON lines) into a connection through the raw topic, as live traffic comes.
    Import(ImportArgs),
    /// Publish an input event (demos, tests, integrations).
    #[command(subcommand)]
    Emit(EmitCommand),
    /// Manage webhook endpoints (where quality events are delivered).
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Inspect and retry webhook deliveries.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Records a stage refused (gf.deadletter.v1): list them, replay them after a fix.
    #[command(subcommand)]
    Deadletters(DeadlettersCommand),
    /// Conversation outcomes: which conversations converted, refunded, turned negative or
    /// churned silently, and for how much.
    #[command(subcommand)]
    Outcomes(OutcomesCommand),
    /// Follow a topic from the terminal, decoded: "did my event arrive?". Reads without a consumer
    /// group, so it never takes records from a stage. With --json, one JSON document per record.
    Tail(TailArgs),
    /// Manage admin keys (they authorize the control-plane API and the console).
    #[command(subcommand, name = "admin-key")]
    AdminKey(AdminKeyCommand),
    /// The audit log: every change made with gf or the API, who made it and when.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// A webhook receiver for the demo: verifies each delivery's signature with the endpoint's
    /// secret (GF_DEMO_SINK_SECRET, or the file --secret-file, read at each delivery so the sink
    /// can start before the endpoint exists) and appends what it received to a JSON-lines file.
    #[command(hide = true)]
    DemoSink {
        #[arg(long)]
        listen: std::net::SocketAddr,
        #[arg(long)]
        log: std::path::PathBuf,
        #[arg(long)]
        secret_file: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum AdminKeyCommand {
    /// Create a key and print it (gfa_..., shown only this once).
    Create {
        #[arg(long)]
        name: String,
        /// admin (reads and changes) or read (reads only).
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: gf_control::Role,
        /// Limit the key to this product (repeat for several); without it, every product.
        #[arg(long = "product", value_name = "ID")]
        products: Vec<Uuid>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key at once.
    Revoke { id: Uuid },
}

fn parse_role(text: &str) -> Result<gf_control::Role, String> {
    text.parse()
        .map_err(|_| "expected admin or read".to_owned())
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Changes, oldest first.
    List {
        /// RFC 3339 or epoch milliseconds.
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 200)]
        limit: i64,
    },
}

#[derive(Subcommand)]
pub enum EndpointCommand {
    /// Create an endpoint and print its signing secret (shown only this once).
    Create {
        #[arg(long)]
        product: Uuid,
        #[arg(long)]
        url: String,
        /// Event types: exact (conversation.rating), prefixes (conversation.*) or *; comma-separated.
        #[arg(long, required = true)]
        events: Vec<String>,
    },
    /// List endpoints.
    List {
        #[arg(long)]
        product: Option<Uuid>,
    },
    /// Stop delivering to an endpoint (pending deliveries wait).
    Disable { id: Uuid },
    /// Deliver to an endpoint again (clears its failure record).
    Enable { id: Uuid },
    /// Issue a new signing secret; the previous one keeps signing alongside it for 24 hours.
    RotateSecret { id: Uuid },
    /// Send a sample event to the endpoint now and show what it answered.
    Test {
        id: Uuid,
        /// The sample's event type.
        #[arg(long, default_value = "conversation.started")]
        event: String,
    },
}

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// The newest deliveries.
    List {
        #[arg(long)]
        endpoint: Option<Uuid>,
        #[arg(long, value_enum)]
        status: Option<DeliveryStatusArg>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Send deliveries again: one by id, or every failed one since a time.
    Retry {
        #[arg(conflicts_with_all = ["endpoint", "failed_since"], required_unless_present = "failed_since")]
        id: Option<Uuid>,
        #[arg(long)]
        endpoint: Option<Uuid>,
        /// RFC 3339 or epoch milliseconds.
        #[arg(long, value_parser = parse_time)]
        failed_since: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Subcommand)]
pub enum OutcomesCommand {
    /// A product's conversations with their outcome, newest first.
    List {
        #[arg(long)]
        product: Uuid,
        /// converted, refunded, negative, churned_silently or open.
        #[arg(long, value_parser = parse_verdict)]
        verdict: Option<gf_schemas::outcome::Verdict>,
        /// Conversations quiet since this time or later (RFC 3339 or epoch milliseconds).
        #[arg(long, value_parser = parse_time)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// ... and before this time.
        #[arg(long, value_parser = parse_time)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One conversation's outcome and timeline.
    Show { conversation: Uuid },
}

fn parse_verdict(text: &str) -> Result<gf_schemas::outcome::Verdict, String> {
    text.parse()
        .map_err(|_| "expected converted, refunded, negative, churned_silently or open".to_owned())
}

#[derive(Args)]
pub struct TailArgs {
    /// The topic to follow.
    #[arg(value_enum)]
    pub topic: TailTopic,
    /// Only records of this product.
    #[arg(long)]
    pub product: Option<Uuid>,
    /// Only records of this connection (raw, events, attributed, deadletter).
    #[arg(long)]
    pub connection: Option<Uuid>,
    /// Start at the oldest record the topic retains instead of at its end.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many matching records.
    #[arg(long)]
    pub limit: Option<u64>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TailTopic {
    Raw,
    Events,
    Attributed,
    Conversations,
    Signals,
    Deadletter,
    Outcomes,
}

#[derive(Subcommand)]
pub enum DeadlettersCommand {
    /// Dead letters, oldest first: stage, reason class and reason, source, the failing event.
    List {
        #[command(flatten)]
        filter: DeadletterFilterArgs,
    },
    /// Produce each dead letter's source record again to its source topic, so the current code
    /// processes it (read back by offset while the topic retains it).
    Replay {
        #[command(flatten)]
        filter: DeadletterFilterArgs,
        /// Count what would be replayed; produce nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Args)]
pub struct DeadletterFilterArgs {
    /// Only this stage's (normalizer, attributor, notifier).
    #[arg(long)]
    pub stage: Option<String>,
    /// Only those that failed at or after this time (RFC 3339 or epoch milliseconds).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DeliveryStatusArg {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatusArg {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatusArg::Pending => "pending",
            DeliveryStatusArg::Delivered => "delivered",
            DeliveryStatusArg::Failed => "failed",
        }
    }
}

#[derive(Subcommand)]
pub enum EmitCommand {
    /// A conversation started / message / ended, with the SDK's user identity, to gf.conversations.v1.
    Conversation(EmitConversationArgs),
    /// An analysis result to gf.signals.v1.
    Signal(EmitSignalArgs),
}

#[derive(Args)]
pub struct EmitSignalArgs {
    #[arg(long)]
    pub product: Uuid,
    #[arg(long, value_parser = signal_type())]
    pub kind: SignalType,
    /// The conversation's external id (conversation and custom-analysis signals).
    #[arg(long)]
    pub conversation: Option<String>,
    /// CQI / PQI 0..100, sentiment -1..1, product sentiment 0..100, scores 0..1, rating as given.
    #[arg(long, allow_hyphen_values = true)]
    pub score: Option<f64>,
    /// Commercial intent label: low, medium, high.
    #[arg(long)]
    pub label: Option<String>,
    /// Custom analysis: its id and name; with --triggered when it fired.
    #[arg(long)]
    pub analysis_id: Option<String>,
    #[arg(long)]
    pub analysis_name: Option<String>,
    #[arg(long)]
    pub triggered: bool,
    #[arg(long, value_parser = parse_time)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// The signal id (default: a new one); the same id again is a redelivery.
    #[arg(long)]
    pub id: Option<Uuid>,
}

/// `--kind`: one of the signal types, by the names the wire contract gives them.
fn signal_type() -> impl clap::builder::TypedValueParser<Value = SignalType> {
    use clap::builder::TypedValueParser;
    use strum::IntoEnumIterator;
    clap::builder::PossibleValuesParser::new(SignalType::iter().map(<&'static str>::from))
        .try_map(|name| name.parse::<SignalType>())
}

#[derive(Args)]
pub struct EmitConversationArgs {
    #[arg(long)]
    pub product: Uuid,
    /// The conversation's external id.
    #[arg(long)]
    pub conversation: String,
    #[arg(long, value_enum, default_value = "message")]
    pub kind: ConversationKindArg,
    /// The user's external id (externalUserId).
    #[arg(long)]
    pub user: Option<String>,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub name: Option<String>,
    /// When it happened (RFC 3339 or epoch milliseconds; default: now).
    #[arg(long, value_parser = parse_time)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// Who spoke, for a message (user, assistant, ...).
    #[arg(long)]
    pub role: Option<String>,
    /// The message id (default: a new one); the same id again is a redelivery.
    #[arg(long)]
    pub id: Option<Uuid>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ConversationKindArg {
    Started,
    Message,
    Ended,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// Start of the range (RFC 3339, e.g. 2026-05-18T12:00:00Z, or milliseconds since the epoch).
    #[arg(long, value_parser = parse_time)]
    pub from: chrono::DateTime<chrono::Utc>,
    /// End of the range, exclusive (default: everything received so far).
    #[arg(long, value_parser = parse_time)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Only this connection's records.
    #[arg(long)]
    pub connection: Option<Uuid>,
    /// Count what would be replayed; produce nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args)]
pub struct ImportArgs {
    /// The connection the history belongs to; its provider decides how lines are read.
    #[arg(long)]
    pub connection: Uuid,
    /// Export files: a .zip of .json.gz files (Amplitude's Export API), .gz, or plain JSON
    /// lines, one event per line.
    #[arg(required = true)]
    pub files: Vec<std::path::PathBuf>,
    /// Where to keep the resume states (default: beside each file,
    /// FILE.gf-import-CONNECTION.json).
    #[arg(long)]
    pub state_dir: Option<std::path::PathBuf>,
    /// Import every file from its first line, even one an earlier run finished.
    #[arg(long)]
    pub restart: bool,
    /// Events per batch at most (default and ceiling: GF_MAX_BATCH_EVENTS).
    #[arg(long)]
    pub batch_events: Option<usize>,
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return chrono::DateTime::from_timestamp_millis(ms)
            .ok_or_else(|| format!("{ms} is out of range"));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("expected RFC 3339 (2026-05-18T12:00:00Z) or epoch milliseconds: {e}"))
}

#[derive(Subcommand)]
pub enum RunCommand {
    /// The HTTP receiver on GF_RECEIVER_ADDR.
    Receiver,
    /// The normalizer: gf.raw.v1 to gf.events.v1 in group gf-normalizer.
    Normalizer,
    /// The attributor: gf.events.v1 + gf.conversations.v1 to PostgreSQL and
    /// gf.events.attributed.v1 in group gf-attributor.
    Attributor,
    /// The notifier: gf.signals.v1 + gf.conversations.v1 to signed webhooks, in group gf-notifier.
    Notifier,
    /// The control-plane API under /api/v1 on GF_CONSOLE_ADDR (admin keys: gf admin-key create).
    Console,
    /// All four stages and the console in one process.
    All,
}

impl RunCommand {
    /// The OpenTelemetry `service.name` of the process.
    pub fn service_name(&self) -> &'static str {
        match self {
            RunCommand::Receiver => "gf-receiver",
            RunCommand::Normalizer => "gf-normalizer",
            RunCommand::Attributor => "gf-attributor",
            RunCommand::Notifier => "gf-notifier",
            RunCommand::Console => "gf-console",
            RunCommand::All => "greenflash",
        }
    }
}

#[derive(Subcommand)]
pub enum TopicsCommand {
    /// Create the pipeline's topics that do not exist yet.
    Ensure,
}

#[derive(Subcommand)]
pub enum ProductCommand {
    /// Create a product.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List products.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ProviderArg {
    Amplitude,
    Segment,
    Posthog,
    /// The public events API (canonical field names).
    Api,
}

impl From<ProviderArg> for Provider {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Amplitude => Provider::Amplitude,
            ProviderArg::Segment => Provider::Segment,
            ProviderArg::Posthog => Provider::Posthog,
            ProviderArg::Api => Provider::Api,
        }
    }
}

#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Create a connection and print its ingest URL (shown only this once).
    Create {
        #[arg(long)]
        product: Uuid,
        #[arg(long, value_enum)]
        provider: ProviderArg,
        /// Also require this shared secret in the x-greenflash-secret header (8+ characters).
        #[arg(long)]
        secret: Option<String>,
    },
    /// List connections.
    List {
        #[arg(long)]
        product: Option<Uuid>,
    },
    /// Show one connection.
    Show { id: Uuid },
    /// Issue a new ingest URL; the old one is refused at once.
    Rotate { id: Uuid },
    /// Answer 204 and drop events until resumed.
    Pause { id: Uuid },
    /// Accept events again after a pause.
    Resume { id: Uuid },
    /// Turn the connection off for good.
    Disconnect { id: Uuid },
    /// Set or clear the shared secret.
    SetSecret(SetSecretArgs),
}

#[derive(Args)]
pub struct SetSecretArgs {
    pub id: Uuid,
    /// The new shared secret (8+ printable ASCII characters).
    #[arg(long, conflicts_with = "clear", required_unless_present = "clear")]
    pub secret: Option<String>,
    /// Remove the shared secret requirement.
    #[arg(long)]
    pub clear: bool,
}
