//! The web console in a real browser: headless Chromium, driven through chromedriver, against
//! a real webhookd and real receivers on 127.0.0.1. Each test signs in as a user would (typing
//! the key), works through the page, and checks what it did through the REST API and the
//! receivers. Screenshots of the main pages go to `target/console-screenshots/`.

use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::utils::{ADMIN_KEY, API_KEY, Backend, Receiver, Reply, Service, call};

const WAIT: Duration = Duration::from_secs(15);

fn wallet_headers() -> [(&'static str, &'static str); 2] {
    [("apikey", API_KEY), ("content-type", "application/json")]
}

async fn publish(service: &Service, key: &str, body: Value) -> String {
    let answer = call(
        "POST",
        &service.url("/events"),
        &[("apikey", key), ("content-type", "application/json")],
        &body.to_string(),
    )
    .await;
    assert_eq!(answer.status, 202, "{}", answer.json);
    answer.json["id"].as_str().unwrap().to_owned()
}

fn connection(state: &str) -> Value {
    json!({"type": "ConnectionUpdated", "data": {"connectionId": uuid::Uuid::new_v4().to_string(), "state": state}})
}

/// Signs in by typing `key` into the form, as a user does, and waits for the first view.
async fn sign_in(browser: &Browser, service: &Service, key: &str, admin: bool) {
    browser
        .goto(&format!("http://{}/console", service.addr))
        .await;
    browser.wait_for("#signin-form").await;
    if admin {
        browser.click("#role-admin").await;
    }
    browser.fill("#signin-key", key).await;
    browser.click("#signin-submit").await;
    let view = if admin { "#overview .tile" } else { "#webhook-list" };
    browser.wait_for(view).await;
}

