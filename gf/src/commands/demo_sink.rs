//! `gf demo-sink` (hidden): the webhook receiver `cargo xtask demo` points an endpoint at. It
//! checks every delivery the way a customer should (Standard Webhooks headers, 5-minute
//! tolerance) and records the result, so the demo can show "signature verified".

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use anyhow::Context;
use gf_webhooks::signing::{SigningSecret, verify};
use serde_json::{Value, json};

struct Sink {
    secret: SecretSource,
    log: Mutex<std::fs::File>,
}

enum SecretSource {
    Fixed(SigningSecret),
    File(PathBuf),
}

impl SecretSource {
    fn current(&self) -> Option<SigningSecret> {
        match self {
            SecretSource::Fixed(secret) => Some(secret.clone()),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .ok()
                .and_then(|s| SigningSecret::parse(s.trim()).ok()),
        }
    }
}

async fn receive(request: HttpRequest, body: web::Bytes, sink: web::Data<Sink>) -> HttpResponse {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let delivery = header("webhook-id");
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap_or_default();
    let verified = sink.secret.current().is_some_and(|secret| {
        verify(
            &secret,
            &delivery,
            timestamp,
            &body,
            &header("webhook-signature"),
            chrono::Utc::now().timestamp(),
        )
        .is_ok()
    });
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let line = json!({"delivery": delivery, "verified": verified, "event": event});
    if let Ok(mut file) = sink.log.lock() {
        let _ = writeln!(file, "{line}");
    }
    if verified {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::Unauthorized().body("signature did not verify")
    }
}

pub async fn run(
    listen: SocketAddr,
    log: PathBuf,
    secret_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let secret = match (std::env::var("GF_DEMO_SINK_SECRET"), secret_file) {
        (Ok(secret), _) => SecretSource::Fixed(SigningSecret::parse(&secret)?),
        (Err(_), Some(path)) => SecretSource::File(path),
        (Err(_), None) => anyhow::bail!(
            "give the endpoint's whsec_ secret in GF_DEMO_SINK_SECRET or a file with --secret-file"
        ),
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let sink = web::Data::new(Sink {
        secret,
        log: Mutex::new(file),
    });
    HttpServer::new(move || {
        App::new()
            .app_data(sink.clone())
            .default_service(web::post().to(receive))
    })
    .workers(1)
    .bind(listen)
    .with_context(|| format!("cannot listen on {listen}"))?
    .run()
    .await?;
    Ok(())
}
