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

/// Polls the API until the delivery `id` is in `state`, and returns it.
async fn wait_for_state(service: &Service, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let one = call(
            "GET",
            &service.url(&format!("/events/deliveries/{id}")),
            &wallet_headers(),
            "",
        )
        .await;
        if one.json["state"] == state {
            return one.json;
        }
        assert!(std::time::Instant::now() < deadline, "still {}", one.json);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every request the page made since it loaded went to this service: the console's files, the
/// REST API under its base path, or `/ready`. None went to another host.
async fn assert_only_own_requests(browser: &Browser, service: &Service) {
    let requests = browser
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await;
    let root = format!("http://{}/", service.addr);
    let requests = requests.as_array().unwrap();
    assert!(!requests.is_empty());
    for request in requests {
        let url = request.as_str().unwrap();
        let path = url
            .strip_prefix(&root)
            .unwrap_or_else(|| panic!("a request to {url}"));
        assert!(
            path.starts_with("console/") || path.starts_with("cloud-agent/") || path == "ready",
            "a request to {url}"
        );
    }
}

/// Signs in by typing `key` into the form, as a user does, and waits for the first view.
async fn sign_in(browser: &Browser, service: &Service, key: &str, admin: bool) {
    browser
        .goto(&format!("http://{}/console", service.addr))
        .await;
    browser.wait_for("#signin-form", WAIT).await;
    if admin {
        browser.click("#role-admin").await;
    }
    browser.fill("#signin-key", key).await;
    browser.click("#signin-submit").await;
    let view = if admin {
        "#overview .tile"
    } else {
        "#webhook-list"
    };
    browser.wait_for(view, WAIT).await;
}

/// The wallet's journey: register, publish, see it arrive, see a failing receiver's attempts,
/// redeliver one, bulk-redeliver the rest and watch the job end, test, rotate, disable, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wallet_registers_watches_and_fixes_its_deliveries() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // Failures in a row would open the broken receiver's breaker and pause its retries.
    let mut service = Service::start_with(Backend::Sqlite, |s| {
        s.dispatcher.breaker_failure_threshold = 100;
    })
    .await
    .unwrap();
    let healthy = Receiver::start(&[]).await;
    // Three 500s per event for the first four events (the retry policy's 3 attempts), then 200.
    let broken = Receiver::start_replies(
        &std::iter::repeat_n(Reply::status(500).body("upstream <b>down</b>"), 12)
            .collect::<Vec<_>>(),
    )
    .await;

    sign_in(&browser, &service, API_KEY, false).await;
    browser.wait_for("#no-webhooks", WAIT).await;
    browser.screenshot("signed-in-empty").await;

    // Register the healthy receiver through the form.
    browser.click("#new-webhook").await;
    browser
        .fill(".webhook-form input[name=url]", &healthy.url())
        .await;
    browser
        .fill(
            ".webhook-form textarea[name=customHeaders]",
            "X-Team: payments",
        )
        .await;
    browser.click(".webhook-form button[type=submit]").await;
    let secret = browser.text_of("#shown-secret").await;
    assert!(secret.starts_with("whsec_"), "{secret}");
    let listed = call(
        "GET",
        &service.url("/events/webhooks"),
        &wallet_headers(),
        "",
    )
    .await;
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
        .wait_for("#deliveries tr[data-state=delivered]", WAIT)
        .await;
    browser
        .click("#deliveries tr[data-state=delivered] button.open")
        .await;
    browser
        .wait_for(".delivery .attempts tr.attempt", WAIT)
        .await;
    let raw = browser.text_of(".delivery .envelope-raw").await;
    assert_eq!(
        raw.as_bytes(),
        &got[0].body[..],
        "the envelope shown is not the one sent"
    );
    assert!(raw.contains(&event));
    browser.screenshot("delivery-delivered").await;

    // A broken receiver: its deliveries are exhausted, and their attempts show the answers.
    browser.click("nav a[href='#/webhooks']").await;
    browser.click("#new-webhook").await;
    browser
        .fill(".webhook-form input[name=url]", &broken.url())
        .await;
    browser.click(".webhook-form button[type=submit]").await;
    browser.wait_for("#shown-secret", WAIT).await;
    let mut events = Vec::new();
    for _ in 0..4 {
        events.push(publish(&service, API_KEY, connection("ConnectionRequestSent")).await);
    }
    broken.wait_for(12).await;
    healthy.wait_for(5).await;
    // Found with the filter form, then by an event's id.
    browser.click("nav a[href='#/deliveries']").await;
    browser.click("#filter-state option[value=exhausted]").await;
    browser.click("#filter-apply").await;
    browser
        .wait_until(
            "document.querySelectorAll('#deliveries tr[data-state=exhausted]').length === 4",
            WAIT,
        )
        .await;
    browser.screenshot("deliveries-exhausted").await;
    browser.fill("#find-id", &events[0]).await;
    browser
        .click("form[aria-label='Find by id'] button[type=submit]")
        .await;
    browser
        .wait_for("#delivery-detail .envelope-raw", WAIT)
        .await;
    let found = browser.text_of("#delivery-detail").await;
    assert!(found.contains(&events[0]), "{found}");
    assert_eq!(
        browser
            .execute(
                "return document.querySelectorAll('#delivery-detail li').length",
                vec![]
            )
            .await,
        2,
        "the event went to both webhooks: {found}"
    );
    browser
        .click("#deliveries tr[data-state=exhausted] button.open")
        .await;
    browser
        .wait_for(".delivery .attempts tr.attempt", WAIT)
        .await;
    let attempts = browser
        .execute("return [...document.querySelectorAll('.delivery .attempts tr.attempt')].map(r => r.textContent)", vec![])
        .await;
    let attempts = attempts.as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    for attempt in attempts {
        let text = attempt.as_str().unwrap();
        assert!(
            text.contains("500") && text.contains("upstream <b>down</b>"),
            "{text}"
        );
    }
    browser.screenshot("delivery-attempts").await;

    // Redeliver that one: the receiver answers 200 now (its script is used up).
    let opened = browser
        .execute(
            "return document.querySelector('.delivery').getAttribute('aria-label').split(' ')[1]",
            vec![],
        )
        .await;
    let opened = opened.as_str().unwrap().to_owned();
    browser.click(".delivery button.redeliver").await;
    broken.wait_for(13).await;
    let one = wait_for_state(&service, &opened, "delivered").await;
    assert_eq!(one["attemptCount"], 4, "{one}");
    browser.click(".delivery button.refresh").await;
    browser
        .wait_until(
            "document.querySelector('.delivery')?.dataset.state === 'delivered'",
            WAIT,
        )
        .await;

    // Bulk-redeliver the other three from the webhook's card and watch the job end.
    browser.click("nav a[href='#/webhooks']").await;
    let broken_card = format!("section.webhook[aria-label='Webhook {}']", broken.url());
    browser.click(&format!("{broken_card} button.bulk")).await;
    browser
        .click(&format!("{broken_card} .bulk-form button[type=submit]"))
        .await;
    browser
        .wait_until(
            &format!(
                "document.querySelector(\"{broken_card} .job-state\")?.dataset.state === 'completed'"
            ),
            WAIT,
        )
        .await;
    let requeued = browser
        .text_of(&format!("{broken_card} .job-state .requeued"))
        .await;
    let total = browser
        .text_of(&format!("{broken_card} .job-state .total"))
        .await;
    assert_eq!((requeued.as_str(), total.as_str()), ("3", "3"));
    browser.screenshot("bulk-redelivery-done").await;
    broken.wait_for(16).await;

    // Edit: narrow the event types and set a rate limit; only what changed is sent.
    browser
        .click(&format!("#webhook-{healthy_id} button.edit"))
        .await;
    let form = format!("#webhook-{healthy_id} .webhook-form");
    browser
        .fill(
            &format!("{form} input[name=eventTypes]"),
            "ConnectionUpdated",
        )
        .await;
    browser
        .fill(&format!("{form} input[name=rateLimit]"), "50")
        .await;
    browser.click(&format!("{form} button[type=submit]")).await;
    browser
        .wait_until(
            &format!("document.querySelector('#webhook-{healthy_id} .webhook-form') === null"),
            WAIT,
        )
        .await;
    let edited = call(
        "GET",
        &service.url(&format!("/events/webhooks/{healthy_id}")),
        &wallet_headers(),
        "",
    )
    .await;
    assert_eq!(
        edited.json["eventTypes"],
        json!(["ConnectionUpdated"]),
        "{}",
        edited.json
    );
    assert_eq!(edited.json["rateLimit"], 50, "{}", edited.json);
    assert_eq!(
        edited.json["customHeaders"]["X-Team"], "payments",
        "{}",
        edited.json
    );

    // Send a test event and see the receiver's answer.
    let healthy_card = format!("#webhook-{healthy_id}");
    browser.click(&format!("{healthy_card} button.test")).await;
    browser
        .wait_for(&format!("{healthy_card} .test-result"), WAIT)
        .await;
    let result = browser
        .text_of(&format!("{healthy_card} .test-result"))
        .await;
    assert!(
        result.contains("delivered") && result.contains("200"),
        "{result}"
    );

    // Rotate: a new secret is shown once, and it is the one that signs from now on.
    browser
        .click(&format!("{healthy_card} button.rotate"))
        .await;
    browser.click(&format!("{healthy_card} .confirm-yes")).await;
    let rotated = browser.text_of("#shown-secret").await;
    assert!(rotated.starts_with("whsec_") && rotated != secret);

    // Disable, then delete, through the page; the API agrees.
    browser
        .click(&format!("{healthy_card} button.toggle"))
        .await;
    browser
        .wait_until(
            &format!(
                "document.querySelector('{healthy_card} button.toggle')?.textContent === 'Enable'"
            ),
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
    browser
        .click(&format!("{healthy_card} button.delete"))
        .await;
    browser.click(&format!("{healthy_card} .confirm-yes")).await;
    browser
        .wait_until(
            &format!("document.querySelector('{healthy_card}') === null"),
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
    assert_only_own_requests(&browser, &service).await;

    browser.close().await;
    service.stop().await;
}

/// Makes a second wallet through the admin API and returns its id and a key for it.
async fn second_wallet(service: &Service) -> (String, String) {
    let admin = [
        ("x-admin-api-key", ADMIN_KEY),
        ("content-type", "application/json"),
    ];
    let made = call(
        "POST",
        &service.url("/wallets"),
        &admin,
        &json!({"name": "Second wallet"}).to_string(),
    )
    .await;
    assert_eq!(made.status, 201, "{}", made.json);
    let id = made.json["id"].as_str().unwrap().to_owned();
    let key = call(
        "POST",
        &service.url(&format!("/wallets/{id}/apikeys")),
        &admin,
        "",
    )
    .await;
    assert_eq!(key.status, 201, "{}", key.json);
    (id, key.json["apiKey"].as_str().unwrap().to_owned())
}

/// Everything the page holds as text and markup, to search for another wallet's data.
async fn page_source(browser: &Browser) -> String {
    browser
        .execute("return document.documentElement.outerHTML", vec![])
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// A second wallet's key sees none of the first wallet's webhooks, deliveries or events, even
/// by id; the operator's view lists both wallets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_wallet_sees_nothing_of_the_first_and_the_operator_sees_both() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut service = Service::start_with(Backend::Sqlite, |_| {}).await.unwrap();
    let receiver = Receiver::start(&[]).await;
    let first = crate::utils::register(&service, &receiver.url()).await;
    let event = publish(&service, API_KEY, connection("InvitationGenerated")).await;
    receiver.wait_for(1).await;
    let deliveries = call(
        "GET",
        &service.url(&format!("/events/{event}/deliveries")),
        &wallet_headers(),
        "",
    )
    .await;
    let delivery = deliveries.json["contents"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (second_id, second_key) = second_wallet(&service).await;

    sign_in(&browser, &service, &second_key, false).await;
    browser.wait_for("#no-webhooks", WAIT).await;
    browser.click("nav a[href='#/deliveries']").await;
    browser.wait_for("#no-deliveries", WAIT).await;
    // Asking for the first wallet's delivery and event by id finds nothing.
    for id in [&delivery, &event] {
        browser.fill("#find-id", id).await;
        browser
            .click("form[aria-label='Find by id'] button[type=submit]")
            .await;
        browser
            .wait_until(
                "document.getElementById('alert').textContent !== '' || \
                 document.querySelector('#delivery-detail .card') !== null",
                WAIT,
            )
            .await;
        let shown = page_source(&browser).await;
        assert!(
            !shown.contains(&receiver.url()) && !shown.contains("InvitationGenerated"),
            "the second wallet sees the first's data"
        );
    }
    let source = page_source(&browser).await;
    for secret in [first.id.to_string(), receiver.url(), delivery.clone()] {
        assert!(
            !source.contains(&secret),
            "{secret} is on the second wallet's page"
        );
    }
    browser.screenshot("second-wallet").await;

    // The operator signs in with the admin key and sees both wallets.
    browser.click("#signout").await;
    sign_in(&browser, &service, ADMIN_KEY, true).await;
    browser
        .wait_for(&format!("#wallets tr[data-wallet='{second_id}']"), WAIT)
        .await;
    browser
        .wait_for(
            "#wallets tr[data-wallet='00000000-0000-0000-0000-000000000000']",
            WAIT,
        )
        .await;
    let tiles = browser.text_of("#overview").await;
    assert!(
        tiles.contains("ready") && tiles.contains("wallets"),
        "{tiles}"
    );
    browser.screenshot("operator-overview").await;
    assert_only_own_requests(&browser, &service).await;
    browser.close().await;
    service.stop().await;
}

/// Markup in event data, custom headers and response excerpts is shown as text: no
/// element of it reaches the page, and no script of it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markup_from_data_is_shown_as_text() {
    const MARKUP: &str = "<img src=x onerror=\"window.__xss=1\"><script>window.__xss=2</script>";
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut service = Service::start_with(Backend::Sqlite, |_| {}).await.unwrap();
    let receiver = Receiver::start_replies(
        &std::iter::repeat_n(Reply::status(500).body(MARKUP), 3).collect::<Vec<_>>(),
    )
    .await;
    let url = receiver.url();
    let registered = call(
        "POST",
        &service.url("/events/webhooks"),
        &wallet_headers(),
        &json!({"url": url, "customHeaders": {"X-Markup": MARKUP.replace('"', "'")}}).to_string(),
    )
    .await;
    assert_eq!(registered.status, 200, "{}", registered.json);
    let event = publish(
        &service,
        API_KEY,
        json!({"type": "MarkupTest", "data": {"note": MARKUP}}),
    )
    .await;
    receiver.wait_for(3).await;
    let listed = call(
        "GET",
        &service.url(&format!("/events/{event}/deliveries")),
        &wallet_headers(),
        "",
    )
    .await;
    let delivery = listed.json["contents"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for_state(&service, &delivery, "exhausted").await;

    sign_in(&browser, &service, API_KEY, false).await;
    browser
        .wait_for("section.webhook .custom-headers", WAIT)
        .await;
    browser.click("nav a[href='#/deliveries']").await;
    browser
        .wait_for("#deliveries tr[data-delivery] button.open", WAIT)
        .await;
    browser
        .click("#deliveries tr[data-delivery] button.open")
        .await;
    browser
        .wait_for(".delivery .attempts tr.attempt pre.response", WAIT)
        .await;
    browser.wait_for(".delivery .envelope-raw", WAIT).await;
    let injected = browser
        .execute(
            "return {xss: window.__xss ?? null, \
                     images: document.querySelectorAll('img').length, \
                     svgs: document.querySelectorAll('svg[onload]').length, \
                     scripts: document.scripts.length, \
                     response: document.querySelector('.delivery pre.response').textContent, \
                     envelope: document.querySelector('.delivery .envelope-raw').textContent}",
            vec![],
        )
        .await;
    assert_eq!(injected["xss"], Value::Null, "{injected}");
    assert_eq!(injected["images"], 0, "{injected}");
    assert_eq!(injected["svgs"], 0, "{injected}");
    assert_eq!(injected["scripts"], 1, "{injected}");
    assert_eq!(injected["response"], MARKUP, "{injected}");
    assert!(
        injected["envelope"]
            .as_str()
            .unwrap()
            .contains("<img src=x"),
        "{injected}"
    );
    browser.click("nav a[href='#/webhooks']").await;
    let headers = browser.text_of("section.webhook .custom-headers").await;
    assert!(
        headers.contains("<script>window.__xss=2</script>"),
        "{headers}"
    );
    let still = browser
        .execute(
            "return [window.__xss ?? null, document.querySelectorAll('img, svg[onload], script:not([src])').length]",
            vec![],
        )
        .await;
    assert_eq!(still, json!([null, 0]));
    assert_only_own_requests(&browser, &service).await;
    browser.close().await;
    service.stop().await;
}

/// The key lives in the tab's sessionStorage only: not in the address, a cookie, localStorage
/// or the page; signing out forgets it. A refused key leaves nothing behind. Signing in takes
/// the keyboard alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_stays_in_the_tab_and_out_of_the_page() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let mut service = Service::start_with(Backend::Sqlite, |_| {}).await.unwrap();
    browser
        .goto(&format!("http://{}/console", service.addr))
        .await;
    browser.fill("#signin-key", "not-a-key").await;
    browser.click("#signin-submit").await;
    browser
        .wait_until("document.getElementById('alert').textContent !== ''", WAIT)
        .await;
    let left = browser
        .execute("return sessionStorage.length + localStorage.length", vec![])
        .await;
    assert_eq!(left, 0, "a refused key was kept");

    // With the keyboard alone: the key field has the focus, and Enter signs in.
    browser
        .goto(&format!("http://{}/console", service.addr))
        .await;
    let field = browser.wait_for("#signin-key", WAIT).await;
    let focused = browser
        .execute("return document.activeElement.id", vec![])
        .await;
    assert_eq!(focused, "signin-key");
    field
        .send_keys(&format!("{API_KEY}\u{E007}"))
        .await
        .unwrap();
    browser.wait_for("#webhook-list", WAIT).await;
    let places = browser
        .execute(
            "return {href: location.href, cookie: document.cookie, local: localStorage.length, \
                     html: document.documentElement.outerHTML, \
                     session: sessionStorage.getItem('webhookd.console.key')}",
            vec![],
        )
        .await;
    assert_eq!(places["session"], API_KEY);
    assert_eq!(places["cookie"], "");
    assert_eq!(places["local"], 0);
    assert!(!places["href"].as_str().unwrap().contains(API_KEY));
    assert!(!places["html"].as_str().unwrap().contains(API_KEY));
    browser.click("#signout").await;
    browser.wait_for("#signin-form", WAIT).await;
    let after = browser
        .execute("return sessionStorage.length", vec![])
        .await;
    assert_eq!(after, 0);
    browser.close().await;
    service.stop().await;
}

/// Every form control has a label, and at a phone's width nothing makes the page scroll
/// sideways (wide tables scroll inside their frame).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_view_is_labelled_and_fits_a_phone() {
    let Some(browser) = Browser::start_phone().await else {
        return;
    };
    let mut service = Service::start_with(Backend::Sqlite, |_| {}).await.unwrap();
    let receiver = Receiver::start(&[]).await;
    crate::utils::register(&service, &receiver.url()).await;
    publish(&service, API_KEY, connection("InvitationGenerated")).await;
    receiver.wait_for(1).await;
    const UNLABELLED: &str = "return [...document.querySelectorAll('input, select, textarea')] \
        .filter(c => c.type !== 'hidden' && c.labels.length === 0 && !c.getAttribute('aria-label')) \
        .map(c => c.outerHTML)";
    const OVERFLOW: &str = "return document.documentElement.scrollWidth - window.innerWidth";

    browser
        .goto(&format!("http://{}/console", service.addr))
        .await;
    browser.wait_for("#signin-form", WAIT).await;
    assert_eq!(browser.execute(UNLABELLED, vec![]).await, json!([]));
    sign_in(&browser, &service, API_KEY, false).await;
    browser.click("#new-webhook").await;
    browser.wait_for(".webhook-form", WAIT).await;
    assert_eq!(browser.execute(UNLABELLED, vec![]).await, json!([]));
    assert_eq!(browser.execute(OVERFLOW, vec![]).await, 0, "webhooks");
    browser.screenshot("phone-webhooks").await;
    browser.click("nav a[href='#/deliveries']").await;
    browser
        .wait_for("#deliveries tr[data-delivery]", WAIT)
        .await;
    browser
        .click("#deliveries tr[data-delivery] button.open")
        .await;
    browser.wait_for(".delivery .attempts", WAIT).await;
    assert_eq!(browser.execute(UNLABELLED, vec![]).await, json!([]));
    assert_eq!(browser.execute(OVERFLOW, vec![]).await, 0, "deliveries");
    browser.screenshot("phone-deliveries").await;
    browser.close().await;
    service.stop().await;
}

/// The deliveries view over 1,000,000 deliveries in the database: the first page, filtered
/// pages and pages far down are all 50 rows in the right order, and the time each took to
/// render is printed (a measurement, not an assertion: the machines are shared). The figures
/// in docs/console.md come from
/// `cargo test --release -p webhook-app --test it console_browser::a_million -- --nocapture --test-threads 1`.
async fn a_million_deliveries(backend: Backend) {
    const ROWS: u64 = 1_000_000;
    let Some(browser) = Browser::start().await else {
        return;
    };
    let Some(mut service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    let hook = crate::utils::register(&service, &receiver.url()).await;
    let seeded = crate::browser::seeding::seed_deliveries(
        &service,
        webhook_domain::WalletId::DEFAULT,
        hook.id,
        ROWS,
    )
    .await;
    let root = format!("http://{}/console", service.addr);
    sign_in(&browser, &service, API_KEY, false).await;

    // A fresh load of each view, timed from the navigation's start to the table in the page.
    let mut figures = Vec::new();
    let views = [
        ("newest", String::new()),
        ("exhausted", "?state=exhausted".to_owned()),
        ("type", "?eventType=DIDStatusUpdated".to_owned()),
        ("webhook", format!("?webhookId={}", hook.id)),
        (
            "window",
            format!(
                "?since={}",
                (time::OffsetDateTime::now_utc() - time::Duration::hours(30))
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap()
            ),
        ),
    ];
    for (name, query) in &views {
        let mut runs = Vec::new();
        for _ in 0..5 {
            browser.goto("about:blank").await;
            browser.goto(&format!("{root}#/deliveries{query}")).await;
            browser
                .wait_until(
                    "performance.getEntriesByName('deliveries-rendered').length > 0",
                    Duration::from_secs(60),
                )
                .await;
            let timing = browser
                .execute(
                    "return [performance.getEntriesByName('deliveries-rendered')[0].startTime, \
                             performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? null, \
                             performance.getEntriesByName('first-paint')[0]?.startTime ?? null]",
                    vec![],
                )
                .await;
            runs.push((
                timing[0].as_f64().unwrap(),
                timing[1].as_f64(),
                timing[2].as_f64(),
            ));
        }
        check_page(&browser, name).await;
        if *name == "newest" {
            // The one in the README (docs/console-deliveries.png) is this, from SQLite.
            browser
                .screenshot(&format!("deliveries-1m-{backend:?}").to_lowercase())
                .await;
        }
        figures.push((*name, runs));
    }

    // Fifty pages down through the cursor, each one timed.
    browser.goto(&format!("{root}#/deliveries")).await;
    browser
        .wait_for("#deliveries tr[data-delivery]", WAIT)
        .await;
    let mut paging = Vec::new();
    for _ in 0..50 {
        let first = browser
            .execute(
                "return document.querySelector('#deliveries tr[data-delivery]').dataset.delivery",
                vec![],
            )
            .await;
        let started = std::time::Instant::now();
        browser.click("#page-older").await;
        browser
            .wait_until(
                &format!("document.querySelector('#deliveries tr[data-delivery]')?.dataset.delivery !== {first}"),
                WAIT,
            )
            .await;
        browser
            .wait_until(
                "performance.getEntriesByName('deliveries-rendered').length > 0",
                WAIT,
            )
            .await;
        paging.push(started.elapsed().as_secs_f64() * 1000.0);
        check_page(&browser, "newest").await;
    }

    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut report = format!(
        "{backend:?}, {ROWS} deliveries seeded in {:.1} s; median of 5 fresh loads, ms:\n",
        seeded.elapsed.as_secs_f64()
    );
    for (name, runs) in figures {
        let rendered = median(runs.iter().map(|r| r.0).collect());
        let contentful = median(runs.iter().filter_map(|r| r.1).collect());
        let paint = median(runs.iter().filter_map(|r| r.2).collect());
        report.push_str(&format!(
            "  {name:<10} first paint {paint:>5.0}  first contentful paint {contentful:>5.0}  \
             table rendered {rendered:>5.0}\n"
        ));
    }
    report.push_str(&format!(
        "  older page, 50 in turn: median {:.0} ms, slowest {:.0} ms\n",
        median(paging.clone()),
        paging.iter().copied().fold(0.0, f64::max)
    ));
    eprintln!("{report}");
    browser.close().await;
    service.stop().await;
}

/// The table on the page: 50 rows, newest first, each matching the view's filter.
async fn check_page(browser: &Browser, view: &str) {
    let rows = browser
        .execute(
            "return [...document.querySelectorAll('#deliveries tr[data-delivery]')] \
               .map(r => [r.cells[0].textContent, r.cells[1].textContent, r.dataset.state])",
            vec![],
        )
        .await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 50, "{view}: {rows:?}");
    let times: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "{view}: not newest first: {times:?}"
    );
    for row in rows {
        match view {
            "exhausted" => assert_eq!(row[2], "exhausted", "{row}"),
            "type" => assert_eq!(row[1], "DIDStatusUpdated", "{row}"),
            _ => {}
        }
    }
}

mod a_million {
    use crate::utils::Backend;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::a_million_deliveries(Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::a_million_deliveries(Backend::Postgres).await;
    }
}
