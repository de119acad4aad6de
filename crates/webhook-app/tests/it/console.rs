//! The web console as HTTP sees it: which files are served, with which headers, and that
//! turning it off removes the page and nothing else. What the page does is tested in a real
//! browser (`console_browser`).

use hyper::StatusCode;
use hyper::header::HeaderMap;

use crate::utils::{ADMIN_KEY, API_KEY, Backend, Service, call, get_with_headers as fetch};

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_no_secret_in_it() {
    let mut service = Service::start().await;
    let root = format!("http://{}", service.addr);
    for (path, media_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/", "text/html; charset=utf-8"),
        ("/console/console.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
    ] {
        let (status, headers, body) = fetch(&format!("{root}{path}")).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(header(&headers, "content-type"), media_type, "{path}");
        let policy = header(&headers, "content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(policy.contains(directive), "{path}: {policy}");
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(header(&headers, "x-frame-options"), "DENY", "{path}");
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
        assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
        // The keys the service was started with appear in no file it serves.
        for key in [API_KEY, ADMIN_KEY] {
            assert!(!body.contains(key), "{path} holds a key");
        }
    }
    let (_, _, page) = fetch(&format!("{root}/console")).await;
    assert!(
        page.contains(r#"<meta name="webhookd-api-base" content="/cloud-agent">"#),
        "{page}"
    );
    // Only the three files: anything else under /console is the API's 404 problem.
    let missing = call("GET", &format!("{root}/console/app.js"), &[], "").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json["status"], 404, "{}", missing.json);
    service.stop().await;
}

#[tokio::test]
async fn turned_off_the_console_is_gone_and_the_api_stays() {
    let mut service = Service::start_with(Backend::Sqlite, |s| s.console.enabled = false)
        .await
        .unwrap();
    let root = format!("http://{}", service.addr);
    for path in ["/console", "/console/", "/console/console.js"] {
        let answer = call("GET", &format!("{root}{path}"), &[], "").await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
    let listed = call(
        "GET",
        &service.url("/events/webhooks"),
        &[("apikey", API_KEY)],
        "",
    )
    .await;
    assert_eq!(listed.status, StatusCode::OK);
    service.stop().await;
}

#[tokio::test]
async fn the_page_follows_another_base_path() {
    let mut service = Service::start_with(Backend::Sqlite, |s| s.base_path = "/api/v1".into())
        .await
        .unwrap();
    let (status, _, page) = fetch(&format!("http://{}/console", service.addr)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"<meta name="webhookd-api-base" content="/api/v1">"#),
        "{page}"
    );
    service.stop().await;
}
