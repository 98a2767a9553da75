//! Runs `n` ranks as threads, each joining one job over loopback.

use std::net::TcpListener;
use std::time::Duration;

use chorus_comm::settings::SingleCopy;
use chorus_comm::{Secret, TransportPreference, World, WorldConfig};

/// How ranks of one host reach each other in a test: a transport, and for shared memory
/// whether large messages may cross in one copy.
#[derive(Debug, Clone, Copy)]
pub struct Via(pub TransportPreference, pub SingleCopy);

impl From<TransportPreference> for Via {
    fn from(t: TransportPreference) -> Via {
        Via(t, SingleCopy::Auto)
    }
}

/// Every way ranks of one host can be joined: shared memory with and without single
/// copies, Unix sockets, TCP.
pub const EVERY_VIA: [Via; 4] = [
    Via(TransportPreference::Auto, SingleCopy::Auto),
    Via(TransportPreference::Auto, SingleCopy::Off),
    Via(TransportPreference::Unix, SingleCopy::Auto),
    Via(TransportPreference::Tcp, SingleCopy::Auto),
];

/// Starts a coordinator and `n` ranks; returns each rank's result in rank order.
pub fn run_ranks<R: Send + 'static>(
    n: usize,
    via: impl Into<Via>,
    body: impl Fn(World) -> R + Send + Sync + Clone + 'static,
) -> Vec<R> {
    let Via(transport, single_copy) = via.into();
    let secret = Secret::generate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    listener.set_nonblocking(true).unwrap();
    let coord_secret = secret.clone();
    let coordinator = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            chorus_comm::rendezvous::serve(listener, n, coord_secret, Duration::from_secs(30)).await
        })
    });
    let ranks: Vec<_> = (0..n)
        .map(|rank| {
            let config = WorldConfig {
                rank,
                size: n,
                coordinator: addr.clone(),
                secret: secret.clone(),
                transport,
                connect_timeout: Duration::from_secs(30),
                warn_after: Duration::from_secs(30),
                spin: None,
                single_copy,
            };
            let body = body.clone();
            std::thread::spawn(move || body(World::connect(config).expect("join the job")))
        })
        .collect();
    let results = ranks.into_iter().map(|h| h.join().expect("rank thread")).collect();
    if n > 1 {
        coordinator.join().unwrap().expect("coordinator");
    }
    results
}
