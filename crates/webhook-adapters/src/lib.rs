//! Adapters: the ports implemented with real infrastructure. Everything diesel and hyper lives
//! here and nowhere else; no diesel or hyper type appears in a public signature.

mod clock;
mod http_transport;
mod rows;
mod sqlite;

pub use clock::SystemClock;
pub use http_transport::{HyperTransport, TransportConfig};
pub use sqlite::{SqliteOpenError, SqliteStore};
