//! Driver mode: the plan goes to a local cluster's workers (this test binary) as data.

use std::time::Duration;

use chorus_frame::prelude::*;
use chorus_frame::{Context, CsvOptions};
use chorus_tasks::LocalCluster;

use crate::frame_purchases::{api_queries, purchases_file, SQL_QUERIES};
use crate::support::{on_ranks, rows};

/// A local cluster whose workers are this test binary.
pub fn cluster(workers: usize) -> LocalCluster {
    let exe = std::env::current_exe().expect("test binary path");
    let args = ["--exact", "worker_process", "--ignored", "--nocapture", "--test-threads=1"];
    LocalCluster::builder()
        .workers(workers)
        .worker_program(exe, args.iter().map(Into::into).collect())
        .timeout(Duration::from_secs(60))
        .start()
        .expect("local cluster starts")
}

#[test]
fn driver_mode_and_spmd_mode_give_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let path = purchases_file(dir.path(), 10_000);
    let join = "SELECT a.Product, count(*) AS n FROM purchases a JOIN (SELECT DISTINCT Product FROM purchases WHERE Age > 70) b \
                ON a.Product = b.Product GROUP BY a.Product ORDER BY a.Product";
    let spmd = on_ranks(2, 1, |ctx| {
        let df = ctx.read_csv(&path, CsvOptions::default()).unwrap();
        ctx.register("purchases", &df).unwrap();
        let mut out: Vec<Vec<String>> = api_queries(&df).iter().map(|q| rows(&q.collect().unwrap(), false)).collect();
        out.extend(SQL_QUERIES.iter().chain([&join]).map(|q| rows(&ctx.sql(q).unwrap().collect().unwrap(), false)));
        out
    });
    let cluster = cluster(2);
    let ctx = Context::on_cluster(&cluster.client()).unwrap();
    assert_eq!((ctx.rank(), ctx.size()), (0, 2));
    let df = ctx.read_csv(&path, CsvOptions::default()).unwrap();
    ctx.register("purchases", &df).unwrap();
    let mut driver: Vec<Vec<String>> = api_queries(&df).iter().map(|q| rows(&q.collect().unwrap(), false)).collect();
    driver.extend(SQL_QUERIES.iter().chain([&join]).map(|q| rows(&ctx.sql(q).unwrap().collect().unwrap(), false)));
    assert_eq!(driver, spmd[0]);

    // Writes happen on the workers, one file per partition.
    let out = dir.path().join("by_product");
    let written = df.filter(col("Age").gt(lit(60))).unwrap().write_parquet(&out).unwrap();
    assert!(written.len() >= 2, "{written:?}");
    let back = ctx.read_parquet(&out).unwrap().count().unwrap();
    let direct = df.filter(col("Age").gt(lit(60))).unwrap().count().unwrap();
    assert_eq!(back, direct);

    // A query that fails on a worker is an error on the driver naming the row, and the
    // cluster still works after it.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "a,b\n1,2\n3,x\n").unwrap();
    let schema = std::sync::Arc::new(chorus_frame::datafusion::arrow::datatypes::Schema::new(vec![
        chorus_frame::datafusion::arrow::datatypes::Field::new("a", chorus_frame::datafusion::arrow::datatypes::DataType::Int64, true),
        chorus_frame::datafusion::arrow::datatypes::Field::new("b", chorus_frame::datafusion::arrow::datatypes::DataType::Int64, true),
    ]));
    let err = ctx.read_csv(&bad, CsvOptions::default().schema(schema)).unwrap().collect().unwrap_err().to_string();
    assert!(err.contains(&format!("{}:3", bad.display())), "{err}");
    assert_eq!(df.count().unwrap(), 10_000);
}

#[test]
fn a_driver_query_is_reported_to_the_dashboard_with_its_plan_and_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    let path = purchases_file(dir.path(), 5_000);
    let cluster = cluster(2);
    let client = cluster.client();
    let ctx = Context::on_cluster(&client).unwrap();
    let df = ctx.read_csv(&path, CsvOptions::default()).unwrap();
    ctx.register("purchases", &df).unwrap();
    let sql = "SELECT Product, count(*) AS n FROM purchases GROUP BY Product ORDER BY Product";
    let rows_back: usize = ctx.sql(sql).unwrap().collect().unwrap().iter().map(|b| b.num_rows()).sum();
    let snap = client.snapshot(Default::default()).unwrap();
    let q = snap.queries.iter().find(|q| q.label == sql).unwrap_or_else(|| panic!("the query is not on the dashboard: {:?}", snap.queries));
    assert_eq!(q.rows, rows_back as u64);
    assert!(q.error.is_none() && q.micros > 0);
    assert!(q.plan.contains("ExchangeExec") && q.plan.contains("Hash("), "the plan with its distribution: {}", q.plan);
    assert_eq!(q.stages.len(), 3);
    assert!(q.stages[1].name.contains("2 ranks") && q.stages[1].micros > 0, "{:?}", q.stages);
    let shuffle = q.exchanges.iter().find(|e| e.name.contains("shuffle")).unwrap_or_else(|| panic!("{:?}", q.exchanges));
    assert!(shuffle.rows > 0 && shuffle.bytes > 0, "the shuffle moved rows between the 2 ranks: {shuffle:?}");

    // A query that fails is shown with its error.
    assert!(ctx.sql("SELECT CAST(Product AS INT) FROM purchases").unwrap().collect().is_err());
    let snap = client.snapshot(Default::default()).unwrap();
    let failed = snap.queries.last().unwrap();
    assert!(failed.label.contains("CAST") && failed.error.as_deref().is_some_and(|e| !e.is_empty()), "{failed:?}");
}
