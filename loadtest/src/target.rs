//! Where the load goes: only ever a node on this machine.
//!
//! The load generator can open a hundred thousand sockets and send tens of thousands of
//! payments a second; pointed at the wrong host that is an attack. So every address it is
//! given — the node's URL, a PostgreSQL URL, a source address to bind — must be loopback, and
//! the check is a pure function tested on its own.

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Context};
use reqwest::Url;

/// A node's base URL that passed the loopback check, with its WebSocket twin.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port` with no path.
    pub http: Url,
    /// `ws://host:port/ws`.
    pub ws: Url,
    /// `host:port`, to open raw TCP connections to.
    pub socket_addr: std::net::SocketAddr,
}

/// True for 127.0.0.0/8 and ::1 (and an IPv4-mapped 127.x address).
pub fn is_loopback_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Refuse a URL whose host is not loopback: 127.0.0.0/8, `localhost` or `::1`. Names other
/// than `localhost` are refused without resolving them: a resolver could answer anything.
pub fn check_loopback_url(url: &Url) -> anyhow::Result<()> {
    match url.host() {
        Some(url::Host::Ipv4(v4)) if is_loopback_ip(IpAddr::V4(v4)) => Ok(()),
        Some(url::Host::Ipv6(v6)) if is_loopback_ip(IpAddr::V6(v6)) => Ok(()),
        Some(url::Host::Domain(name)) if name.eq_ignore_ascii_case("localhost") => Ok(()),
        // Non-web schemes (`postgres://`) leave an address unparsed, as a name: parse it here.
        Some(url::Host::Domain(name))
            if name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(is_loopback_ip) =>
        {
            Ok(())
        }
        Some(host) => bail!("refusing {host}: the load generator only targets loopback addresses (127.0.0.0/8, localhost, ::1)"),
        None => bail!("refusing {url}: it names no host"),
    }
}

/// Parse and check the node's URL (`http://127.0.0.1:8080`; `ws://` is accepted too).
pub fn parse_target(raw: &str) -> anyhow::Result<Target> {
    let mut http = Url::parse(raw).with_context(|| format!("--url {raw:?} is not a URL"))?;
    check_loopback_url(&http)?;
    match http.scheme() {
        "http" => {}
        "ws" => http
            .set_scheme("http")
            .map_err(|()| anyhow::anyhow!("cannot rewrite {raw} as http"))?,
        other => bail!("--url must be http:// (or ws://), not {other}://: the node is on loopback, without TLS"),
    }
    http.set_path("");
    http.set_query(None);
    let mut ws = http.clone();
    ws.set_scheme("ws")
        .map_err(|()| anyhow::anyhow!("cannot rewrite {raw} as ws"))?;
    ws.set_path("/ws");
    let port = http.port_or_known_default().unwrap_or(80);
    let ip = match http.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        // `localhost`: the IPv4 loopback, which is where the node listens by default.
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    Ok(Target {
        http,
        ws,
        socket_addr: std::net::SocketAddr::new(ip, port),
    })
}

/// Refuse a database URL (for `reference-payments`) that is not on loopback.
pub fn check_loopback_database_url(raw: &str) -> anyhow::Result<()> {
    let url = Url::parse(raw).context("the database URL is not a URL")?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        bail!(
            "the reference runs on PostgreSQL: postgres://…, not {}://",
            url.scheme()
        );
    }
    check_loopback_url(&url)
}

/// The `n` loopback source addresses to spread connections over, from 127.0.0.`first`:
/// 127.0.0.2, 127.0.0.3, … by default (127.0.0.1 is left to everything else on the machine).
/// Several load generators on one machine each take addresses of their own (`first`), since
/// each address has one range of ephemeral ports whoever binds it.
pub fn source_addresses(first: u8, n: usize) -> anyhow::Result<Vec<Ipv4Addr>> {
    let last = usize::from(first) + n.saturating_sub(1);
    if first < FIRST_SOURCE || n == 0 || last > usize::from(LAST_SOURCE) {
        bail!(
            "source addresses must lie in 127.0.0.{FIRST_SOURCE} to 127.0.0.{LAST_SOURCE}: \
             {n} from 127.0.0.{first} do not"
        );
    }
    let last = u8::try_from(last).context("too many source addresses")?;
    Ok((first..=last)
        .map(|d| Ipv4Addr::new(127, 0, 0, d))
        .collect())
}

