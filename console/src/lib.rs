//! `gf run console`: the settings console at `/` and the control-plane API under `/api/v1`
//! (with its OpenAPI document), on `GF_CONSOLE_ADDR`.

pub mod api;
mod auth;
pub mod error;
pub mod ui;

use std::net::TcpListener;

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use gf_control::AdminKeys;
use gf_control::settings::Settings;
use gf_runtime::Config;
use gf_runtime::kafka::KafkaSettings;
use gf_runtime::topics::Topics;
use tokio_util::sync::CancellationToken;

pub use api::State;

/// The handlers' shared state, from the configuration.
pub fn state(config: &Config) -> anyhow::Result<State> {
    let pool = gf_runtime::db::pool(config.database_url()?, 4)?;
    Ok(State {
        settings: Settings::from_config(config, pool.clone())?,
        keys: AdminKeys::new(pool),
        kafka: KafkaSettings::from_config(config)?,
        topics: Topics::new(&config.topic_prefix),
        sessions: Default::default(),
        secure_cookies: !config.console_addr.ip().is_loopback(),
    })
}

/// Serves on `listener` until `stop`.
pub async fn serve(
    listener: TcpListener,
    state: State,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(api::routes)
            .configure(ui::routes)
    })
    .workers(2)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    tokio::spawn(async move {
        stop.cancelled().await;
        handle.stop(true).await;
    });
    server.await?;
    Ok(())
}

/// `gf run console`.
pub async fn run(config: &Config, stop: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.console_addr)
        .with_context(|| format!("cannot listen on GF_CONSOLE_ADDR {}", config.console_addr))?;
    tracing::info!(address = %config.console_addr, "control-plane API listening under /api/v1");
    serve(listener, state(config)?, stop).await
}
