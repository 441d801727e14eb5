//! Building and running the HTTP server with its shared state.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use deadpool_postgres::Pool;
use gf_control::ControlPlane;
use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::producer::SharedProducer;
use gf_runtime::token::SecretHasher;
use gf_runtime::topics::Topics;
use tokio_util::sync::CancellationToken;

use crate::activity::ActivityRecorder;
use crate::auth::{Authenticator, listen_for_changes};
use crate::metrics::Metrics;
use crate::sink::{KafkaSink, RawSink, SinkError};

/// Limits and timeouts of the receiver, from [`Config`].
#[derive(Clone, Debug)]
pub struct ReceiverOptions {
    pub max_body_bytes: usize,
    /// Body bytes in flight at most, compressed and decoded (`GF_MAX_BODY_BYTES_IN_FLIGHT`).
    pub body_budget_bytes: usize,
    pub max_batch_events: usize,
    pub produce_timeout: Duration,
    pub auth_cache_ttl: Duration,
    /// HTTP worker threads; `None` for one per core.
    pub workers: Option<usize>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served instead of the public port.
    pub admin_addr: Option<std::net::SocketAddr>,
    /// The process's shared producer (`gf run all`); `None`: one of its own.
    pub producer: Option<SharedProducer>,
}

impl ReceiverOptions {
    pub fn from_config(config: &Config) -> Self {
        ReceiverOptions {
            max_body_bytes: config.max_body_bytes,
            body_budget_bytes: config.max_body_bytes_in_flight,
            max_batch_events: config.max_batch_events,
            produce_timeout: Duration::from_millis(config.produce_timeout_ms),
            auth_cache_ttl: Duration::from_secs(config.auth_cache_ttl_secs),
            workers: None,
            admin_addr: config.admin_addr,
            producer: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error(transparent)]
    Config(#[from] gf_runtime::config::ConfigError),
    #[error(transparent)]
    Db(#[from] gf_runtime::db::DbError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("HTTP server error: {0}")]
    Io(#[from] std::io::Error),
}

pub struct AppState {
    pub auth: Arc<Authenticator>,
    pub sink: Arc<dyn RawSink>,
    pub activity: ActivityRecorder,
    pub metrics: Metrics,
    pub pool: Pool,
    pub options: ReceiverOptions,
    /// What `/readyz` answers, refreshed in the background.
    pub readiness: Arc<crate::readiness::Readiness>,
    /// Body bytes in flight.
    pub budget: Arc<crate::budget::BodyBudget>,
}

pub struct Receiver {
    state: web::Data<AppState>,
    stop: CancellationToken,
    activity_writer: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Connects the pieces and starts the background tasks (connection-change listener, activity
    /// writer) on the current Tokio runtime. `stop` ends them and the server.
    pub fn new(
        config: &Config,
        options: ReceiverOptions,
        registry: prometheus::Registry,
        stop: CancellationToken,
    ) -> Result<Receiver, ReceiverError> {
        let kafka = KafkaSettings::from_config(config)?;
        let topic = Topics::new(&config.topic_prefix).raw;
        let sink: Arc<dyn RawSink> = Arc::new(match &options.producer {
            Some(shared) => KafkaSink::with_producer(shared.clone(), &topic),
            None => KafkaSink::new(&kafka, &topic, options.produce_timeout)?,
        });
        Receiver::with_sink(config, options, registry, sink, stop)
    }

    /// [`Receiver::new`] appending to `sink` (tests answer from a [`crate::sink::MemorySink`]).
    pub fn with_sink(
        config: &Config,
        options: ReceiverOptions,
        registry: prometheus::Registry,
        sink: Arc<dyn RawSink>,
        stop: CancellationToken,
    ) -> Result<Receiver, ReceiverError> {
        let database_url = config.database_url()?.to_owned();
        let pool = gf_runtime::db::pool(&database_url, 16)?;
        // The hasher's cost only matters for new hashes, which the receiver never makes.
        let hasher = SecretHasher::new(config.scrypt_log_n).map_err(|_| {
            gf_runtime::config::ConfigError::Invalid {
                name: "GF_SCRYPT_LOG_N",
                value: config.scrypt_log_n.to_string(),
                expected: "10 to 22",
            }
        })?;
        let control = ControlPlane::new(pool.clone(), hasher);
        // Half the cores at most: a flood of guesses cannot take the CPU from accepted senders.
        let verify_slots = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        let metrics = Metrics::new(registry)?;
        let auth = Arc::new(
            Authenticator::new(control.clone(), options.auth_cache_ttl, verify_slots)
                .counting_into(metrics.scrypt_verifications.clone()),
        );
        let database_url_for_activity = database_url.clone();
        tokio::spawn(listen_for_changes(database_url, auth.clone(), stop.clone()));
        // A pool of its own: its connections then live on this runtime, not on an HTTP worker's,
        // and survive the workers at shutdown for the last flush.
        let activity_pool = gf_runtime::db::pool(&database_url_for_activity, 2)?;
        let (activity, activity_writer) = ActivityRecorder::spawn(
            ControlPlane::new(activity_pool.clone(), hasher),
            gf_control::traffic::Traffic::new(activity_pool),
            stop.clone(),
        );
        let readiness = Arc::new(crate::readiness::Readiness::default());
        readiness.spawn(sink.clone(), pool.clone(), stop.clone());
        let state = AppState {
            auth,
            sink,
            activity,
            metrics,
            pool,
            budget: crate::budget::body_budget(options.body_budget_bytes, options.max_body_bytes),
            options,
            readiness,
        };
        Ok(Receiver {
            state: web::Data::new(state),
            stop,
            activity_writer,
        })
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The state the handlers share, for serving them in-process (tests).
    pub fn data(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Binds the server to `listener`; the returned future serves until `stop` is cancelled, then
    /// finishes in-flight requests (up to 30 s) and waits for unacknowledged records.
    pub fn serve(
        self,
        listener: TcpListener,
    ) -> Result<impl Future<Output = Result<(), ReceiverError>> + Send + 'static, ReceiverError>
    {
        let state = self.state.clone();
        let separate = self.state.options.admin_addr.is_some();
        let mut server = HttpServer::new(move || {
            App::new().app_data(state.clone()).configure(if separate {
                crate::handler::ingest_routes
            } else {
                crate::handler::routes
            })
        })
        .disable_signals()
        .shutdown_timeout(30)
        .listen(listener)?;
        if let Some(workers) = self.state.options.workers {
            server = server.workers(workers);
        }
        // The operator endpoints on their own address, off the public port.
        let admin = match self.state.options.admin_addr {
            Some(addr) => {
                let state = self.state.clone();
                let admin = HttpServer::new(move || {
                    App::new()
                        .app_data(state.clone())
                        .configure(crate::handler::operator_routes)
                })
                .disable_signals()
                .workers(1)
                .bind(addr)?
                .run();
                tracing::info!(%addr, "operator endpoints listening");
                Some(admin)
            }
            None => None,
        };
        let server = server.run();
        let handle = server.handle();
        let admin_handle = admin.as_ref().map(|a| a.handle());
        if let Some(admin) = admin {
            tokio::spawn(admin);
        }
        let stop = self.stop.clone();
        Ok(async move {
            tokio::spawn(async move {
                stop.cancelled().await;
                if let Some(admin) = admin_handle {
                    admin.stop(true).await;
                }
                handle.stop(true).await;
            });
            server.await?;
            self.stop.cancel();
            let sink = self.state.sink.clone();
            let _ = tokio::task::spawn_blocking(move || sink.flush(Duration::from_secs(10))).await;
            let _ = self.activity_writer.await;
            Ok(())
        })
    }
}
