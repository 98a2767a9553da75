//! Object storage: CSV and Parquet in an S3-compatible store (moto's server, on
//! loopback) read by several ranks and by a driver's workers, written and read back,
//! public buckets read anonymously, and the errors of missing buckets and keys, wrong
//! credentials and failing servers, each naming the URL.
//!
//! The server comes from `CHORUS_TEST_MOTO`, a directory holding `moto_server` and the
//! `python` it runs with (`.ci/run` installs them); without it these tests are skipped,
//! or fail under `CHORUS_REQUIRE_MOTO=1`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chorus_frame::prelude::*;
use chorus_frame::{Context, CsvOptions, Error, FrameOptions, StorageFailure, StorageOptions};

use crate::frame_purchases::{api_queries, SQL_QUERIES};
use crate::support::{on_ranks, on_ranks_with, rows};

/// A moto S3 server on loopback, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
    bin: PathBuf,
}

impl Moto {
    /// Starts a server; with `auth`, it checks credentials (its first three requests,
    /// which make the user, are free) and [`Moto::setup`] returns that user's keys.
    fn start(auth: bool) -> Option<Moto> {
        let Some(bin) = std::env::var_os("CHORUS_TEST_MOTO").map(PathBuf::from).filter(|d| d.join("moto_server").exists()) else {
            let why = "moto's S3 server is not installed (CHORUS_TEST_MOTO names the directory of moto_server; .ci/run installs it)";
            if std::env::var("CHORUS_REQUIRE_MOTO").is_ok_and(|v| v == "1") {
                panic!("{why} (CHORUS_REQUIRE_MOTO=1, so this is a failure)");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cmd = Command::new(bin.join("moto_server"));
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null());
        if auth {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "3");
        }
        let child = cmd.spawn().expect("moto_server starts");
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}"), bin };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(60), "moto_server did not listen on port {port} within a minute");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(moto)
    }

    /// Makes the buckets `chorus-data` (private) and `chorus-public` (public-read) and
    /// uploads `src/<bucket>/<key>` for every file under `src`; returns the access key
    /// id and secret to use.
    fn setup(&self, src: &Path, auth: bool) -> (String, String) {
        const SCRIPT: &str = r#"
import boto3, json, os, sys
endpoint, src, auth = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
kw = dict(endpoint_url=endpoint, region_name="us-east-1")
key, secret = "chorus-test-key", "chorus-test-secret"
if auth:
    iam = boto3.client("iam", aws_access_key_id="x", aws_secret_access_key="y", **kw)
    iam.create_user(UserName="chorus")
    made = iam.create_access_key(UserName="chorus")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="chorus", PolicyName="all", PolicyDocument=json.dumps(policy))
    key, secret = made["AccessKeyId"], made["SecretAccessKey"]
s3 = boto3.client("s3", aws_access_key_id=key, aws_secret_access_key=secret, **kw)
s3.create_bucket(Bucket="chorus-data")
s3.create_bucket(Bucket="chorus-public", ACL="public-read")
for root, _, files in os.walk(src):
    for name in files:
        path = os.path.join(root, name)
        bucket, _, object_key = os.path.relpath(path, src).partition(os.sep)
        extra = {"ACL": "public-read"} if bucket == "chorus-public" else {}
        s3.upload_file(path, bucket, object_key.replace(os.sep, "/"), ExtraArgs=extra)
