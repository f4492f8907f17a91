//! Process settings: flags, with environment variables behind them.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Spool, mailboxes, logs, certificates and the private PostgreSQL cluster live here, and
    /// organization.key (unless HUBGATE_ORGANIZATION_KEY gives the key): back it up, and give
    /// every node of the organisation the same one.
    #[arg(long, env = "HUBGATE_DATA_DIR", default_value = "/var/lib/hubgate")]
    pub data_dir: PathBuf,
    /// This node's FQDN (default: the host name).
    #[arg(long, env = "HUBGATE_SERVER_NAME")]
    pub server_name: Option<String>,
    /// PostgreSQL URL; when unset, a private cluster runs under the data directory.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Args, Clone, Debug)]
pub struct ServeSettings {
    #[command(flatten)]
    pub common: Settings,
    /// Where the console listens (HTTPS, with the certificate STARTTLS uses).
    #[arg(long, env = "HUBGATE_CONSOLE_BIND", default_value = "127.0.0.1:8080")]
    pub console_bind: String,
    /// Serve the console over plain HTTP; refused unless the console's address is loopback.
    #[arg(long, env = "HUBGATE_CONSOLE_PLAIN_HTTP", default_value_t = false)]
    pub console_plain_http: bool,
    /// A console session unused for this many seconds is signed off.
    #[arg(long, env = "HUBGATE_CONSOLE_IDLE_TIMEOUT", default_value_t = 1800)]
    pub console_idle_timeout: u64,
    /// The console's static files (style sheets, htmx); by default /usr/share/hubgate/static
    /// when it exists, else the source tree's static/.
    #[arg(long, env = "HUBGATE_CONSOLE_STATIC_DIR")]
    pub console_static_dir: Option<PathBuf>,
    /// Bindings given to the default receive connectors on first start:
    /// `IP:port` entries for `Default <SERVER>`, `Client=IP:port` for `Client <SERVER>`, comma-separated.
    #[arg(long, env = "HUBGATE_DEFAULT_BINDINGS")]
    pub default_bindings: Option<String>,
    /// The administrator's password on first start (otherwise one is generated and printed once).
    #[arg(long, env = "HUBGATE_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Who may read /metrics: comma-separated addresses and networks, or `none` (metrics off).
    #[arg(long, env = "HUBGATE_METRICS_ALLOW", default_value = "127.0.0.0/8,::1")]
    pub metrics_allow: String,
    /// Serve /metrics over plain HTTP on this `IP:port` instead of on the console's listener.
    #[arg(long, env = "HUBGATE_METRICS_BIND")]
    pub metrics_bind: Option<String>,
    /// On SIGTERM, how many seconds sessions get to finish their transaction and deliveries
    /// their message before both are cut (`421 4.3.2 Service not available`).
    #[arg(long, env = "HUBGATE_DRAIN_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_timeout: u64,
}

impl Settings {
    pub fn fqdn(&self) -> String {
        self.server_name
            .clone()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(host_name)
            .trim()
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }
}

/// Splits HUBGATE_DEFAULT_BINDINGS into (Default, Client) binding lists.
pub fn split_default_bindings(s: &str) -> (Vec<String>, Vec<String>) {
    let mut default = Vec::new();
    let mut client = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("client") => {
                client.push(v.trim().to_string())
            }
            Some((k, v)) if k.trim().eq_ignore_ascii_case("default") => {
                default.push(v.trim().to_string())
            }
            _ => default.push(item.to_string()),
        }
    }
    (default, client)
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bindings_split() {
        let (d, c) = split_default_bindings("127.0.0.1:2525, Client=127.0.0.1:2587");
        assert_eq!(d, vec!["127.0.0.1:2525"]);
        assert_eq!(c, vec!["127.0.0.1:2587"]);
    }
}
