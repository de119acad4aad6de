//! Adapters: the ports implemented with real infrastructure. Everything diesel and hyper lives
//! here and nowhere else; no diesel or hyper type appears in a public signature.

mod amqp;
mod brokers;
mod clock;
mod egress;
mod http_transport;
mod inbound;
mod mysql;
mod nats;
mod port_errors;
mod postgres;
mod publishing;
mod queries;
mod reachability;
mod rows;
// The diesel schema is public only to the tests (the drift check reads it); diesel types stay
// out of the adapters' public surface otherwise.
mod registry;
#[cfg(feature = "testing")]
pub mod schema;
#[cfg(not(feature = "testing"))]
mod schema;
#[cfg(feature = "testing")]
pub mod snapshot;
mod sources;
mod sql_id;
mod sqlite;
mod statements;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::SystemClock;
pub use egress::{Egress, EgressError};
pub use http_transport::{HyperTransport, TransportConfig, TransportConfigError};
#[cfg(feature = "testing")]
pub use mysql::MysqlTestDatabase;
pub use mysql::{MysqlOpenError, MysqlStore};
pub use postgres::{PgOpenError, PgStore};
pub use registry::{
    DESTINATIONS, DestinationKind, Destinations, DestinationsError, Opening, STORAGE_BACKENDS,
    StorageBackend, storage_backend,
};
pub use sources::EVENT_SOURCES;
pub use sqlite::{SqliteOpenError, SqliteStore};
pub use webhook_ports::PoolState;