print(key, secret)
"#;
        let out = Command::new(self.bin.join("python"))
            .args(["-c", SCRIPT, &self.endpoint])
            .arg(src)
            .arg(if auth { "1" } else { "0" })
            .output()
            .expect("moto's python runs");
        assert!(out.status.success(), "setting up the buckets failed: {}", String::from_utf8_lossy(&out.stderr));
        let printed = String::from_utf8(out.stdout).unwrap();
        let (key, secret) = printed.trim().split_once(' ').expect("the script prints the key and the secret");
        (key.to_string(), secret.to_string())
    }

    fn options(&self, key: &str, secret: &str) -> StorageOptions {
        StorageOptions {
            endpoint: Some(self.endpoint.clone()),
            key: Some(key.into()),
            secret: Some(secret.into()),
            max_retries: 1,
            retry_timeout: Duration::from_secs(10),
            ..StorageOptions::default()
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `src/chorus-data/purchases/part-{0,1,2}.csv` (the purchases data cut in three),
/// `src/chorus-data/tables/t.parquet` (the same rows), and `src/chorus-public/p.csv`;
/// returns the whole CSV and Parquet files for the local answers.
fn write_data(src: &Path) -> (PathBuf, PathBuf) {
    let whole = src.join("whole.csv");
    chorus_datagen::write_purchases(&whole, 30_000, 7).unwrap();
    let text = std::fs::read_to_string(&whole).unwrap();
    let (header, body) = text.split_once('\n').unwrap();
    let lines: Vec<&str> = body.lines().collect();
    let data = src.join("objects");
    std::fs::create_dir_all(data.join("chorus-data/purchases")).unwrap();
    std::fs::create_dir_all(data.join("chorus-data/tables")).unwrap();
    std::fs::create_dir_all(data.join("chorus-public")).unwrap();
    for (i, part) in lines.chunks(lines.len().div_ceil(3)).enumerate() {
        std::fs::write(data.join(format!("chorus-data/purchases/part-{i}.csv")), format!("{header}\n{}\n", part.join("\n"))).unwrap();
    }
    std::fs::write(data.join("chorus-public/p.csv"), format!("{header}\n{}\n", lines[..100].join("\n"))).unwrap();
    // A malformed amount on the 1502nd line.
    let bad: String = (0..3000).map(|i| if i == 1500 { "1500,twelve\n".to_string() } else { format!("{i},{}.5\n", i % 7) }).collect();
    std::fs::create_dir_all(data.join("chorus-data/bad")).unwrap();
    std::fs::write(data.join("chorus-data/bad/b.csv"), format!("id,amount\n{bad}")).unwrap();
    let parquet_dir = src.join("parquet");
    on_ranks(1, 1, |ctx| ctx.read_csv(&whole, CsvOptions::default()).unwrap().write_parquet(&parquet_dir).unwrap());
    std::fs::copy(parquet_dir.join("part-0.parquet"), data.join("chorus-data/tables/t.parquet")).unwrap();
    (whole, parquet_dir.join("part-0.parquet"))
}

/// The purchases queries over `df` (registered as `purchases`).
fn answers(ctx: &Context, df: &chorus_frame::DataFrame) -> Vec<Vec<String>> {
    ctx.session().deregister_table("purchases").unwrap();
    ctx.register("purchases", df).unwrap();
    let mut out: Vec<Vec<String>> = api_queries(df).iter().map(|q| rows(&q.collect().unwrap(), false)).collect();
    out.extend(SQL_QUERIES.iter().map(|q| rows(&ctx.sql(q).unwrap().collect().unwrap(), false)));
    out
}

fn with_storage(storage: StorageOptions) -> FrameOptions {
    FrameOptions { threads_per_rank: Some(2), storage, ..FrameOptions::default() }
}

#[test]
fn csv_and_parquet_in_s3_are_read_in_ranges_by_every_rank_and_a_driver_and_match_local_files() {
    let Some(moto) = Moto::start(false) else { return };
    let src = tempfile::tempdir().unwrap();
    let (csv, parquet) = write_data(src.path());
    let (key, secret) = moto.setup(&src.path().join("objects"), false);
    let storage = moto.options(&key, &secret);
    let local = on_ranks(1, 1, |ctx| {
        let from_csv = answers(ctx, &ctx.read_csv(&csv, CsvOptions::default()).unwrap());
        let from_parquet = answers(ctx, &ctx.read_parquet(&parquet).unwrap());
        (from_csv, from_parquet)
    });
    let remote = on_ranks_with(2, with_storage(storage.clone()), |ctx| {
        // A glob over a prefix, and the prefix itself.
        let glob = ctx.read_csv("s3://chorus-data/purchases/*.csv", CsvOptions::default()).unwrap();
        let plan = glob.explain().unwrap();
        let prefix = ctx.read_csv("s3://chorus-data/purchases/", CsvOptions::default()).unwrap();
        let parquet = ctx.read_parquet("s3://chorus-data/tables/t.parquet").unwrap();
        (answers(ctx, &glob), answers(ctx, &prefix), answers(ctx, &parquet), plan)
    });
    let (want_csv, want_parquet) = &local[0];
    let (glob, prefix, parquet, plan) = &remote[0];
    assert_eq!(glob, want_csv, "CSV objects matched by a glob");
    assert_eq!(prefix, want_csv, "CSV objects under a prefix");
    assert_eq!(parquet, want_parquet, "a Parquet object");
    // The scan is cut into byte ranges of the objects, divided among the ranks.
    assert!(plan.contains("purchases/part-0.csv:0..") && plan.contains("1D_Block"), "{plan}");
    // A malformed value names the object and the column.
    let errors = on_ranks_with(2, with_storage(storage.clone()), |ctx| {
        let schema = Arc::new(chorus_frame::datafusion::arrow::datatypes::Schema::new(vec![
            chorus_frame::datafusion::arrow::datatypes::Field::new("id", chorus_frame::datafusion::arrow::datatypes::DataType::Int64, false),
            chorus_frame::datafusion::arrow::datatypes::Field::new("amount", chorus_frame::datafusion::arrow::datatypes::DataType::Float64, false),
        ]));
        let df = ctx.read_csv("s3://chorus-data/bad/b.csv", CsvOptions::default().schema(schema)).unwrap();
        df.aggregate(vec![], vec![sum(col("amount"))]).unwrap().collect().unwrap_err().to_string()
    });
    assert!(errors.iter().any(|e| e.contains("s3://chorus-data/bad/b.csv") && e.contains("column \"amount\"") && e.contains("twelve")), "{errors:?}");
    // A driver's workers read it with the driver's options.
    let cluster = crate::frame_driver::cluster(2);
    let ctx = Context::on_cluster_with_options(&cluster.client(), with_storage(storage)).unwrap();
    let df = ctx.read_csv("s3://chorus-data/purchases/*.csv", CsvOptions::default()).unwrap();
    assert_eq!(&answers(&ctx, &df), want_csv, "driver mode");
}

#[test]
fn results_written_to_s3_by_every_rank_read_back_the_same() {
    let Some(moto) = Moto::start(false) else { return };
    let src = tempfile::tempdir().unwrap();
    write_data(src.path());
    let (key, secret) = moto.setup(&src.path().join("objects"), false);
    let options = with_storage(moto.options(&key, &secret));
    let out = on_ranks_with(2, options, |ctx| {
        let df = ctx.read_csv("s3://chorus-data/purchases/*.csv", CsvOptions::default()).unwrap();
        let by_product = df.aggregate(vec![col("Product")], vec![count(lit(1)).alias("n"), sum(col("Purchase_Amount")).alias("s")]).unwrap();
        let written = df.write_parquet("s3://chorus-data/out/parquet/").unwrap();
        df.write_csv("s3://chorus-data/out/csv").unwrap();
        let want = rows(&by_product.collect().unwrap(), false);
        let again = |df: chorus_frame::DataFrame| {
            let q = df.aggregate(vec![col("Product")], vec![count(lit(1)).alias("n"), sum(col("Purchase_Amount")).alias("s")]).unwrap();
            rows(&q.collect().unwrap(), false)
        };
        let from_parquet = again(ctx.read_parquet("s3://chorus-data/out/parquet/").unwrap());
        let from_csv = again(ctx.read_csv("s3://chorus-data/out/csv/", CsvOptions::default()).unwrap());
        (written, want, from_parquet, from_csv)
    });
    for (rank, (written, ..)) in out.iter().enumerate() {
        assert_eq!(written.len(), 2, "rank {rank} wrote its two partitions: {written:?}");
        assert!(written.iter().all(|w| w.to_string_lossy().starts_with("s3://chorus-data/out/parquet/part-")), "{written:?}");
    }
    let (_, want, from_parquet, from_csv) = &out[0];
    assert!(!want.is_empty());
    assert_eq!(from_parquet, want);
    assert_eq!(from_csv, want);
}

#[test]
fn a_public_bucket_reads_anonymously_and_a_private_one_refuses_naming_the_url() {
    let Some(moto) = Moto::start(false) else { return };
    let src = tempfile::tempdir().unwrap();
    write_data(src.path());
    moto.setup(&src.path().join("objects"), false);
    let anonymous = StorageOptions { anonymous: true, endpoint: Some(moto.endpoint.clone()), max_retries: 0, ..StorageOptions::default() };
    let out = on_ranks_with(2, with_storage(anonymous), |ctx| {
        let public = ctx.read_csv("s3://chorus-public/p.csv", CsvOptions::default()).unwrap().count().unwrap();
        let private = ctx.read_csv("s3://chorus-data/purchases/part-0.csv", CsvOptions::default()).map(|_| ()).unwrap_err();
        (public, private)
    });
    for (rank, (public, private)) in out.iter().enumerate() {
        assert_eq!(*public, 100, "rank {rank}");
        let Error::Storage { url, kind, message } = private else { panic!("rank {rank}: a storage error: {private:?}") };
        assert_eq!((url.as_str(), *kind), ("s3://chorus-data/purchases/part-0.csv", StorageFailure::Denied), "rank {rank}: {message}");
        assert!(message.contains("s3://chorus-data/purchases/part-0.csv") && message.contains("403"), "{message}");
    }
}

#[test]
fn missing_buckets_keys_and_wrong_credentials_fail_naming_the_url() {
    let Some(moto) = Moto::start(true) else { return };
    let src = tempfile::tempdir().unwrap();
    write_data(src.path());
    let (key, secret) = moto.setup(&src.path().join("objects"), true);
    let cases = [
        ("s3://no-such-bucket/p.csv", moto.options(&key, &secret), StorageFailure::NotFound),
        ("s3://chorus-data/no-such-key.csv", moto.options(&key, &secret), StorageFailure::NotFound),
        ("s3://chorus-data/purchases/part-1.csv", moto.options(&key, "not-the-secret"), StorageFailure::Denied),
        ("s3://chorus-data/purchases/part-2.csv", moto.options("AKIANOSUCHKEY", &secret), StorageFailure::Denied),
    ];
    for (want_url, storage, want_kind) in cases {
        let errors = on_ranks_with(2, with_storage(storage), |ctx| {
            ctx.read_csv(want_url, CsvOptions::default()).and_then(|df| df.count()).map(|_| ()).unwrap_err()
        });
        for (rank, e) in errors.iter().enumerate() {
            let Error::Storage { url, kind, message } = e else { panic!("rank {rank}, {want_url}: a storage error: {e:?}") };
            assert_eq!((url.as_str(), *kind), (want_url, want_kind), "rank {rank}: {message}");
            assert!(message.contains(want_url), "rank {rank}: {message}");
        }
    }
    // The right credentials read.
    let n = on_ranks_with(2, with_storage(moto.options(&key, &secret)), |ctx| {
        ctx.read_csv("s3://chorus-data/purchases/part-1.csv", CsvOptions::default()).unwrap().count().unwrap()
    });
    assert_eq!(n, [10_000, 10_000]);
}

/// An HTTP server on loopback that answers every request with `503 Slow Down`,
/// counting them.
fn failing_server() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&requests);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.read(&mut buf);
            let body = "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
            let _ = write!(stream, "HTTP/1.1 503 Slow Down\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (address, requests)
}

#[test]
fn server_errors_and_unreachable_endpoints_are_retried_then_fail_naming_the_url_and_the_status() {
    let (endpoint, requests) = failing_server();
    let storage = StorageOptions {
        endpoint: Some(endpoint),
        key: Some("k".into()),
        secret: Some("s".into()),
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..StorageOptions::default()
    };
    let errors = on_ranks_with(1, with_storage(storage), |ctx| {
        ctx.read_csv("s3://busy-bucket/p.csv", CsvOptions::default()).map(|_| ()).unwrap_err()
    });
    let Error::Storage { url, kind, message } = &errors[0] else { panic!("a storage error: {:?}", errors[0]) };
    assert_eq!((url.as_str(), *kind), ("s3://busy-bucket/p.csv", StorageFailure::Failed), "{message}");
    assert!(message.contains("503") && message.contains("after 3 retries"), "{message}");
    // One request and three retries.
    assert_eq!(requests.load(Ordering::SeqCst), 4, "{message}");
    // An endpoint nobody listens on: the same, with the connection's error.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let storage = StorageOptions {
        endpoint: Some(format!("http://{closed}")),
        key: Some("k".into()),
        secret: Some("s".into()),
        max_retries: 1,
        ..StorageOptions::default()
    };
    let errors = on_ranks_with(1, with_storage(storage), |ctx| {
        ctx.read_parquet("s3://gone-bucket/t.parquet").map(|_| ()).unwrap_err()
    });
    let Error::Storage { url, kind, message } = &errors[0] else { panic!("a storage error: {:?}", errors[0]) };
    assert_eq!((url.as_str(), *kind), ("s3://gone-bucket/t.parquet", StorageFailure::Failed), "{message}");
    assert!(message.contains("after 1 retries"), "{message}");
}