/// The wallet's journey: register, publish, see it arrive, see a failing receiver's attempts,
/// redeliver one, bulk-redeliver the rest and watch the job end, test, rotate, disable, delete.
#[tokio::test]
async fn a_wallet_registers_watches_and_fixes_its_deliveries() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut service = Service::start_with(Backend::Sqlite, |_| {}).await.unwrap();
    let healthy = Receiver::start(&[]).await;
    // Three 500s per event for the first four events (the retry policy's 3 attempts), then 200.
    let broken = Receiver::start_replies(
        &std::iter::repeat_n(
            Reply::status(500).body("upstream <b>down</b>"),
            12,
        )
        .collect::<Vec<_>>(),
    )
    .await;

    sign_in(&browser, &service, API_KEY, false).await;
    browser.wait_for("#no-webhooks").await;
    browser.screenshot("signed-in-empty").await;

    // Register the healthy receiver through the form.
    browser.click("#new-webhook").await;
    browser.fill(".webhook-form input[name=url]", &healthy.url()).await;
    browser
        .fill(".webhook-form textarea[name=customHeaders]", "X-Team: payments")
        .await;
    browser.click(".webhook-form button[type=submit]").await;
    let secret = browser.text_of("#shown-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = call("GET", &service.url("/events/webhooks"), &wallet_headers(), "").await;
    let webhooks = listed.json["contents"].as_array().unwrap().clone();
    assert_eq!(webhooks.len(), 1, "{}", listed.json);
    assert_eq!(webhooks[0]["url"], healthy.url());
    assert_eq!(webhooks[0]["customHeaders"]["X-Team"], "payments");
    let healthy_id = webhooks[0]["id"].as_str().unwrap().to_owned();

    // An event arrives, and its delivery shows as delivered with the exact envelope sent.
    let event = publish(&service, API_KEY, connection("InvitationGenerated")).await;
    let got = healthy.wait_for(1).await;
    browser.click("nav a[href='#/deliveries']").await;
    browser
        .wait_for("#deliveries tr[data-state=delivered]")
        .await;
    browser.click("#deliveries tr[data-state=delivered] button.open").await;
    browser.wait_for(".delivery .attempts tr.attempt").await;
    let raw = browser.text_of(".delivery .envelope-raw").await;
    assert_eq!(raw.as_bytes(), &got[0].body[..], "the envelope shown is not the one sent");
    assert!(raw.contains(&event));
    browser.screenshot("delivery-delivered").await;

    // A broken receiver: its deliveries are exhausted, and their attempts show the answers.
    browser.click("nav a[href='#/webhooks']").await;
    browser.click("#new-webhook").await;
    browser.fill(".webhook-form input[name=url]", &broken.url()).await;
    browser.click(".webhook-form button[type=submit]").await;
    browser.wait_for("#shown-secret").await;
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(publish(&service, API_KEY, connection("ConnectionRequestSent")).await);
    }
    broken.wait_for(12).await;
    healthy.wait_for(5).await;
    browser
        .goto(&format!(
            "http://{}/console#/deliveries?state=exhausted",
            service.addr
        ))
        .await;
    browser
        .wait_until(
            "return document.querySelectorAll('#deliveries tr[data-state=exhausted]').length === 4",
            WAIT,
        )
        .await;
    browser.screenshot("deliveries-exhausted").await;
    browser.click("#deliveries tr[data-state=exhausted] button.open").await;
    browser.wait_for(".delivery .attempts tr.attempt").await;
    let attempts = browser
        .execute("return [...document.querySelectorAll('.delivery .attempts tr.attempt')].map(r => r.textContent)", vec![])
        .await;
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    for attempt in attempts {
        let text = attempt.as_str().unwrap();
        assert!(text.contains("500") && text.contains("upstream <b>down</b>"), "{text}");
    }
    browser.screenshot("delivery-attempts").await;

    // Redeliver that one: the receiver answers 200 now (its script is used up).
    let opened = browser
        .execute("return document.querySelector('.delivery').getAttribute('aria-label').split(' ')[1]", vec![])
        .await;
    let opened = opened.as_str().unwrap().to_owned();
    browser.click(".delivery button.redeliver").await;
    broken.wait_for(13).await;
    browser
        .wait_until(
            "document.querySelector('.delivery button.refresh').click(); \
             return document.querySelector('.delivery')?.dataset.state === 'delivered'",
            WAIT,
        )
        .await;
    let one = call(
        "GET",
        &service.url(&format!("/events/deliveries/{opened}")),
        &wallet_headers(),
        "",
    )
    .await;
    assert_eq!(one.json["state"], "delivered", "{}", one.json);
    assert_eq!(one.json["attemptCount"], 4, "{}", one.json);

    // Bulk-redeliver the other three from the webhook's card and watch the job end.
    browser.click("nav a[href='#/webhooks']").await;
    let broken_card = format!("section.webhook[aria-label='Webhook {}']", broken.url());
    browser
        .click(&format!("{broken_card} button.bulk"))
        .await;
    browser
        .click(&format!("{broken_card} .bulk-form button[type=submit]"))
        .await;
    browser
        .wait_until(
            &format!(
                "const s = document.querySelector(\"{broken_card} .job-state\"); \
                 return s && s.dataset.state === 'completed'"
            ),
            WAIT,
        )
        .await;
    let requeued = browser
        .text_of(&format!("{broken_card} .job-state .requeued"))
        .await;
    let total = browser.text_of(&format!("{broken_card} .job-state .total")).await;
    assert_eq!((requeued.as_str(), total.as_str()), ("3", "3"));
    browser.screenshot("bulk-redelivery-done").await;
    broken.wait_for(16).await;

    // Send a test event and see the receiver's answer.
    let healthy_card = format!("#webhook-{healthy_id}");
    browser.click(&format!("{healthy_card} button.test")).await;
    browser
        .wait_for(&format!("{healthy_card} .test-result"))
        .await;
    let result = browser.text_of(&format!("{healthy_card} .test-result")).await;
    assert!(result.contains("delivered") && result.contains("200"), "{result}");

    // Rotate: a new secret is shown once, and it is the one that signs from now on.
    browser.click(&format!("{healthy_card} button.rotate")).await;
    browser
        .click(&format!("{healthy_card} .confirm-yes"))
        .await;
    let rotated = browser.text_of("#shown-secret").await;
    assert!(rotated.starts_with("whsec_") && rotated != secret);

    // Disable, then delete, through the page; the API agrees.
    browser.click(&format!("{healthy_card} button.toggle")).await;
    browser
        .wait_until(
            &format!("return document.querySelector('{healthy_card} button.toggle')?.textContent === 'Enable'"),
            WAIT,
        )
        .await;
    let got = call(
        "GET",
        &service.url(&format!("/events/webhooks/{healthy_id}")),
        &wallet_headers(),
        "",
    )
    .await;
    assert_eq!(got.json["enabled"], false, "{}", got.json);
    browser.click(&format!("{healthy_card} button.delete")).await;
    browser
        .click(&format!("{healthy_card} .confirm-yes"))
        .await;
    browser
        .wait_until(
            &format!("return document.querySelector('{healthy_card}') === null"),
            WAIT,
        )
        .await;
    let gone = call(
        "GET",
        &service.url(&format!("/events/webhooks/{healthy_id}")),
        &wallet_headers(),
        "",
    )
    .await;
    assert_eq!(gone.status, 404);

    browser.close().await;
    service.stop().await;
}
