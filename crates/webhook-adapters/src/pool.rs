//! The numbers of a store's connection pool, for monitoring: plain counts, so that no pool
//! type appears in a public signature.

/// A connection pool at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open, idle or in use.
    pub connections: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}
