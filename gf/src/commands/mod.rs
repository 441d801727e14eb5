//! One module per command group; each turns arguments into control-plane calls and output.

pub mod admin_key;
pub mod audit;
pub mod connection;
pub mod deadletters;
pub mod deliveries;
pub mod demo_sink;
pub mod emit;
pub mod endpoint;
pub mod import;
pub mod migrate;
pub mod outcomes;
pub mod product;
pub mod replay;
pub mod run;
pub mod tail;
pub mod topics;

use anyhow::Context;
use gf_control::ControlPlane;
use gf_runtime::Config;
use gf_runtime::token::SecretHasher;

/// The one way every front end changes settings (each change audited), as this shell's user,
/// on a small pool: a CLI command needs one or two connections.
pub fn settings(
    config: &Config,
) -> anyhow::Result<(gf_control::settings::Settings, gf_control::Actor)> {
    let pool = gf_runtime::db::pool(config.database_url()?, 2)?;
    Ok((
        gf_control::settings::Settings::from_config(config, pool)?,
        gf_control::Actor::cli(),
    ))
}

/// A small pool: a CLI command needs one or two connections.
pub fn control_plane(config: &Config) -> anyhow::Result<ControlPlane> {
    let pool = gf_runtime::db::pool(config.database_url()?, 2)?;
    let hasher = SecretHasher::new(config.scrypt_log_n).context("GF_SCRYPT_LOG_N")?;
    Ok(ControlPlane::new(pool, hasher))
}
