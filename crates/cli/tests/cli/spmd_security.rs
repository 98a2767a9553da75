//! Refused connections, from a real rank-0 process's side and from ours: wrong secret,
//! foreign binary, other protocol version. Both sides must say which it was.

use std::process::{Command, Stdio};
use std::time::Duration;

use chorus::comm::handshake::{handshake, Hello, Role};
use chorus::comm::{Refusal, Secret, TransportPreference, World, WorldConfig};
use chorus::CommError;

use crate::support::{example, free_port, wait_with_limit};

/// Starts `hello` as rank 0 of 2 under a PMI-style launcher environment; it serves the
/// rendezvous at the returned address.
fn rank_zero(secret: &Secret) -> (std::process::Child, String) {
    let coordinator = format!("127.0.0.1:{}", free_port());
    let child = Command::new(example("hello"))
        .env("PMI_RANK", "0")
        .env("PMI_SIZE", "2")
        .env("CHORUS_COORDINATOR", &coordinator)
        .env("CHORUS_SECRET", secret.to_hex())
        .env("CHORUS_CONNECT_TIMEOUT", "3")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, coordinator)
}

fn join_as_rank_one(coordinator: &str, secret: Secret) -> Result<World, CommError> {
    World::connect(WorldConfig {
        rank: 1,
        size: 2,
        coordinator: coordinator.to_string(),
        secret,
        transport: TransportPreference::Auto,
        connect_timeout: Duration::from_secs(10),
        warn_after: Duration::from_secs(10),
        spin: None,
        single_copy: Default::default(),
    })
}

#[test]
fn wrong_secret_is_refused_on_both_sides() {
    let (child, coordinator) = rank_zero(&Secret::generate().unwrap());
    let err = join_as_rank_one(&coordinator, Secret::generate().unwrap()).unwrap_err();
    assert!(matches!(err, CommError::Refused { refusal: Refusal::WrongSecret, .. }), "{err}");
    assert!(err.to_string().contains("wrong secret"), "{err}");
    let out = wait_with_limit(child, Duration::from_secs(20));
    assert!(!out.success());
    assert!(out.stderr.contains("refused: wrong secret"), "{}", out.all());
    assert!(out.stderr.contains("rank(s) 1 did not join"), "{}", out.all());
}

#[test]
fn foreign_binary_is_refused_on_both_sides() {
    let secret = Secret::generate().unwrap();
    let (child, coordinator) = rank_zero(&secret);
    // This test binary is not the `hello` executable rank 0 runs.
    let err = join_as_rank_one(&coordinator, secret).unwrap_err();
    assert!(err.to_string().contains("binary mismatch: rank(s) 1"), "{err}");
    let out = wait_with_limit(child, Duration::from_secs(20));
    assert!(!out.success());
    assert!(out.stderr.contains("binary mismatch: rank(s) 1"), "{}", out.all());
}

#[test]
fn other_protocol_version_is_refused_on_both_sides() {
    let secret = Secret::generate().unwrap();
    let (child, coordinator) = rank_zero(&secret);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let err = rt.block_on(async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut s = chorus::comm::link::connect_tcp_retrying(&coordinator, deadline).await.unwrap();
        let mut me = Hello::new(Role::Rank { rank: 1, size: 2 }).unwrap();
        me.version = 99;
        handshake(&mut s, &secret, me, &|_| Ok(()), "to", "rank 0").await.unwrap_err()
    });
    assert!(
        matches!(err, CommError::Refused { refusal: Refusal::ProtocolVersion { local: 99, peer: 1 }, .. }),
        "{err}"
    );
    let out = wait_with_limit(child, Duration::from_secs(20));
    assert!(out.stderr.contains("protocol version mismatch: this process speaks v1, the peer speaks v99"), "{}", out.all());
}
