//! The HTTP server: routes, the event stream, and its thread.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::model::{Snapshot, SnapshotQuery};
use crate::{assets, auth, metrics, Bind, Error, Source};

/// How often the event stream sends, at most.
const STREAM_PERIOD: Duration = Duration::from_millis(100);
/// The most task events one message or answer carries: a browser that connects late
/// gets the latest ones, not the whole ring.
const EVENTS_PER_MESSAGE: usize = 20_000;

/// A running dashboard; dropping it stops the server.
pub struct Dashboard {
    addr: SocketAddr,
    link: String,
    displaced: Option<u16>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard").field("addr", &self.addr).finish()
    }
}

#[derive(Clone)]
struct App {
    source: Arc<dyn Source>,
}

impl App {
    /// A snapshot, taken on a blocking thread; `503` once the cluster is gone.
    async fn snapshot(&self, query: SnapshotQuery) -> Result<Snapshot, Response> {
        let source = self.source.clone();
        let snap = tokio::task::spawn_blocking(move || source.snapshot(query)).await.ok().flatten();
        let mut snap = snap.ok_or_else(|| (StatusCode::SERVICE_UNAVAILABLE, "the cluster has stopped").into_response())?;
        if snap.events.len() > EVENTS_PER_MESSAGE {
            snap.events.drain(..snap.events.len() - EVENTS_PER_MESSAGE);
        }
        Ok(snap)
    }
}