/// An object replaced while a query reads it: the reads after the replacement carry the
/// ETag the query planned with, the store refuses them, and the query fails with
/// `Changed` instead of adding up rows of two versions.
#[test]
fn an_object_replaced_while_a_query_reads_it_fails_the_query_instead_of_mixing_versions() {
    use chorus_frame::datafusion::arrow::datatypes::DataType;
    use chorus_frame::datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
    let Some(moto) = Moto::start(false) else { return };
    let src = tempfile::tempdir().unwrap();
    let objects = src.path().join("objects");
    std::fs::create_dir_all(objects.join("chorus-data/big")).unwrap();
    // About 20 MB: chorus's reader fetches it in three ranged reads of 8 MiB.
    let rows: String = (0..1_500_000).map(|i| format!("{i},{}.5\n", i % 7)).collect();
    std::fs::write(objects.join("chorus-data/big/b.csv"), format!("id,amount\n{rows}")).unwrap();
    let (key, secret) = moto.setup(&objects, false);
    let replacement = src.path().join("replacement.csv");
    std::fs::write(&replacement, "id,amount\n1,1.5\n").unwrap();
    // Replaces the object the first time it sees a batch, that is after the first read.
    let replace = {
        let (python, endpoint, replacement) = (moto.bin.join("python"), moto.endpoint.clone(), replacement.clone());
        let done = Arc::new(std::sync::Once::new());
        move |args: &[ColumnarValue]| {
            done.call_once(|| {
                let script = "import boto3, sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
                              aws_access_key_id='k', aws_secret_access_key='s').upload_file(sys.argv[2], 'chorus-data', 'big/b.csv')";
                let status = Command::new(&python).args(["-c", script, &endpoint]).arg(&replacement).status().unwrap();
                assert!(status.success(), "replacing the object");
            });
            Ok(args[0].clone())
        }
    };
    let errors = on_ranks_with(1, FrameOptions { threads_per_rank: Some(1), ..with_storage(moto.options(&key, &secret)) }, |ctx| {
        ctx.session().register_udf(create_udf("replace_once", vec![DataType::Int64], DataType::Int64, Volatility::Volatile, Arc::new(replace.clone())));
        ctx.register_csv("b", "s3://chorus-data/big/b.csv", CsvOptions::default()).unwrap();
        ctx.sql("SELECT sum(replace_once(id)) FROM b").unwrap().collect().unwrap_err()
    });
    let Error::Storage { url, kind, message } = &errors[0] else { panic!("a storage error: {:?}", errors[0]) };
    assert_eq!((url.as_str(), *kind), ("s3://chorus-data/big/b.csv", StorageFailure::Changed), "{message}");
    assert!(message.contains("run the query again"), "{message}");
    // Read again, the query sees the new version whole.
    let n = on_ranks_with(1, with_storage(moto.options(&key, &secret)), |ctx| {
        ctx.read_csv("s3://chorus-data/big/b.csv", CsvOptions::default()).unwrap().count().unwrap()
    });
    assert_eq!(n, [1]);
}
