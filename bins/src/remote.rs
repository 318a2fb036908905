//! The remote channel of a real process: qmail-remote's agent on the real
//! network, with its control files and the DNS stub resolver (nameservers
//! from `control/dnsservers`, else `/etc/resolv.conf`).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};
use qmail_core::dns::{StubResolver, config};
use qmail_core::env::Env;
use qmail_core::home::Home;
use qmail_core::remote::{RemoteControl, RemoteDelivery};
use qmail_io_real::RealEnv;

/// The remote agent for the installation `home`, whose SMTP listener is
/// bound to `listeners` (so no route leads back to it).
pub async fn remote_agent(
    env: &RealEnv,
    home: &Home,
    listeners: &[SocketAddr],
) -> Result<RemoteDelivery<RealEnv, StubResolver<RealEnv>>> {
    let mut control = RemoteControl::load(env, home)
        .await
        .context("reading control files")?;
    control.us.listeners.extend_from_slice(listeners);
    let dns = config::load(env.fs(), &home.control(), Path::new(config::RESOLV_CONF))
        .await
        .context("reading the resolver's configuration")?;
    Ok(RemoteDelivery::new(
        env.clone(),
        StubResolver::new(env.clone(), dns),
        home.queue(),
        control,
    ))
}
