//! Who a request comes from, for the per-client limits: the peer address or, when the peer is a
//! trusted proxy (`--trusted-proxies`), the address it reports in `X-Forwarded-For`. From
//! anyone else the header is ignored: a client could name any address in it.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use ipnet::IpNet;

use super::AppState;
use crate::pipeline::ClientId;

/// The client of a request.
pub(super) struct Client(pub(super) ClientId);

impl FromRequestParts<AppState> for Client {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        // Without a peer address (a router served by other means) the request is local.
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
        let trusted = &state.playground.config().trusted_proxies;
        Ok(Client(ClientId::new(client_addr(
            peer,
            &parts.headers,
            trusted,
        ))))
    }
}

/// The client's address: `peer`, unless it is a trusted proxy; then the right-most address
/// of `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends the address it
/// saw, so addresses left of an untrusted one may be made up).
pub(super) fn client_addr(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |addr: &IpAddr| trusted.iter().any(|net| net.contains(addr));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(addr) = hop.parse::<IpAddr>() else {
            break;
        };
        client = addr;
        if !is_trusted(&addr) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let h = headers(&["1.2.3.4, 5.6.7.8", "10.0.0.2"]);
        // From an untrusted peer the header is ignored.
        assert_eq!(client_addr(ip("9.9.9.9"), &h, &trusted), ip("9.9.9.9"));
        // Through two trusted proxies: the first address they did not add themselves.
        assert_eq!(client_addr(ip("10.0.0.1"), &h, &trusted), ip("5.6.7.8"));
        // No header, or garbage in it: the proxy itself.
        assert_eq!(
            client_addr(ip("10.0.0.1"), &headers(&[]), &trusted),
            ip("10.0.0.1")
        );
        assert_eq!(
            client_addr(ip("10.0.0.1"), &headers(&["nonsense"]), &trusted),
            ip("10.0.0.1")
        );
    }
}
