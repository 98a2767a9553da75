//! Errors reach the user with where they happened, on every rank, without a hang.

use std::io::Write;

use chorus_frame::prelude::*;
use chorus_frame::{CsvOptions, Error};

use crate::support::on_ranks;

#[test]
fn malformed_csv_row_names_file_line_and_column_on_every_rank() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(f, "id,amount,name").unwrap();
    for i in 0..3000 {
        if i == 2500 {
            writeln!(f, "{i},twelve,row{i}").unwrap();
        } else {
            writeln!(f, "{i},{}.5,row{i}", i % 100).unwrap();
        }
    }
    drop(f);
    let schema = std::sync::Arc::new(chorus_frame::datafusion::arrow::datatypes::Schema::new(vec![
        chorus_frame::datafusion::arrow::datatypes::Field::new("id", chorus_frame::datafusion::arrow::datatypes::DataType::Int64, false),
        chorus_frame::datafusion::arrow::datatypes::Field::new("amount", chorus_frame::datafusion::arrow::datatypes::DataType::Float64, true),
        chorus_frame::datafusion::arrow::datatypes::Field::new("name", chorus_frame::datafusion::arrow::datatypes::DataType::Utf8, true),
    ]));
    let errors = on_ranks(3, 1, |ctx| {
        let df = ctx.read_csv(&path, CsvOptions::default().schema(schema.clone())).unwrap();
        df.aggregate(vec![], vec![sum(col("amount"))]).unwrap().collect().unwrap_err()
    });
    // Line 2502 of the file (the header is line 1) is in the last third: rank 2 reads it.
    let location = format!("{}:2502", path.display());
    match &errors[2] {
        Error::Execution { rank: 2, message } => {
            assert!(message.contains(&location), "{message}");
            assert!(message.contains("amount") && message.contains("twelve"), "{message}");
        }
        other => panic!("rank 2 should report the bad row itself, got {other:?}"),
    }
    for (rank, e) in errors.iter().enumerate().take(2) {
        let text = e.to_string();
        assert!(text.contains("rank 2") && text.contains(&location), "rank {rank}: {text}");
    }
}

#[test]
fn unknown_column_and_type_errors_are_reported_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.csv");
    chorus_datagen::write_purchases(&path, 100, 1).unwrap();
    let results = on_ranks(2, 1, |ctx| {
        let df = ctx.read_csv(&path, CsvOptions::default()).unwrap();
        let unknown = df.select(vec![col("Purchase_Amont")]).unwrap_err();
        ctx.register("purchases", &df).unwrap();
        let sql_unknown = ctx.sql("SELECT nope FROM purchases").unwrap_err();
        let type_error = ctx.sql("SELECT Product - Age FROM purchases").unwrap_err();
        // The context still works afterwards: nothing was aborted.
        let count = df.count().unwrap();
        (unknown.to_string(), sql_unknown.to_string(), type_error.to_string(), count)
    });
    for (unknown, sql_unknown, type_error, count) in results {
        assert!(unknown.starts_with("invalid query") && unknown.contains("Purchase_Amont"), "{unknown}");
        assert!(sql_unknown.contains("nope"), "{sql_unknown}");
        assert!(type_error.starts_with("invalid query"), "{type_error}");
        assert_eq!(count, 100);
    }
}

#[test]
fn missing_file_is_an_invalid_query() {
    let results = on_ranks(2, 1, |ctx| ctx.read_csv("/nonexistent/chorus/x.csv", CsvOptions::default()).unwrap_err().to_string());
    for e in results {
        assert!(e.contains("/nonexistent/chorus/x.csv"), "{e}");
    }
}

#[test]
fn ranks_that_plan_different_queries_fail_before_moving_data() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["a.csv", "b.csv"] {
        chorus_datagen::write_purchases(&dir.path().join(name), 2000, 3).unwrap();
    }
    let errors = on_ranks(2, 1, |ctx| {
        // Rank 1 sees one more file than rank 0, as on a file system that is not shared.
        let files: Vec<_> = if ctx.rank() == 0 { vec![dir.path().join("a.csv")] } else { vec![dir.path().join("a.csv"), dir.path().join("b.csv")] };
        let df = ctx.read_csv(files, CsvOptions::default()).unwrap();
        let err = df.aggregate(vec![col("Product")], vec![count(lit(1))]).unwrap().collect().unwrap_err();
        // The context still works for queries the ranks agree on.
        let again = ctx.read_csv(dir.path().join("a.csv"), CsvOptions::default()).unwrap().count().unwrap();
        (err.to_string(), again)
    });
    for (err, again) in errors {
        assert!(err.contains("rank 1 planned this query differently"), "{err}");
        assert_eq!(again, 2000);
    }
}
