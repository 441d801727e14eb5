//! The console's defences over plain HTTP: cookie flags, security headers, CSRF, login.

use std::net::TcpListener;

use gf_control::{Actor, AdminKeys};
use gf_tests::{TestDb, test_config};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn sessions_are_guarded_and_forged_forms_change_nothing() {
    let _ = gf_runtime::telemetry::init("test", "warn");
    let db = TestDb::migrated().await;
    let config = test_config(&[("DATABASE_URL", &db.url)]);
    let keys = AdminKeys::new(gf_runtime::db::pool(&db.url, 1).unwrap());
    let actor = Actor::Cli { user: "t".into() };
    let (key_row, key) = keys.create("ui", &actor).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let _guard = stop.clone().drop_guard();
    tokio::spawn(gf_console::serve(
        listener,
        gf_console::state(&config).unwrap(),
        stop.clone(),
    ));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let get = |path: &str, cookie: Option<&str>| {
        let mut r = http.get(format!("{base}{path}"));
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };
    let post = |path: &str, cookie: Option<&str>, form: &[(&str, &str)]| {
        let mut r = http.post(format!("{base}{path}")).form(form);
        if let Some(c) = cookie {
            r = r.header("cookie", c);
        }
        r.send()
    };

    // The login page: strict headers, a form with an input named `key`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let page = loop {
        match get("/", None).await {
            Ok(r) => break r,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.text().await.unwrap().contains("name=\"key\""));
    // Pages need a session.
    let r = get("/products", None).await.unwrap();
    assert_eq!(
        (
            r.status().as_u16(),
            r.headers()["location"].to_str().unwrap()
        ),
        (303, "/")
    );
    let r = post("/login", None, &[("key", "gfa_nope")]).await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());

    let r = post("/login", None, &[("key", &key.reveal())])
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{set}");
    }
    assert!(!set.contains("Secure"), "loopback has no TLS: {set}");
    assert!(!set.contains(&key.reveal()));
    let cookie = set.split(';').next().unwrap().to_owned();
    let products = get("/products", Some(&cookie))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !products.contains(&key.reveal()),
        "a page shows the admin key"
    );
    let csrf = products
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF field")
        .to_owned();

    // A form without the session's CSRF token changes nothing.
    let control = gf_control::ControlPlane::new(
        gf_runtime::db::pool(&db.url, 1).unwrap(),
        gf_runtime::token::SecretHasher::new(10).unwrap(),
    );
    for forged in ["", "not-the-token"] {
        let r = post(
            "/products",
            Some(&cookie),
            &[("csrf", forged), ("name", "forged")],
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 403);
    }
    assert!(
        control
            .list_products(&gf_runtime::paging::PageRequest::everything())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let r = post(
        "/products",
        Some(&cookie),
        &[("csrf", &csrf), ("name", "real")],
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(
        control
            .list_products(&gf_runtime::paging::PageRequest::everything())
            .await
            .unwrap()
            .items
            .len(),
        1
    );

    // Revoking the key ends its sessions.
    keys.revoke(key_row.id, &actor).await.unwrap();
    let r = get("/products", Some(&cookie)).await.unwrap();
    assert_eq!(r.status(), 303);
}