/// The lowest and highest last byte of a source address (127.0.0.2 to 127.0.0.251).
pub const FIRST_SOURCE: u8 = 2;
const LAST_SOURCE: u8 = 251;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_accepted() {
        for raw in [
            "http://127.0.0.1:8080",
            "http://127.8.9.10:1",
            "http://localhost:8080",
            "http://LOCALHOST",
            "http://[::1]:8080",
            "ws://127.0.0.1:9000/ws",
        ] {
            let target = parse_target(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(target.ws.path(), "/ws");
            assert_eq!(target.ws.scheme(), "ws");
            assert_eq!(target.http.scheme(), "http");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for raw in [
            "http://10.0.0.1:8080",
            "http://128.0.0.1",
            "http://0.0.0.0:8080",
            "http://example.com",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "http://[::2]:80",
            "http://[fe80::1]:80",
            "https://127.0.0.1:8443",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(parse_target(raw).is_err(), "{raw} must be refused");
        }
    }

    #[test]
    fn targets_carry_the_socket_address_and_drop_the_path() {
        let target = parse_target("http://127.0.0.5:4321/some/path?x=1").unwrap();
        assert_eq!(target.http.as_str(), "http://127.0.0.5:4321/");
        assert_eq!(target.ws.as_str(), "ws://127.0.0.5:4321/ws");
        assert_eq!(target.socket_addr, "127.0.0.5:4321".parse().unwrap());
        let local = parse_target("http://localhost:80").unwrap();
        assert_eq!(local.socket_addr, "127.0.0.1:80".parse().unwrap());
    }

    #[test]
    fn database_urls_must_be_local_postgres() {
        assert!(check_loopback_database_url("postgres://postgres@127.0.0.1:5432/x").is_ok());
        assert!(check_loopback_database_url("postgresql://u@localhost/x").is_ok());
        assert!(check_loopback_database_url("postgres://u@[::1]:5432/x").is_ok());
        assert!(check_loopback_database_url("postgres://u@db.internal/x").is_err());
        assert!(check_loopback_database_url("postgres://u@10.0.0.1/x").is_err());
        assert!(check_loopback_database_url("sqlite://x.db").is_err());
    }

    #[test]
    fn source_addresses_start_after_the_usual_loopback() {
        let sources = source_addresses(FIRST_SOURCE, 3).unwrap();
        assert_eq!(
            sources,
            vec![
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 3),
                Ipv4Addr::new(127, 0, 0, 4)
            ]
        );
        assert!(sources.iter().all(|s| is_loopback_ip(IpAddr::V4(*s))));
        assert!(source_addresses(FIRST_SOURCE, 0).is_err());
        assert!(source_addresses(FIRST_SOURCE, 251).is_err());
        assert_eq!(source_addresses(FIRST_SOURCE, 250).unwrap().len(), 250);
    }

    #[test]
    fn a_second_load_generator_takes_addresses_of_its_own() {
        let sources = source_addresses(10, 2).unwrap();
        assert_eq!(
            sources,
            vec![Ipv4Addr::new(127, 0, 0, 10), Ipv4Addr::new(127, 0, 0, 11)]
        );
        assert_eq!(
            source_addresses(251, 1).unwrap(),
            vec![Ipv4Addr::new(127, 0, 0, 251)]
        );
        assert!(source_addresses(251, 2).is_err());
        assert!(
            source_addresses(1, 1).is_err(),
            "127.0.0.1 is left to the rest"
        );
    }
}
