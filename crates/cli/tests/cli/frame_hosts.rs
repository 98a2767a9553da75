//! The distributed DataFrame across hosts: all 22 TPC-H queries at scale factor 0.1 on
//! three ranks in three network namespaces, over TCP (under TLS, the default between
//! hosts), equal to single-process DataFusion; and driver-mode queries on a standing
//! cluster whose scheduler and two workers sit on three hosts.
//!
//! The hosts share this machine's file system, as a cluster's hosts share a network
//! file system: every rank reads its own parts of the same Parquet files.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chorus::{Client, Secret};
use chorus_datagen::tpch;
use chorus_frame::datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use chorus_frame::Context;

use crate::support::{me, rank_args, wait_with_limit, Finished, Namespaces};
use crate::tasks_tls::HostCluster;

/// The queries the driver-mode test runs: a scan and aggregate, joins of five and six
/// tables, an outer join, an `IN` subquery, and a `NOT IN` and a `NOT EXISTS`.
const DRIVER_QUERIES: [usize; 7] = [1, 5, 9, 13, 18, 16, 22];

/// Each query's answer as `tpch::answer` gives it, one query per line, rows joined by
/// `\u{1f}` (the unit separator, in no TPC-H value).
fn answers_text(answers: &[(usize, Vec<String>)]) -> String {
    answers.iter().map(|(n, rows)| format!("q{n}\t{}\n", rows.join("\u{1f}"))).collect()
}

fn parse_answers(text: &str) -> Vec<(usize, Vec<String>)> {
    text.lines()
        .filter_map(|l| l.strip_prefix('q'))
        .filter_map(|l| l.split_once('\t'))
        .map(|(n, rows)| {
            let rows = if rows.is_empty() { Vec::new() } else { rows.split('\u{1f}').map(String::from).collect() };
            (n.parse().expect("a query number"), rows)
        })
        .collect()
}

fn register(ctx: &Context, dir: &Path) -> chorus_frame::Result<()> {
    for table in tpch::TABLES {
        ctx.register_parquet(table, dir.join(table))?;
    }
    Ok(())
}

/// `queries` run by single-process DataFusion over the tables in `dir`.
fn reference(dir: &Path, queries: impl IntoIterator<Item = usize>) -> Vec<(usize, Vec<String>)> {
    let mut config = SessionConfig::new().with_target_partitions(2);
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let ctx = SessionContext::new_with_config(config);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        for table in tpch::TABLES {
            ctx.register_parquet(table, dir.join(table).to_str().unwrap(), ParquetReadOptions::default()).await.unwrap();
        }
        let mut out = Vec::new();
        for n in queries {
            let batches = ctx.sql(tpch::query(n).unwrap()).await.unwrap().collect().await.unwrap();
            out.push((n, tpch::answer(&batches, tpch::is_ordered(n))));
        }
        out
    })
}

/// The `tpch` scenario on every rank: the 22 queries over the tables in `dir`; rank 0
/// prints the answers.
pub fn tpch_ranks(world: chorus::World, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let world = Arc::new(world);
    let ctx = Context::new(Arc::clone(&world))?;
    register(&ctx, dir)?;
    let mut answers = Vec::new();
    for n in 1..=22 {
        let batches = ctx.sql(tpch::query(n).expect("22 queries"))?.collect()?;
        answers.push((n, tpch::answer(&batches, tpch::is_ordered(n))));
    }
    if world.rank() == 0 {
        print!("{}", answers_text(&answers));
    }
    drop(ctx);
    if let Some(world) = Arc::into_inner(world) {
        world.finalize()?;
    }
    Ok(())
}

/// The driver of [`driver_mode_queries_on_a_cluster_across_three_hosts_match_datafusion`].
pub fn frame_driver(address: &str, dir: &Path) {
    let secret = Secret::from_env().expect("a valid CHORUS_SECRET").expect("CHORUS_SECRET is set");
    let client = Client::connect_with_secret(address, secret).expect("the driver connects");
    client.wait_for_workers(2, Duration::from_secs(30)).expect("both workers join");
    let ctx = Context::on_cluster(&client).expect("a driver context");
    register(&ctx, dir).expect("the tables register");
    let answers: Vec<_> = DRIVER_QUERIES
        .iter()
        .map(|&n| {
            let batches = ctx.sql(tpch::query(n).unwrap()).unwrap().collect().unwrap();
            (n, tpch::answer(&batches, tpch::is_ordered(n)))
        })
        .collect();
    print!("{}", answers_text(&answers));
}

fn tpch_tables(tag: &str, scale: f64) -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix(&format!("chorus-{tag}-")).tempdir().unwrap();
    tpch::write_tables(dir.path(), scale, 3).unwrap();
    dir
}

fn assert_same_answers(got: &Finished, want: &[(usize, Vec<String>)], context: &str) {
    let answers = parse_answers(&got.stdout);
    assert_eq!(answers.len(), want.len(), "{context}: every query answered\n{}", got.all());
    for ((n, rows), (m, expected)) in answers.iter().zip(want) {
        assert_eq!(n, m);
        assert!(rows == expected, "{context}: TPC-H query {n} differs from DataFusion's answer ({} rows, want {})", rows.len(), expected.len());
    }
}

#[test]
fn all_22_tpch_queries_on_three_hosts_over_tcp_match_single_process_datafusion() {
    let Some(ns) = Namespaces::for_test(3) else { return };
    let tables = tpch_tables("tpch-hosts", 0.1);
    let want = reference(tables.path(), 1..=22);
    assert!(want.iter().filter(|(_, rows)| !rows.is_empty()).count() >= 21, "the queries select rows at SF 0.1");
    let secret = Secret::generate().unwrap().to_hex();
    let children: Vec<_> = (0..3)
        .map(|r| {
            ns.exec(r, me())
                .args(rank_args())
                .env("CHORUS_TEST_SCENARIO", format!("tpch:{}", tables.path().display()))
                .env("PMI_RANK", r.to_string())
                .env("PMI_SIZE", "3")
                .env("CHORUS_COORDINATOR", "10.123.0.1:47200")
                .env("CHORUS_SECRET", &secret)
                .env("CHORUS_FRAME_THREADS", "1")
                .env("RUST_LOG", "warn,chorus_comm::handshake=debug")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Finished> = children.into_iter().map(|c| wait_with_limit(c, Duration::from_secs(600))).collect();
    for (r, out) in outs.iter().enumerate() {
        assert!(out.success(), "rank {r}: {}", out.all());
        // The ranks reached each other over TCP between the hosts, under TLS.
        assert!(out.stderr.matches("secured with TLS").count() >= 2, "rank {r} talks to the others over TLS: {}", out.all());
    }
    assert_same_answers(&outs[0], &want, "3 ranks on 3 hosts");
}

#[test]
fn driver_mode_queries_on_a_cluster_across_three_hosts_match_datafusion() {
    let Some(ns) = Namespaces::for_test(3) else { return };
    let tables = tpch_tables("tpch-driver", 0.02);
    let want = reference(tables.path(), DRIVER_QUERIES);
    let address = "10.123.0.1:47300";
    let cluster = HostCluster::start(&ns, address, &[("CHORUS_FRAME_THREADS", "1")]);
    let job = format!("frame:{}", tables.path().display());
    let out = cluster.drive(&ns, address, &job, &[], Duration::from_secs(300));
    let (scheduler_log, worker_log) = cluster.stop();
    assert!(out.success(), "{}\nscheduler:\n{scheduler_log}\nworkers:\n{worker_log}", out.all());
    assert_same_answers(&out, &want, "driver mode, workers on 2 hosts");
}
