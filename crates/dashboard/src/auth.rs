//! The token check on dashboards that listen beyond loopback.
//!
//! Like Jupyter's: the link printed once carries `?token=…`; a request that brings it
//! gets the token back as an HTTP-only cookie, so the pages' own requests pass without
//! it. `Authorization: token …` (or `Bearer …`) works for scripts. Anything else gets
//! `401` and a body that says what to do, nothing of the cluster.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const COOKIE: &str = "chorus_dashboard_token";

/// Whether requests need the token, and the token.
#[derive(Clone)]
pub(crate) struct Guard {
    token: Option<String>,
}

impl Guard {
    /// Loopback binds need no token; every other one does.
    pub(crate) fn new(ip: IpAddr, token: String) -> Guard {
        Guard { token: (!ip.is_loopback()).then_some(token) }
    }

    /// `token=…` for the link, when one is needed.
    pub(crate) fn link_query(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("token={t}"))
    }
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn from_query(req: &Request) -> Option<&str> {
    req.uri().query()?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

fn from_cookie(req: &Request) -> Option<&str> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn from_header(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("token ").or_else(|| v.strip_prefix("Bearer "))
}

pub(crate) async fn check(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let Some(token) = &guard.token else { return next.run(req).await };
    let by_query = from_query(&req).is_some_and(|t| same(t, token));
    if by_query || from_cookie(&req).is_some_and(|t| same(t, token)) || from_header(&req).is_some_and(|t| same(t, token)) {
        let mut resp = next.run(req).await;
        if by_query {
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        return resp;
    }
    (
        StatusCode::UNAUTHORIZED,
        "This chorus dashboard needs the cluster's token: open the link the scheduler printed (it ends in ?token=...).\n",
    )
        .into_response()
}