impl Dashboard {
    /// Starts serving `source` on `bind`; `token` guards it when the address is not a
    /// loopback one.
    pub fn serve(bind: Bind, token: String, source: Arc<dyn Source>) -> Result<Dashboard, Error> {
        let (listener, displaced) = listen(&bind)?;
        let addr = listener.local_addr().map_err(|source| Error::Bind { addr: bind_addr(&bind), source })?;
        let guard = auth::Guard::new(addr.ip(), token);
        let host = if addr.ip().is_unspecified() { chorus_comm::diag::hostname() } else { addr.ip().to_string() };
        let link = match guard.link_query() {
            Some(q) => format!("http://{host}:{}/status?{q}", addr.port()),
            None => format!("http://{host}:{}/status", addr.port()),
        };
        let app = App { source };
        let router = Router::new()
            .route("/", get(|| async { Redirect::temporary("/status") }))
            .route("/status", get(page))
            .route("/workers", get(page))
            .route("/spmd", get(page))
            .route("/queries", get(page))
            .route("/assets/{name}", get(asset))
            .route("/api/snapshot", get(api_snapshot))
            .route("/api/workers", get(api_workers))
            .route("/api/tasks", get(api_tasks))
            .route("/api/groups", get(api_groups))
            .route("/api/spmd", get(api_spmd))
            .route("/api/queries", get(api_queries))
            .route("/api/stream", get(api_stream))
            .route("/metrics", get(prometheus))
            .layer(axum::middleware::from_fn_with_state(guard, auth::check))
            .with_state(app);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        listener.set_nonblocking(true).map_err(|source| Error::Bind { addr, source })?;
        let thread = std::thread::Builder::new()
            .name("chorus-dashboard".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(r) => r,
                    Err(e) => return chorus_comm::diag::warn(&format!("the dashboard could not start: {e}")),
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return chorus_comm::diag::warn(&format!("the dashboard could not start: {e}")),
                    };
                    let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                        let _ = stopped.await;
                    });
                    if let Err(e) = serve.await {
                        chorus_comm::diag::warn(&format!("the dashboard stopped: {e}"));
                    }
                });
                // Streams still open end with the runtime.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(Error::Thread)?;
        Ok(Dashboard { addr, link, displaced, stop: Some(stop), thread: Some(thread) })
    }

    /// The link to open: the status page, with the token when one is needed.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// The address it listens on.
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// The port [`Bind::Default`] wanted when that one was taken (it took the next free
    /// one), for the caller to say so.
    pub fn displaced(&self) -> Option<u16> {
        self.displaced
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind_addr(bind: &Bind) -> SocketAddr {
    match bind {
        Bind::Default => SocketAddr::from(([127, 0, 0, 1], Bind::DEFAULT_PORT)),
        Bind::Explicit(a) => *a,
    }
}

/// Binds `bind`: the address given, or the first free port from 8787 on (and which
/// port was wanted when it was not the first).
fn listen(bind: &Bind) -> Result<(TcpListener, Option<u16>), Error> {
    match bind {
        Bind::Explicit(addr) => TcpListener::bind(addr).map(|l| (l, None)).map_err(|source| Error::Bind { addr: *addr, source }),
        Bind::Default => {
            let first = Bind::DEFAULT_PORT;
            let last = first + Bind::PORTS_TRIED - 1;
            (first..=last)
                .find_map(|port| TcpListener::bind(("127.0.0.1", port)).ok())
                .map(|l| {
                    let moved = l.local_addr().is_ok_and(|a| a.port() != first);
                    (l, moved.then_some(first))
                })
                .ok_or(Error::NoFreePort { first, last })
        }
    }
}

async fn page() -> Html<&'static str> {
    Html(assets::PAGE)
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match assets::get(&name) {
        Some((mime, body)) => ([(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache")], body).into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

/// `?since=N&memory_since=T` of the API.
#[derive(Debug, Default, Deserialize)]
struct ApiQuery {
    since: Option<u64>,
    memory_since: Option<u64>,
}

impl ApiQuery {
    fn snapshot_query(&self) -> SnapshotQuery {
        SnapshotQuery { events_since: self.since.unwrap_or(u64::MAX), memory_since_us: self.memory_since }
    }
}

async fn api_snapshot(State(app): State<App>, Query(q): Query<ApiQuery>) -> Result<Json<Snapshot>, Response> {
    let q = SnapshotQuery { events_since: q.since.unwrap_or(0), ..q.snapshot_query() };
    app.snapshot(q).await.map(Json)
}

async fn api_workers(State(app): State<App>) -> Result<Response, Response> {
    let s = app.snapshot(ApiQuery::default().snapshot_query()).await?;
    Ok(Json(json!({ "now_us": s.now_us, "workers": s.workers, "departed": s.departed })).into_response())
}

async fn api_tasks(State(app): State<App>, Query(q): Query<ApiQuery>) -> Result<Response, Response> {
    let q = SnapshotQuery { events_since: q.since.unwrap_or(0), ..q.snapshot_query() };
    let s = app.snapshot(q).await?;
    Ok(Json(json!({ "now_us": s.now_us, "events": s.events, "next_event": s.next_event, "groups": s.groups, "totals": s.totals })).into_response())
}

async fn api_groups(State(app): State<App>) -> Result<Response, Response> {
    let s = app.snapshot(ApiQuery::default().snapshot_query()).await?;
    Ok(Json(json!({ "now_us": s.now_us, "groups": s.groups })).into_response())
}

async fn api_spmd(State(app): State<App>) -> Result<Response, Response> {
    let s = app.snapshot(ApiQuery::default().snapshot_query()).await?;
    Ok(Json(json!({ "now_us": s.now_us, "jobs": s.spmd })).into_response())
}

async fn api_queries(State(app): State<App>) -> Result<Response, Response> {
    let s = app.snapshot(ApiQuery::default().snapshot_query()).await?;
    Ok(Json(json!({ "now_us": s.now_us, "queries": s.queries })).into_response())
}

async fn prometheus(State(app): State<App>) -> Result<Response, Response> {
    let s = app.snapshot(ApiQuery::default().snapshot_query()).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::render(&s)).into_response())
}

/// The pages' live feed: a snapshot at most every 100 ms with the task events since the
/// previous one. Nothing is queued for a slow or gone browser: the next message is only
/// made when the connection takes it, and a closed one ends the stream.
async fn api_stream(State(app): State<App>, Query(q): Query<ApiQuery>) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let state = (app, q.since.unwrap_or(0), q.memory_since, true);
    let stream = futures_util::stream::unfold(state, |(app, since, memory_since, first)| async move {
        if !first {
            tokio::time::sleep(STREAM_PERIOD).await;
        }
        let snap = app.snapshot(SnapshotQuery { events_since: since, memory_since_us: memory_since }).await.ok()?;
        let next = snap.next_event;
        let memory_since = memory_since.map(|_| snap.now_us + 1);
        let event = Event::default().event("snapshot").json_data(&snap).unwrap_or_else(|_| Event::default().comment("unencodable"));
        Some((Ok(event), (app, next, memory_since, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
