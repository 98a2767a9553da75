//! Driver mode: the plan goes to a local cluster's workers (this test binary) as data.

use std::time::Duration;

use chorus_frame::prelude::*;
use chorus_frame::{Context, CsvOptions};
use chorus_tasks::LocalCluster;

use crate::frame_purchases::{api_queries, purchases_file, SQL_QUERIES};
use crate::support::{on_ranks, rows};

fn cluster(workers: usize) -> LocalCluster {
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
