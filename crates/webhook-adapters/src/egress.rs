//! The SSRF guard as every network destination meets it: names are resolved here, and only the
//! addresses the [`AddressPolicy`] accepts come back, so a destination connects to exactly what
//! was checked and a second DNS answer cannot slip past it. A destination that connects over
//! the network takes its [`Egress`] from [`TransportConfig::egress`](crate::TransportConfig)
//! and never resolves or connects by itself.
//!
//! What it must not do: hand out an address the policy refused, or put the host name into an
//! error text (it may be a tenant's secret-bearing subdomain).

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use thiserror::Error;
use webhook_domain::{AddressPolicy, RefusedAddress};

/// How a network destination reaches a host: the resolver and the SSRF guard. Cloning is cheap.
#[derive(Debug, Clone)]
pub struct Egress {
    /// `None` when the guard is off.
    policy: Option<Arc<AddressPolicy>>,
    lookup: Lookup,
}

/// Why a host gave no address to connect to.
#[derive(Debug, Error)]
pub enum EgressError {
    #[error("dns lookup failed")]
    Lookup(#[source] io::Error),
    /// Every address the host resolved to was refused; this is the first of them.
    #[error("address refused: {0}")]
    Refused(RefusedAddress),
}

impl Egress {
    /// Through the system resolver, with the guard applying `policy`, or with no guard.
    pub fn new(guard: Option<AddressPolicy>) -> Self {
        Self {
            policy: guard.map(Arc::new),
            lookup: Lookup::System,
        }
    }

    /// The same, but names are looked up in `hosts` instead of DNS (any other name fails):
    /// tests show what the guard does with a name that resolves to a private address without
    /// a DNS server. Only with the `testing` feature, which the binary never enables.
    #[cfg(feature = "testing")]
    pub fn with_fixed_hosts(self, hosts: &[(&str, &[IpAddr])]) -> Self {
        let hosts = hosts
            .iter()
            .map(|(name, addresses)| ((*name).to_owned(), addresses.to_vec()))
            .collect();
        Self {
            lookup: Lookup::Fixed(Arc::new(hosts)),
            ..self
        }
    }

    /// Whether the guard is on.
    pub fn is_guarded(&self) -> bool {
        self.policy.is_some()
    }

    /// Judges an address written in the URL itself, which no resolver sees.
    ///
    /// # Errors
    /// The refusal, when the guard is on and its policy refuses `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), RefusedAddress> {
        match &self.policy {
            Some(policy) => policy.check(ip),
            None => Ok(()),
        }
    }

    /// The addresses of `host` (a name or an IP literal, IPv6 without brackets) that the guard
    /// allows, with `port`.
    ///
    /// # Errors
    /// [`EgressError::Lookup`] when the name does not resolve, [`EgressError::Refused`] when
    /// the guard refused every address it resolved to.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.check(ip).map_err(EgressError::Refused)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let mut addresses = self.allowed(host).await?;
        for address in &mut addresses {
            address.set_port(port);
        }
        Ok(addresses)
    }

    /// The resolver for hyper-util's connector, which puts in the URL's port itself.
    pub(crate) fn resolver(&self) -> GuardedResolver {
        GuardedResolver {
            egress: self.clone(),
        }
    }

    async fn allowed(&self, name: &str) -> Result<Vec<SocketAddr>, EgressError> {
        let resolved = self
            .lookup
            .resolve(name)
            .await
            .map_err(EgressError::Lookup)?;
        let Some(policy) = &self.policy else {
            return Ok(resolved);
        };
        let mut first_refused = None;
        let allowed: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|addr| match policy.check(addr.ip()) {
                Ok(()) => true,
                Err(refused) => {
                    first_refused.get_or_insert(refused);
                    false
                }
            })
            .collect();
        match first_refused {
            Some(refused) if allowed.is_empty() => Err(EgressError::Refused(refused)),
            _ => Ok(allowed),
        }
    }
}

/// Where names are looked up: the system resolver, or (tests only) a fixed table.
#[derive(Debug, Clone)]
enum Lookup {
    System,
    #[cfg(feature = "testing")]
    Fixed(Arc<std::collections::HashMap<String, Vec<IpAddr>>>),
}

impl Lookup {
    async fn resolve(&self, name: &str) -> io::Result<Vec<SocketAddr>> {
        match self {
            // Port 0: the caller puts in the URL's port.
            Lookup::System => Ok(tokio::net::lookup_host((name, 0)).await?.collect()),
            #[cfg(feature = "testing")]
            Lookup::Fixed(hosts) => hosts
                .get(name)
                .map(|addresses| addresses.iter().map(|&ip| SocketAddr::new(ip, 0)).collect())
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "name not in the table")),
        }
    }
}

/// [`Egress`] as a `tower` service from names to addresses, for hyper-util's connector.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    egress: Egress,
}

type Resolving =
    Pin<Box<dyn Future<Output = Result<std::vec::IntoIter<SocketAddr>, EgressError>> + Send>>;

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = EgressError;
    type Future = Resolving;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let egress = self.egress.clone();
        Box::pin(async move { Ok(egress.allowed(name.as_str()).await?.into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[tokio::test]
    async fn literals_are_judged_and_given_the_port() {
        let guarded = Egress::new(Some(AddressPolicy::default()));
        assert!(matches!(
            guarded.resolve("127.0.0.1", 80).await,
            Err(EgressError::Refused(_))
        ));
        assert!(matches!(
            guarded.resolve("::1", 80).await,
            Err(EgressError::Refused(_))
        ));
        let open = Egress::new(None);
        assert_eq!(
            open.resolve("127.0.0.1", 8080).await.unwrap(),
            vec![SocketAddr::new(ip("127.0.0.1"), 8080)]
        );
        assert!(open.check(ip("10.0.0.1")).is_ok());
        assert!(guarded.check(ip("10.0.0.1")).is_err());
    }
}
