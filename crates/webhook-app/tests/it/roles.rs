//! Roles: an API-only instance stores publishes and delivers nothing; a dispatcher-only instance
//! on the same database delivers them and serves nothing over HTTP.

use std::time::Duration;

use webhook_app::config::Role;
use webhook_domain::DeliveryStateKind;

use crate::utils::{Backend, Receiver, Service, publish, register};

async fn the_api_stores_and_the_dispatcher_delivers(backend: Backend) {
    let Some(api) = Service::start_with(backend, |s| s.role = Role::Api).await else {
        return;
    };
    let receiver = Receiver::start(&[]).await;
    let hook = register(&api, &receiver.url()).await;
    let event = publish(&api).await;
    // Several poll intervals (100 ms) pass: nothing in the API role delivers.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.count(), 0);
    api.wait_for_delivery(hook.id, DeliveryStateKind::Pending)
        .await;

    let mut settings = api.settings.clone();
    settings.role = Role::Dispatcher;
    let dispatcher = webhook_app::start(&settings).await.unwrap();
    assert_eq!(dispatcher.addr, None, "the dispatcher role serves no HTTP");
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].headers["webhook-id"], event.as_str());
    api.wait_for_delivery(hook.id, DeliveryStateKind::Delivered)
        .await;
    dispatcher.stop().await;
}

#[tokio::test]
async fn an_api_only_instance_stores_and_a_dispatcher_only_one_delivers() {
    the_api_stores_and_the_dispatcher_delivers(Backend::Sqlite).await;
}

#[tokio::test]
async fn on_postgres_an_api_only_instance_stores_and_a_dispatcher_only_one_delivers() {
    the_api_stores_and_the_dispatcher_delivers(Backend::Postgres).await;
}

#[tokio::test]
async fn on_mysql_an_api_only_instance_stores_and_a_dispatcher_only_one_delivers() {
    the_api_stores_and_the_dispatcher_delivers(Backend::Mysql).await;
}
