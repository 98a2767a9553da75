//! A standing cluster under the loads that used to break it: arguments of 100 MB, maps
//! of ten million tasks, and a driver that stops reading its results.

use std::process::{Command, Stdio};
use std::time::Duration;

use chorus::WaitFor;

use crate::support::{me, wait_with_limit};
use crate::tasks_standing::{square, Standing};

#[chorus::remote]
fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

#[chorus::remote]
fn inc(x: i64) -> i64 {
    x + 1
}

/// A result just under the inline size, so that results fill a stopped driver's budget
/// quickly.
#[chorus::remote]
fn padded(x: i64) -> Vec<u8> {
    vec![x as u8; 900]
}

/// The case that started the work: `client.submit(len_of, (vec![1u8; 100 << 20],))` used to
/// drop the driver's connection, and every later call on the client failed.
#[test]
fn a_100_mb_argument_on_a_standing_cluster_and_the_client_keeps_working() {
    let cluster = Standing::start("large-arg", 2, &[]);
    let client = cluster.client(2);
    assert_eq!(client.submit(len_of, (vec![1u8; 100 << 20],)).result().unwrap(), 100 << 20);
    assert_eq!(client.submit(square, (7,)).result().unwrap(), 49);
    // Over the hard limit of the workers: that future fails, nothing else.
    drop(client);
    let limited = Standing::start("limit", 1, &[("CHORUS_MAX_OBJECT", "10MiB")]);
    let client = limited.client(1);
    let e = client.submit(len_of, (vec![1u8; 20 << 20],)).result().unwrap_err().to_string();
    assert!(e.contains("20.0 MiB") && e.contains("10.0 MiB") && e.contains("CHORUS_MAX_OBJECT"), "{e}");
    let e = client.scatter(vec![vec![0u8; 20 << 20]]).unwrap()[0].result().unwrap_err().to_string();
    assert!(e.contains("refused") && e.contains("20.0 MiB"), "{e}");
    assert_eq!(client.submit(square, (8,)).result().unwrap(), 64, "the same client keeps working");
}

/// A map of this many tasks used to break the driver's connection (3,000,000 did).
const MILLIONS: i64 = 10_000_000;

#[test]
fn a_map_of_ten_million_tasks_from_a_driver_gives_the_right_sum() {
    let cluster = Standing::start("ten-million", 2, &[]);
    let client = cluster.client(2);
    let futs = client.map(inc, 0..MILLIONS);
    let results = client.gather(&futs).unwrap();
    assert_eq!(results.len() as i64, MILLIONS);
    assert_eq!(results.iter().sum::<i64>(), MILLIONS * (MILLIONS + 1) / 2);
}

/// What the stopped driver runs: a map of a million tasks whose results stream to it.
pub fn stopped_driver(address: &str) {
    let client = chorus::Client::connect(address).expect("the driver connects");
    client.wait_for_workers(2, Duration::from_secs(30)).expect("workers");
    let futs = client.map(padded, 0..1_000_000i64);
    println!("submitted");
    match client.gather(&futs) {
        Ok(r) => println!("gathered {}", r.len()),
        Err(e) => {
            eprintln!("Error: {e}");
            std::process::exit(3);
        }
    }
}

#[test]
fn a_stopped_driver_is_dropped_at_its_budget_and_another_driver_is_not_held_up() {
    let mut cluster = Standing::start("stopped-driver", 2, &[("CHORUS_SEND_BUDGET", "2MiB")]);
    let mut driver = Command::new(me())
        .args(["driver_program", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("CHORUS_TEST_DRIVER", &cluster.address)
        .env("CHORUS_SECRET", cluster.secret.to_hex())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(driver.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("submitted") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0, "the driver ended before submitting");
    }
    // SAFETY: kill sends a signal to a child this test started; no memory is involved.
    unsafe { libc::kill(driver.id() as i32, libc::SIGSTOP) };
    let log = cluster.wait_for_log("stopped reading", Duration::from_secs(60));
    assert!(log.contains("dropped client") && log.contains("CHORUS_SEND_BUDGET"), "{log}");
    // Another driver's map runs to the end while the stopped one stays stopped.
    let other = cluster.client(2);
    let futs = other.map(inc, 0..20_000i64);
    let (_, pending) = other.wait(&futs, WaitFor::AllCompleted, Some(Duration::from_secs(60)));
    assert!(pending.is_empty(), "{} of 20,000 tasks of the other driver did not finish", pending.len());
    assert_eq!(other.gather(&futs).unwrap().iter().sum::<i64>(), 20_000 * 20_001 / 2);
    assert!(cluster.scheduler_alive());
    // Woken again, the stopped driver learns that it was dropped, and says so.
    // SAFETY: as above.
    unsafe { libc::kill(driver.id() as i32, libc::SIGCONT) };
    driver.stdout = Some(out.into_inner());
    let done = wait_with_limit(driver, Duration::from_secs(60));
    assert_eq!(done.code, Some(3), "{}", done.all());
    assert!(done.stderr.contains("scheduler"), "{}", done.all());
}
