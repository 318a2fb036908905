//! The production resolver: core's stub resolver over tokio, configured from
//! `control/dnsservers` if present, else the system's `/etc/resolv.conf`
//! (see `qmail_core::dns::config`).

use std::path::Path;

use qmail_core::dns::{ConfigError, ResolverConfig, StubResolver, config};

use crate::{RealEnv, RealFs};

pub use qmail_core::dns::config::RESOLV_CONF;

/// The configuration for an installation whose control files are in
/// `control_dir`.
pub async fn resolver_config(control_dir: &Path) -> Result<ResolverConfig, ConfigError> {
    config::load(&RealFs, control_dir, Path::new(RESOLV_CONF)).await
}

/// The stub resolver for an installation whose control files are in
/// `control_dir`.
pub async fn resolver(
    env: RealEnv,
    control_dir: &Path,
) -> Result<StubResolver<RealEnv>, ConfigError> {
    Ok(StubResolver::new(env, resolver_config(control_dir).await?))
}
