//! Adapters: the ports implemented with real infrastructure. Everything diesel and hyper lives
//! here and nowhere else; no diesel or hyper type appears in a public signature.

mod clock;
mod http_transport;
mod postgres;
mod queries;
mod rows;
pub mod schema;
mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

pub use clock::SystemClock;
pub use http_transport::{HyperTransport, TransportConfig, TransportConfigError};
pub use postgres::{PgOpenError, PgStore};
pub use sqlite::{SqliteOpenError, SqliteStore};
