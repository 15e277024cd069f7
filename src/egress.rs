//! Where the operator may send a request on a policy's behalf: the URL rules (pure, in
//! `deprovisioner-core`), and [`GuardedResolver`], which applies the same address rules to
//! whatever a host name resolves to at call time, so a DNS name cannot lead a call where a
//! literal address could not.

use std::net::SocketAddr;
use std::sync::Arc;

pub use deprovisioner_core::egress::{Egress, check_url, is_link_local, is_loopback};

/// Resolves host names like the system does, then drops every address [`Egress`] refuses; a
/// name left with none fails the call.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver(pub Egress);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let egress = self.0;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| egress.refuses(a.ip()).is_none()).collect();
            if allowed.is_empty() {
                let why = found.first().and_then(|a| egress.refuses(a.ip())).unwrap_or("it resolves to no address");
                return Err(format!("{host} resolves to no allowed address: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl GuardedResolver {
    /// The resolver as reqwest takes it.
    pub fn shared(egress: Egress) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver(egress))
    }
}

#[cfg(test)]
mod tests;
