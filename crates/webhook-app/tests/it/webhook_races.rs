//! Concurrent changes of one webhook through the API compose instead of undoing each other:
//! PATCHes of different fields and secret rotations racing each other all take effect, and a
//! PATCH racing a disable (what a 410 answer does) never switches the target back on. Each round
//! starts its calls together behind a barrier, so that a read-modify-write without a check of
//! the stored revision loses updates within a few rounds.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;
use webhook_domain::{SigningSecret, WalletId};

use crate::api::{Auth, publish_for, request};
use crate::utils::{API_KEY, Backend, Receiver, Service, assert_signed, register};

crate::on_every_backend!(
    patches_and_rotations_racing_all_take_effect,
    a_patch_racing_a_disable_never_enables_the_target,
);

const ROUNDS: usize = 20;

async fn patches_and_rotations_racing_all_take_effect(backend: Backend) {
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    let registered = register(&service, &receiver.url()).await;
    let path = format!("/events/webhooks/{}", registered.id);
    let service = Arc::new(service);
    let mut last_secret = registered.secret.clone();
    for round in 0..ROUNDS {
        // Four calls, each changing something of its own.
        let calls = [
            (
                "PATCH",
                path.clone(),
                json!({ "customHeaders": { "X-Round": round.to_string() } }),
            ),
            ("PATCH", path.clone(), json!({ "rateLimit": round + 1 })),
            (
                "PATCH",
                path.clone(),
                json!({ "url": format!("{}?round={round}", receiver.url()) }),
            ),
            (
                "POST",
                format!("{path}/secret/rotate"),
                json!({ "graceSeconds": 0 }),
            ),
        ];
        let barrier = Arc::new(Barrier::new(calls.len()));
        let tasks: Vec<_> = calls
            .into_iter()
            .map(|(method, path, body)| {
                let service = Arc::clone(&service);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    request(&service, method, &path, Auth::Wallet(API_KEY), Some(body)).await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            let answer = task.await.unwrap();
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "round {round}: {}",
                answer.json
            );
            answers.push(answer);
        }
        let secret = answers[3].json["secret"].as_str().unwrap().to_owned();

        let stored = service.webhook(registered.id).await;
        assert_eq!(
            stored.signing_keys.as_ref().map(|k| k.current().expose()),
            Some(secret.clone()),
            "round {round}: the secret the rotation showed is the current one"
        );
        let headers: Vec<(&str, &str)> = stored.custom_headers.iter().collect();
        assert_eq!(
            headers,
            vec![("X-Round", round.to_string().as_str())],
            "round {round}"
        );
        assert_eq!(
            stored.rate_limit.map(|r| r.get()),
            Some(u32::try_from(round + 1).unwrap()),
            "round {round}"
        );
        assert_eq!(
            stored.url.as_str(),
            format!("{}?round={round}", receiver.url()),
            "round {round}"
        );
        last_secret = secret;
    }

    // The last secret shown signs what is delivered, and the one before it no longer does.
    publish_for(&service, API_KEY).await;
    let got = receiver.wait_for(1).await;
    assert_signed(&got[0], &last_secret);
    assert_eq!(got[0].headers["x-round"], (ROUNDS - 1).to_string().as_str());
    let signatures = got[0].headers["webhook-signature"].to_str().unwrap();
    assert_eq!(signatures.split(' ').count(), 1, "{signatures}");
    assert!(SigningSecret::parse(&registered.secret).is_ok());
    let mut service = Arc::into_inner(service).unwrap();
    service.stop().await;
}

async fn a_patch_racing_a_disable_never_enables_the_target(backend: Backend) {
    let Some(service) = Service::start_on(backend).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    let registered = register(&service, &receiver.url()).await;
    let path = format!("/events/webhooks/{}", registered.id);
    let store = service.store().await.webhooks();
    let service = Arc::new(service);
    const PATCHES: usize = 3;
    for round in 0..ROUNDS {
        let enabled = request(
            &service,
            "PATCH",
            &path,
            Auth::Wallet(API_KEY),
            Some(json!({ "enabled": true })),
        )
        .await;
        assert_eq!(enabled.status, StatusCode::OK, "{}", enabled.json);

        let barrier = Arc::new(Barrier::new(PATCHES + 1));
        let patches: Vec<_> = (0..PATCHES)
            .map(|n| {
                let service = Arc::clone(&service);
                let barrier = Arc::clone(&barrier);
                let path = path.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let body = json!({ "customHeaders": { "X-Patch": format!("{round}-{n}") } });
                    request(&service, "PATCH", &path, Auth::Wallet(API_KEY), Some(body)).await
                })
            })
            .collect();
        // What the dispatcher does when the target answers 410 Gone.
        barrier.wait().await;
        store
            .disable_webhook(registered.id, time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        for patch in patches {
            let answer = patch.await.unwrap();
            assert_eq!(
                answer.status,
                StatusCode::OK,
                "round {round}: {}",
                answer.json
            );
        }
        let stored = store
            .get_webhook(WalletId::DEFAULT, registered.id)
            .await
            .unwrap();
        assert!(
            !stored.enabled,
            "round {round}: a PATCH without `enabled` switched a disabled target back on"
        );
        assert_eq!(stored.custom_headers.len(), 1, "round {round}");
    }
    let mut service = Arc::into_inner(service).unwrap();
    service.stop().await;
}
