//! The remote channel of a real process: qmail-remote's agent on the real
//! network, with its control files and a resolver.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use qmail_core::dns::{DnsError, Mx, Resolve};
use qmail_core::home::Home;
use qmail_core::remote::{RemoteControl, RemoteDelivery};
use qmail_io_real::RealEnv;

/// Addresses through the system's resolver (getaddrinfo). MX lookups need
/// the DNS stub resolver (issue 15, item 1): until it is wired in they fail
/// temporarily, so mail to a domain without an `smtproutes` entry waits
/// (and says why) rather than going to the wrong host.
#[derive(Clone, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    async fn mx(&self, domain: &str) -> Result<Vec<Mx>, DnsError> {
        Err(DnsError::Temporary(format!(
            "{domain}: this build has no MX lookup; route it in control/smtproutes"
        )))
    }

    async fn addrs(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let found = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| DnsError::Temporary(format!("{host}: {e}")))?;
        let mut ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
        ips.sort_by_key(IpAddr::is_ipv6);
        ips.dedup();
        Ok(ips)
    }
}

/// The remote agent for the installation `home`, whose SMTP listener is
/// bound to `listeners` (so no route leads back to it).
pub async fn remote_agent(
    env: &RealEnv,
    home: &Home,
    listeners: &[SocketAddr],
) -> Result<RemoteDelivery<RealEnv, SystemResolver>> {
    let mut control = RemoteControl::load(env, home)
        .await
        .context("reading control files")?;
    control.us.listeners.extend_from_slice(listeners);
    Ok(RemoteDelivery::new(
        env.clone(),
        SystemResolver,
        home.queue(),
        control,
    ))
}
