//! Identifiers as UUID newtypes, so a wallet id can never be passed where a webhook id is due.
//! New identifiers are made by the caller (`Uuid::new_v4()` in the app): this crate draws no
//! random numbers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps an existing UUID.
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A tenant. Every wallet-scoped resource belongs to exactly one wallet.
    WalletId
);
uuid_id!(
    /// A webhook target (a URL with its settings).
    WebhookId
);
uuid_id!(
    /// An event; also the Standard Webhooks `webhook-id`, stable across targets and retries.
    EventId
);
uuid_id!(
    /// One (event, target) pair on its way to being delivered.
    DeliveryId
);
uuid_id!(
    /// An IAM entity (Identus's name for a principal): API keys are bound to it, and through
    /// it to its wallet.
    EntityId
);
uuid_id!(
    /// A bulk redelivery: a background job that requeues a target's exhausted deliveries.
    RedeliveryJobId
);

impl WalletId {
    /// The default wallet, `00000000-0000-0000-0000-000000000000`, as Identus names it.
    pub const DEFAULT: WalletId = WalletId(Uuid::nil());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_wallet_is_the_nil_uuid() {
        assert_eq!(
            WalletId::DEFAULT.to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
    }

    #[test]
    fn ids_round_trip_through_text_and_json() {
        let id: EventId = "cb8d4e96-30f0-4892-863f-44d49d634211".parse().unwrap();
        assert_eq!(id.to_string(), "cb8d4e96-30f0-4892-863f-44d49d634211");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"cb8d4e96-30f0-4892-863f-44d49d634211\"");
        assert_eq!(serde_json::from_str::<EventId>(&json).unwrap(), id);
    }

    #[test]
    fn malformed_ids_are_refused() {
        assert!("not-a-uuid".parse::<WalletId>().is_err());
    }
}
