//! A worker killed while a shuffle runs: what it held is recomputed from lineage, and
//! the result is the same.

use std::collections::BTreeMap;
use std::time::Duration;

use chorus_bag::{self as db, func};

use crate::support::cluster;

#[test]
fn group_by_gives_the_same_result_when_a_worker_is_killed_mid_shuffle() {
    let cluster = cluster(3);
    let client = cluster.client();
    let slow = db::range(&client, 60_000, 12).unwrap().map_partitions(func!(|p: Vec<u64>| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        p
    }));
    let grouped = slow.group_by(func!(|x: &u64| x % 101)).map(func!(|(k, xs): (u64, Vec<u64>)| (k, xs.len() as u64, xs.iter().sum::<u64>())));
    let victim = cluster.worker_pids()[1];
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(450));
        // SAFETY: the pid is a worker this test started.
        unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    });
    let mut got = grouped.compute().unwrap();
    // The map tasks alone take 1.2 s of the workers' time: the kill came while they ran.
    assert!(killer.is_finished(), "the worker was killed before the result came");
    killer.join().unwrap();
    got.sort();
    let mut expect: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for x in 0..60_000u64 {
        let e = expect.entry(x % 101).or_default();
        e.0 += 1;
        e.1 += x;
    }
    assert_eq!(got, expect.into_iter().map(|(k, (n, s))| (k, n, s)).collect::<Vec<_>>());
    assert_eq!(client.workers().len(), 2, "the killed worker is gone");
}
