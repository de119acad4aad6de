//! Which targets get which events: `Webhook::wants`.

use serde_json::json;
use webhook_domain::{Event, EventType, EventTypeFilter, RateLimit, WalletId, WebhookScope};

use crate::fixtures::{event_id, other_wallet, tutorial_data, tutorial_ts, webhook};

#[derive(Debug, Clone, Copy)]
enum Who {
    Mine,
    Theirs,
}

impl Who {
    fn wallet(self) -> WalletId {
        match self {
            Who::Mine => WalletId::DEFAULT,
            Who::Theirs => other_wallet(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Scope {
    Of(Who),
    Global,
}

const CONN: &str = "ConnectionUpdated";
const ACME: &str = "acme.thing";

/// (enabled, scope, event-type filter, event type, event's wallet) -> wanted.
type Row = (
    bool,
    Scope,
    Option<&'static [&'static str]>,
    &'static str,
    Who,
    bool,
);

fn event(event_type: &str, wallet: WalletId) -> Event {
    let event_type = EventType::parse(event_type).unwrap();
    let data = match event_type {
        EventType::ConnectionUpdated => tutorial_data(),
        _ => json!({"any": "thing"}),
    };
    Event::new(event_id(), tutorial_ts(), event_type, data, wallet).unwrap()
}

#[test]
fn wants() {
    use Scope::{Global, Of};
    use Who::{Mine, Theirs};
    let rows: &[Row] = &[
        (true, Of(Mine), None, CONN, Mine, true),
        (true, Of(Mine), None, ACME, Mine, true),
        (false, Of(Mine), None, CONN, Mine, false),
        (true, Of(Mine), None, CONN, Theirs, false),
        (true, Of(Theirs), None, CONN, Theirs, true),
        (true, Of(Theirs), None, CONN, Mine, false),
        (true, Global, None, CONN, Mine, true),
        (true, Global, None, ACME, Theirs, true),
        (false, Global, None, CONN, Mine, false),
        (true, Of(Mine), Some(&[CONN]), CONN, Mine, true),
        (true, Of(Mine), Some(&[CONN]), ACME, Mine, false),
        (true, Of(Mine), Some(&[ACME]), ACME, Mine, true),
        (true, Of(Mine), Some(&[ACME, CONN]), CONN, Mine, true),
        (true, Of(Mine), Some(&[]), CONN, Mine, false),
        (true, Of(Theirs), Some(&[CONN]), CONN, Mine, false),
        (false, Of(Mine), Some(&[CONN]), CONN, Mine, false),
        (true, Global, Some(&[ACME]), CONN, Theirs, false),
        (true, Global, Some(&[ACME]), ACME, Theirs, true),
        (false, Global, Some(&[ACME]), ACME, Theirs, false),
        // Filters match type names exactly.
        (true, Global, Some(&["acme.Thing"]), ACME, Mine, false),
        (
            true,
            Global,
            Some(&["connectionupdated"]),
            CONN,
            Mine,
            false,
        ),
    ];
    for &(enabled, scope, filter, event_type, who, wanted) in rows {
        let mut hook = webhook(match scope {
            Of(owner) => WebhookScope::Wallet(owner.wallet()),
            Global => WebhookScope::Global,
        });
        hook.enabled = enabled;
        hook.event_types = filter
            .map(|names| EventTypeFilter::new(names.iter().map(|n| EventType::parse(n).unwrap())));
        assert_eq!(
            hook.wants(&event(event_type, who.wallet())),
            wanted,
            "enabled={enabled} scope={scope:?} filter={filter:?} type={event_type} wallet={who:?}"
        );
    }
}

#[test]
fn a_new_webhook_is_enabled_for_every_type_unsigned_with_the_default_policy() {
    let hook = webhook(WebhookScope::Wallet(WalletId::DEFAULT));
    assert!(hook.enabled);
    assert_eq!(hook.event_types, None);
    assert_eq!(hook.signing_keys, None);
    assert_eq!(hook.retry_policy, None);
    assert!(!hook.ordered);
    assert_eq!(hook.rate_limit, None);
}

#[test]
fn a_rate_limit_is_one_to_ten_thousand_per_second() {
    for (per_second, ok) in [
        (0, false),
        (1, true),
        (250, true),
        (10_000, true),
        (10_001, false),
    ] {
        assert_eq!(
            RateLimit::per_second(per_second).is_ok(),
            ok,
            "{per_second}"
        );
    }
    let limit: RateLimit = serde_json::from_str("50").unwrap();
    assert_eq!(limit.get(), 50);
    assert_eq!(serde_json::to_string(&limit).unwrap(), "50");
    let err = serde_json::from_str::<RateLimit>("0")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rateLimit: must be between 1 and 10000"),
        "{err}"
    );
}
