//! The hyper-util client transport. (Being written.)

/// Settings of the HTTP transport.
#[derive(Debug, Clone)]
pub struct TransportConfig {}

/// Sends deliveries with a pooled hyper-util client.
#[derive(Debug, Clone)]
pub struct HyperTransport {}
