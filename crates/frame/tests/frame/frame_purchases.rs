//! The seed's purchases queries, through the DataFrame API and SQL, for 1–4 ranks.

use std::path::{Path, PathBuf};

use chorus_frame::datafusion::prelude::CsvReadOptions;
use chorus_frame::prelude::*;
use chorus_frame::{Context, CsvOptions, DataFrame};

use crate::support::{block_on, on_ranks, reference_session, rows};

pub fn purchases_file(dir: &Path, rows: u64) -> PathBuf {
    let path = dir.join("purchases.csv");
    chorus_datagen::write_purchases(&path, rows, 7).unwrap();
    path
}

/// The three queries of `bench/frame` through the DataFrame API.
pub fn api_queries(df: &DataFrame) -> Vec<DataFrame> {
    let amount = || col("Purchase_Amount");
    vec![
        df.aggregate(vec![], vec![avg(amount()).alias("mean")]).unwrap(),
        df.aggregate(vec![col("Product")], vec![avg(amount()).alias("mean"), stddev(amount()).alias("std")]).unwrap(),
        df.filter(col("Age").gt(lit(40))).unwrap().aggregate(vec![col("Product")], vec![count(lit(1)).alias("n")]).unwrap(),
    ]
}

pub const SQL_QUERIES: [&str; 3] = [
    "SELECT avg(Purchase_Amount) AS mean FROM purchases",
    "SELECT Product, avg(Purchase_Amount) AS mean, stddev(Purchase_Amount) AS std FROM purchases GROUP BY Product",
    "SELECT Product, count(*) AS n FROM purchases WHERE Age > 40 GROUP BY Product",
];

fn reference(path: &Path) -> Vec<Vec<String>> {
    let ctx = reference_session();
    block_on(async {
        ctx.register_csv("purchases", path.to_str().unwrap(), CsvReadOptions::new()).await.unwrap();
        let mut out = Vec::new();
        for q in SQL_QUERIES {
            out.push(rows(&ctx.sql(q).await.unwrap().collect().await.unwrap(), false));
        }
        out
    })
}

fn run_all(ctx: &Context, path: &Path) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let df = ctx.read_csv(path, CsvOptions::default()).unwrap();
    let api = api_queries(&df).iter().map(|q| rows(&q.collect().unwrap(), false)).collect();
    ctx.register("purchases", &df).unwrap();
    let sql = SQL_QUERIES.iter().map(|q| rows(&ctx.sql(q).unwrap().collect().unwrap(), false)).collect();
    (api, sql)
}

#[test]
fn purchases_queries_match_datafusion_on_one_to_four_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let path = purchases_file(dir.path(), 20_000);
    let expected = reference(&path);
    assert_eq!(expected[1].len(), 10, "ten products: {:?}", expected[1]);
    for ranks in 1..=4 {
        let got = on_ranks(ranks, 1, |ctx| run_all(ctx, &path));
        let (api, sql) = &got[0];
        assert_eq!(api, &expected, "DataFrame API on {ranks} ranks");
        assert_eq!(sql, &expected, "SQL on {ranks} ranks");
    }
}

#[test]
fn csv_options_header_delimiter_nulls_and_globs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.tsv"), "1\tx\t2.5\n2\tNA\t-\n3\ty\t4.0\n").unwrap();
    std::fs::write(dir.path().join("b.tsv"), "4\tx\t1.0\n5\t\tNA\n").unwrap();
    let schema = std::sync::Arc::new(chorus_frame::datafusion::arrow::datatypes::Schema::new(vec![
        chorus_frame::datafusion::arrow::datatypes::Field::new("id", chorus_frame::datafusion::arrow::datatypes::DataType::Int64, false),
        chorus_frame::datafusion::arrow::datatypes::Field::new("s", chorus_frame::datafusion::arrow::datatypes::DataType::Utf8, true),
        chorus_frame::datafusion::arrow::datatypes::Field::new("v", chorus_frame::datafusion::arrow::datatypes::DataType::Float64, true),
    ]));
    let glob = format!("{}/*.tsv", dir.path().display());
    let got = on_ranks(2, 1, |ctx| {
        let options = CsvOptions::default().header(false).delimiter(b'\t').schema(schema.clone()).null_value("NA").null_value("-");
        let df = ctx.read_csv(glob.as_str(), options).unwrap();
        let q = df.aggregate(vec![], vec![count(lit(1)), count(col("s")), count(col("v")), sum(col("v"))]).unwrap();
        rows(&q.collect().unwrap(), false)
    });
    assert_eq!(got[0], vec!["5 | 3 | 3 | 7.50000000e0".to_string()]);
}

#[test]
fn inferred_schema_is_shared_by_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let path = purchases_file(dir.path(), 3000);
    let schemas = on_ranks(3, 1, |ctx| format!("{:?}", ctx.read_csv(&path, CsvOptions::default()).unwrap().schema()));
    assert!(schemas.iter().all(|s| s == &schemas[0]));
    assert!(schemas[0].contains("Purchase_Amount") && schemas[0].contains("Float64"), "{}", schemas[0]);
}
