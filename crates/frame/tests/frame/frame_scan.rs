//! chorus's CSV reader against DataFusion's: the same rows from files that quote,
//! double quotes, end lines with CRLF and skip empty lines, cut into byte ranges that
//! split lines, on several ranks.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use chorus_frame::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chorus_frame::datafusion::prelude::CsvReadOptions;
use chorus_frame::{CsvOptions, Error};

use crate::support::{block_on, on_ranks, reference_session, rows};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("day", DataType::Date32, true),
        Field::new("note", DataType::Utf8, true),
    ]))
}

/// 3000 records in the dialect's corners: quoted fields holding delimiters and doubled
/// quotes, empty fields, text after a closing quote, quotes inside unquoted fields,
/// CRLF endings, empty lines.
fn awkward_csv(path: &Path) {
    let mut text = String::from("id,name,amount,day,note\r\n");
    for i in 0..3000 {
        let name = match i % 5 {
            0 => format!("\"Lee, {i}\""),
            1 => format!("\"say \"\"hi\"\" {i}\""),
            2 => String::new(),
            3 => format!("O\"Neil {i}"),
            _ => format!("plain{i}"),
        };
        let amount = if i % 7 == 0 { String::new() } else { format!("{}.25", i % 101) };
        let note = match i % 4 {
            0 => "\"a,b,c\"".to_string(),
            1 => "\"q\"after".to_string(),
            _ => format!("n{i}"),
        };
        write!(text, "{i},{name},{amount},2024-01-{:02},{note}\r\n", 1 + i % 28).unwrap();
        if i % 500 == 0 {
            text.push_str("\r\n");
        }
    }
    std::fs::write(path, text).unwrap();
}

/// `sql` over `path` as table `t`, read by DataFusion alone (with `schema`, or inferred).
fn reference(path: &Path, sql: &str, schema: Option<&Schema>) -> Vec<String> {
    let ctx = reference_session();
    block_on(async {
        let mut options = CsvReadOptions::new();
        options.schema = schema;
        ctx.register_csv("t", path.to_str().unwrap(), options).await.unwrap();
        rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap(), false)
    })
}

#[test]
fn awkward_csv_on_three_ranks_reads_as_datafusion_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("awkward.csv");
    awkward_csv(&path);
    let queries = [
        "SELECT id, name, amount, day, note FROM t",
        "SELECT note, id FROM t",
        "SELECT count(*) FROM t",
        "SELECT name FROM t WHERE amount IS NULL",
        "SELECT id AS a, id AS b, day FROM t",
    ];
    let want: Vec<Vec<String>> = queries.iter().map(|q| reference(&path, q, Some(&schema()))).collect();
    // 3 ranks × 2 threads: six byte ranges of the file, most starting mid-line.
    let results = on_ranks(3, 2, |ctx| {
        ctx.register_csv("t", &path, CsvOptions::default().schema(schema())).unwrap();
        let plan = ctx.sql(queries[1]).unwrap().explain().unwrap();
        let answers: Vec<Vec<String>> = queries.iter().map(|q| rows(&ctx.sql(q).unwrap().collect().unwrap(), false)).collect();
        (plan, answers)
    });
    let (plan, answers) = &results[0];
    assert!(plan.contains("reader=chorus") && plan.contains("awkward.csv:0.."), "{plan}");
    for ((q, got), want) in queries.iter().zip(answers).zip(&want) {
        assert_eq!(got, want, "{q}");
    }
    assert_eq!(want[0].len(), 3000);
}

#[test]
fn a_limit_on_a_csv_scan_returns_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("awkward.csv");
    awkward_csv(&path);
    let counts = on_ranks(2, 1, |ctx| {
        ctx.register_csv("t", &path, CsvOptions::default().schema(schema())).unwrap();
        let limited = ctx.sql("SELECT id, note FROM t LIMIT 7").unwrap().collect().unwrap();
        limited.iter().map(|b| b.num_rows()).sum::<usize>()
    });
    assert_eq!(counts[0], 7);
}

#[test]
fn a_record_with_too_few_fields_names_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.csv");
    let mut text = String::from("a,b,c\n");
    for i in 0..2000 {
        if i == 1200 {
            text.push_str("1200,7\n");
        } else {
            writeln!(text, "{i},{},x{i}", i % 9).unwrap();
        }
    }
    std::fs::write(&path, text).unwrap();
    let errors = on_ranks(2, 1, |ctx| {
        let df = ctx.read_csv(&path, CsvOptions::default()).unwrap();
        // Only `a` is read, but every record's fields are counted.
        df.select(vec![chorus_frame::prelude::col("a")]).unwrap().collect().unwrap_err()
    });
    let location = format!("{}:1202", path.display());
    let message = match &errors[1] {
        Error::Execution { rank: 1, message } => message.clone(),
        other => panic!("rank 1 reads the second half, got {other:?}"),
    };
    assert!(message.contains(&location) && message.contains("2 fields where the schema has 3"), "{message}");
}

#[test]
fn a_record_longer_than_a_read_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.csv");
    // A 12 MB quoted value (reads are of 8 MiB) in the middle, with a delimiter inside.
    let mut text = String::from("id,note,n\n");
    for i in 0..1000 {
        writeln!(text, "{i},short{i},{i}").unwrap();
    }
    writeln!(text, "1000,\"{},{}\",1000", "x".repeat(6 << 20), "y".repeat(6 << 20)).unwrap();
    for i in 1001..2000 {
        writeln!(text, "{i},short{i},{i}").unwrap();
    }
    std::fs::write(&path, text).unwrap();
    let sql = "SELECT id, length(note) AS len, n FROM t";
    let want = reference(&path, sql, None);
    let got = on_ranks(2, 1, |ctx| {
        ctx.register_csv("t", &path, CsvOptions::default()).unwrap();
        rows(&ctx.sql(sql).unwrap().collect().unwrap(), false)
    });
    assert_eq!(got[0], want);
    assert!(want.contains(&format!("1000 | {} | 1000", (12 << 20) + 1)), "the long value is whole");
}
