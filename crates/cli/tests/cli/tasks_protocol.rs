//! What arrives on a listening port is not always chorus: garbage, length prefixes of
//! gigabytes, connections that never speak, and authenticated peers that send another
//! role's messages. Each process must survive them and keep serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chorus::comm::handshake::{handshake, Hello, Role};
use chorus::comm::{Secret, TransportPreference, World, WorldConfig};
use chorus::tasks::proto::{kind, wire, FromClient};

use crate::support::{free_port, me, rank_args, wait_with_limit};
use crate::tasks_standing::{square, Standing};

#[chorus::remote]
fn bytes(n: usize) -> Vec<u8> {
    vec![5; n]
}

/// Connects to `addr` until it accepts (a process may still be starting).
fn connect(addr: &str) -> TcpStream {
    let t = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) => assert!(t.elapsed() < Duration::from_secs(20), "{addr} never accepted: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends garbage and an oversized length prefix to `addr`, and opens a connection that
/// never speaks; returns that one, to keep open while the caller checks the service.
fn attack(addr: &str) -> TcpStream {
    let mut garbage = connect(addr);
    let noise: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let _ = garbage.write_all(&noise);
    drop(garbage);
    let mut huge = connect(addr);
    let _ = huge.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    let mut sink = [0u8; 64];
    // The process closes the connection (or answers with a refusal): it does not wait
    // for four gigabytes.
    huge.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    while let Ok(n) = huge.read(&mut sink) {
        if n == 0 {
            break;
        }
    }
    connect(addr)
}

#[test]
fn the_scheduler_and_worker_data_ports_survive_garbage_huge_lengths_and_silent_connections() {
    let cluster = Standing::start("garbage", 2, &[]);
    let client = cluster.client(2);
    let _silent = attack(&cluster.address);
    let futs = client.map(square, 0..1000i64);
    assert_eq!(client.gather(&futs).unwrap().len(), 1000, "the scheduler keeps serving");
    let late = cluster.client(2);
    assert_eq!(late.submit(square, (3,)).result().unwrap(), 9, "and accepts new drivers");
    let mut silent = Vec::new();
    for w in client.workers() {
        silent.push(attack(&w.data.tcp));
    }
    // Results above the inline size are read from the workers' data ports.
    let big: Vec<_> = (0..8).map(|_| client.submit(bytes, (100_000,))).collect();
    assert!(client.gather(&big).unwrap().iter().all(|b| b.len() == 100_000), "the data ports keep serving");
}

#[test]
fn a_message_of_another_role_closes_that_connection_with_a_logged_reason() {
    let cluster = Standing::start("wrong-role", 1, &[]);
    let client = cluster.client(1);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut s = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s = chorus::comm::link::connect_tcp_retrying(&cluster.address, deadline).await.unwrap();
        let me = Hello::new(Role::Member { kind: kind::WORKER, id: 0 }).unwrap();
        handshake(&mut s, &cluster.secret, me, &|_| Ok(()), "to", "the scheduler").await.unwrap();
        s.into_std().unwrap()
    });
    s.set_nonblocking(false).unwrap();
    // Authenticated as a worker, it speaks as a client.
    s.write_all(&wire::encode(&FromClient::Register)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    let n = s.read_to_end(&mut rest).expect("the scheduler closes the connection");
    assert_eq!(n, 0, "nothing is sent to a peer that broke the protocol");
    let log = cluster.wait_for_log("broke the protocol", Duration::from_secs(20));
    assert!(
        log.contains("[scheduler] WARN chorus: a worker broke the protocol (expected a worker's message to the scheduler, received a client's message to the scheduler)"),
        "the line is tagged with the process and its level: {log}"
    );
    assert_eq!(client.submit(square, (4,)).result().unwrap(), 16, "everyone else is served");
}

#[test]
fn rust_log_filters_the_warnings_of_chorus_processes() {
    let cluster = Standing::start("quiet", 1, &[("RUST_LOG", "error")]);
    let client = cluster.client(1);
    drop(attack(&cluster.address));
    // Something the scheduler does log at the error level would appear; warnings do not.
    assert_eq!(client.submit(square, (5,)).result().unwrap(), 25);
    std::thread::sleep(Duration::from_millis(300));
    let log = cluster.wait_for_log("", Duration::from_secs(1));
    assert!(!log.contains("WARN"), "RUST_LOG=error hides warnings: {log}");
    let loud = Standing::start("loud", 0, &[]);
    drop(attack(&loud.address));
    let log = loud.wait_for_log("WARN", Duration::from_secs(20));
    assert!(log.contains("[scheduler] WARN chorus:"), "{log}");
}

#[test]
fn rank_zeros_rendezvous_survives_garbage_huge_lengths_and_silent_connections() {
    let secret = Secret::generate().unwrap();
    let coordinator = format!("127.0.0.1:{}", free_port());
    let rank0 = Command::new(me())
        .args(rank_args())
        .env("CHORUS_TEST_SCENARIO", "hello")
        .env("PMI_RANK", "0")
        .env("PMI_SIZE", "2")
        .env("CHORUS_COORDINATOR", &coordinator)
        .env("CHORUS_SECRET", secret.to_hex())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _silent = attack(&coordinator);
    let world = World::connect(WorldConfig {
        rank: 1,
        size: 2,
        coordinator: coordinator.clone(),
        secret,
        transport: TransportPreference::Auto,
        connect_timeout: Duration::from_secs(20),
        warn_after: Duration::from_secs(20),
        spin: None,
        single_copy: Default::default(),
    })
    .expect("rank 1 still joins");
    world.finalize().expect("the job ends together");
    let out = wait_with_limit(rank0, Duration::from_secs(30));
    assert!(out.success(), "{}", out.all());
    assert!(out.stdout.contains("rank 0 of 2"), "{}", out.all());
}
