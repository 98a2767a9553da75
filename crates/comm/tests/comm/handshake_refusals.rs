//! The handshake refuses a wrong secret, another binary and another protocol version, and
//! both sides say which it was.

use chorus_comm::fingerprint::Fingerprint;
use chorus_comm::handshake::{handshake, Hello, Role};
use chorus_comm::{Error, Refusal, Secret};

type Outcome = (Result<Hello, Error>, Result<Hello, Error>);

fn pair(a: (Secret, Hello), b: (Secret, Hello)) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let (mut x, mut y) = tokio::net::UnixStream::pair().unwrap();
        let left = async move { handshake(&mut x, &a.0, a.1, &|_| Ok(()), "to", "b").await };
        let right = async move { handshake(&mut y, &b.0, b.1, &|_| Ok(()), "from", "a").await };
        tokio::join!(left, right)
    })
}

fn rank(r: u32) -> Hello {
    Hello::new(Role::Rank { rank: r, size: 2 }).unwrap()
}

fn refusal(r: &Result<Hello, Error>) -> Refusal {
    match r {
        Err(Error::Refused { refusal, .. }) => refusal.clone(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn same_secret_binary_and_version_are_accepted() {
    let s = Secret::generate().unwrap();
    let (a, b) = pair((s.clone(), rank(0)), (s, rank(1)));
    assert_eq!(a.unwrap().role, Role::Rank { rank: 1, size: 2 });
    assert_eq!(b.unwrap().role, Role::Rank { rank: 0, size: 2 });
}

#[test]
fn wrong_secret_is_refused_on_both_sides() {
    let (a, b) = pair((Secret::generate().unwrap(), rank(0)), (Secret::generate().unwrap(), rank(1)));
    assert_eq!(refusal(&a), Refusal::WrongSecret);
    assert_eq!(refusal(&b), Refusal::WrongSecret);
    assert!(a.unwrap_err().to_string().contains("wrong secret"));
}

#[test]
fn another_binary_is_refused_on_both_sides() {
    let s = Secret::generate().unwrap();
    let mut other = rank(1);
    other.fingerprint = Fingerprint([9; 32]);
    let (a, b) = pair((s.clone(), rank(0)), (s, other));
    assert!(matches!(refusal(&a), Refusal::BinaryMismatch { .. }));
    assert!(matches!(refusal(&b), Refusal::BinaryMismatch { .. }));
    let msg = a.unwrap_err().to_string();
    assert!(msg.contains("binary mismatch") && msg.contains("090909090909"), "{msg}");
}

#[test]
fn a_coordinator_does_not_compare_binaries() {
    // The `chorus` launcher serves the rendezvous for programs built separately.
    let s = Secret::generate().unwrap();
    let mut coordinator = Hello::new(Role::Coordinator).unwrap();
    coordinator.fingerprint = Fingerprint([9; 32]);
    let (a, b) = pair((s.clone(), rank(0)), (s, coordinator));
    assert!(a.is_ok() && b.is_ok());
}

#[test]
fn another_protocol_version_is_refused_on_both_sides() {
    let s = Secret::generate().unwrap();
    let mut future = rank(1);
    future.version = 7;
    let (a, b) = pair((s.clone(), rank(0)), (s, future));
    assert_eq!(refusal(&a), Refusal::ProtocolVersion { local: 1, peer: 7 });
    assert_eq!(refusal(&b), Refusal::ProtocolVersion { local: 7, peer: 1 });
}

#[test]
fn a_caller_check_refuses_an_unexpected_peer_on_both_sides() {
    let s = Secret::generate().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (a, b) = rt.block_on(async move {
        let (mut x, mut y) = tokio::net::UnixStream::pair().unwrap();
        let s2 = s.clone();
        let left = async move {
            handshake(&mut x, &s, rank(0), &|_| Err(Refusal::Unexpected("wanted rank 5".into())), "to", "b").await
        };
        let right = async move { handshake(&mut y, &s2, rank(1), &|_| Ok(()), "from", "a").await };
        tokio::join!(left, right)
    });
    assert_eq!(refusal(&a), Refusal::Unexpected("wanted rank 5".into()));
    assert!(b.unwrap_err().to_string().contains("wanted rank 5"));
}

#[test]
fn secrets_round_trip_through_hex_and_owner_only_files() {
    let s = Secret::generate().unwrap();
    assert_eq!(Secret::from_hex(&s.to_hex()).unwrap(), s);
    assert!(Secret::from_hex("abc").is_err());
    let dir = std::env::temp_dir().join(format!("chorus-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret");
    s.write_new_file(&path).unwrap();
    assert_eq!(Secret::read_file(&path).unwrap(), s);
    assert!(s.write_new_file(&path).is_err(), "never overwrites");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Secret::read_file(&path).unwrap_err().to_string();
    assert!(err.contains("readable by other users"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
