//! Driver mode: a [`Context`] over a task cluster's [`Client`].
//!
//! The driver plans; nothing is read on it but the first rows of a CSV file (schema
//! inference). Running a query sends its logical plan, encoded with `datafusion-proto`,
//! to every worker as one SPMD job ([`Client::spmd`]); each worker plans it physically
//! exactly as an SPMD rank would and runs its share, and only the result comes back.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use chorus_dashboard::model::{ExchangeRecord, QueryRecord, StageRecord};

use chorus_comm::World;
use chorus_tasks::registry::{decode_arg, encode_result, Encoded, Fault, SpmdEntry, SpmdFunction};
use chorus_tasks::{Client, FailureKind};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};

use crate::plan::ResultOn;
use crate::{Context, DataFrame, Error, FrameOptions, Result, StorageOptions};

/// What a worker does with the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Action {
    /// Return the whole result (from rank 0).
    Collect,
    /// Write one Parquet file per partition into the directory.
    WriteParquet(String),
    /// Write one CSV file per partition into the directory.
    WriteCsv(String),
}

/// One query, as sent to the workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PlanRequest {
    #[serde(with = "serde_bytes")]
    plan: Vec<u8>,
    threads_per_rank: usize,
    exchange_window: usize,
    batch_size: usize,
    memory_limit: Option<u64>,
    spill_dir: Option<std::path::PathBuf>,
    storage: StorageOptions,
    /// The driver session's settings (`SET …`), applied on every worker.
    settings: Vec<(String, String)>,
    action: Action,
}

/// A worker's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// The result as an Arrow IPC stream (empty on ranks other than 0).
    Batches(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The files this worker wrote.
    Written(Vec<String>),
}

/// The registered SPMD function that runs a shipped plan on each worker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunPlan;

/// What a rank did for a query, for the dashboard's Queries page.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RankFigures {
    /// How long the rank took, in microseconds.
    micros: u64,
    /// Each exchange with what this rank sent through it.
    exchanges: Vec<ExchangeRecord>,
}

impl SpmdFunction for RunPlan {
    type Args = (PlanRequest,);
    type Output = (Reply, RankFigures);
    const NAME: &'static str = "chorus_frame::run_plan";
}

inventory::submit! {
    SpmdEntry { name: RunPlan::NAME, call: run_plan }
}

fn run_plan(world: &Arc<World>, args: &[&[u8]]) -> Encoded {
    let fault = |e: Error| Fault { kind: FailureKind::Error, message: e.to_string() };
    let request: PlanRequest = decode_arg(args.first().copied().unwrap_or_default(), 0)?;
    let options = FrameOptions {
        threads_per_rank: Some(request.threads_per_rank),
        exchange_window: request.exchange_window,
        batch_size: request.batch_size,
        memory_limit: request.memory_limit,
        spill_dir: request.spill_dir,
        storage: request.storage,
    };
    let ctx = Context::with_options(Arc::clone(world), options).map_err(fault)?;
    let started = Instant::now();
    let reply = (|| -> Result<Reply> {
        {
            let state = ctx.session().state_ref();
            let mut state = state.write();
            let config = state.config_mut().options_mut();
            for (key, value) in &request.settings {
                config.set(key, value).map_err(Error::plan)?;
            }
        }
        let plan = datafusion_proto::bytes::logical_plan_from_bytes(&request.plan, &ctx.session().task_ctx())
            .map_err(|e| Error::Plan(format!("the workers cannot read the driver's plan: {e}")))?;
        let df = ctx.from_datafusion(datafusion::dataframe::DataFrame::new(ctx.session().state(), plan));
        match &request.action {
            Action::Collect => {
                let batches = df.collect()?;
                Ok(Reply::Batches(if ctx.rank() == 0 { encode_batches(&df.schema(), &batches)? } else { Vec::new() }))
            }
            Action::WriteParquet(dir) => Ok(Reply::Written(paths(df.write_parquet(dir)?))),
            Action::WriteCsv(dir) => Ok(Reply::Written(paths(df.write_csv(dir)?))),
        }
    })()
    .map_err(fault)?;
    let figures = RankFigures { micros: started.elapsed().as_micros() as u64, exchanges: ctx.engine().last_exchanges() };
    drop(ctx);
    encode_result((reply, figures))
}

fn paths(written: Vec<std::path::PathBuf>) -> Vec<String> {
    written.into_iter().map(|p| p.display().to_string()).collect()
}

fn encode_batches(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let failed = |e: datafusion::arrow::error::ArrowError| Error::Execution { rank: 0, message: format!("encoding the result: {e}") };
    let mut out = Vec::new();
    let mut writer = StreamWriter::try_new(&mut out, schema).map_err(failed)?;
    for b in batches {
        writer.write(b).map_err(failed)?;
    }
    writer.finish().map_err(failed)?;
    drop(writer);
    Ok(out)
}

fn decode_batches(bytes: &[u8]) -> Result<Vec<RecordBatch>> {
    let failed = |e: datafusion::arrow::error::ArrowError| Error::Execution { rank: 0, message: format!("decoding the result: {e}") };
    StreamReader::try_new(Cursor::new(bytes), None).map_err(failed)?.map(|b| b.map_err(failed)).collect()
}

/// Sends `df`'s plan to the workers and runs `action` there. The query's record for the
/// dashboard (the plan, time per stage, what each exchange moved between ranks) comes
/// back for the caller to complete and report with [`Client::record_query`]; a query
/// that fails is reported here.
fn run(client: &Client, options: &FrameOptions, threads: usize, df: &DataFrame, action: Action) -> Result<(Vec<Reply>, QueryRecord)> {
    let started = Instant::now();
    let started_us = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64);
    let mut record = QueryRecord { label: df.label(), started_us, ..QueryRecord::default() };
    record.plan = df.explain().unwrap_or_else(|e| format!("(no plan: {e})"));
    let planned = started.elapsed();
    let outcome = send_and_run(client, options, threads, df, action);
    let ran = started.elapsed();
    match &outcome {
        Ok(replies) => {
            let slowest = replies.iter().map(|(_, f)| f.micros).max().unwrap_or(0);
            record.stages = vec![
                StageRecord { name: "plan on the driver".into(), micros: planned.as_micros() as u64 },
                StageRecord { name: format!("run on {} ranks (the slowest)", replies.len()), micros: slowest },
                StageRecord { name: "send the plan and bring back the result".into(), micros: (ran - planned).as_micros().saturating_sub(u128::from(slowest)) as u64 },
            ];
            // The same exchanges on every rank, in plan order: sum what each sent.
            let mut exchanges: Vec<ExchangeRecord> = Vec::new();
            for (_, f) in replies {
                for (i, e) in f.exchanges.iter().enumerate() {
                    match exchanges.get_mut(i) {
                        Some(sum) => {
                            sum.rows += e.rows;
                            sum.bytes += e.bytes;
                        }
                        None => exchanges.push(e.clone()),
                    }
                }
            }
            record.exchanges = exchanges;
        }
        Err(e) => record.error = Some(e.to_string()),
    }
    record.micros = ran.as_micros() as u64;
    match outcome {
        Ok(replies) => Ok((replies.into_iter().map(|(reply, _)| reply).collect(), record)),
        Err(e) => {
            client.record_query(record);
            Err(e)
        }
    }
}

fn send_and_run(client: &Client, options: &FrameOptions, threads: usize, df: &DataFrame, action: Action) -> Result<Vec<(Reply, RankFigures)>> {
    // datafusion-proto cannot encode subquery expressions (`x IN (SELECT …)`, `EXISTS`);
    // the optimizer turns them into joins, which it can.
    let plan = match datafusion_proto::bytes::logical_plan_to_bytes(df.inner().logical_plan()) {
        Ok(bytes) => bytes,
        Err(_) => {
            let optimized = df.inner().clone().into_optimized_plan().map_err(Error::plan)?;
            datafusion_proto::bytes::logical_plan_to_bytes(&optimized)
                .map_err(|e| Error::Plan(format!("this query cannot be sent to the workers: {e}")))?
        }
    }
    .to_vec();
    let settings = df
        .inner()
        .task_ctx()
        .session_config()
        .options()
        .entries()
        .into_iter()
        .filter(|e| {
            (e.key.starts_with("datafusion.optimizer.") || e.key.starts_with("datafusion.execution."))
                && e.key != "datafusion.execution.target_partitions"
                && e.key != "datafusion.execution.batch_size"
        })
        .filter_map(|e| Some((e.key, e.value?)))
        .collect();
    let request = PlanRequest {
        plan,
        threads_per_rank: threads,
        exchange_window: options.exchange_window,
        batch_size: options.batch_size,
        memory_limit: options.memory_limit,
        spill_dir: options.spill_dir.clone(),
        storage: options.storage.clone(),
        settings,
        action,
    };
    client.spmd(RunPlan, (request,)).map_err(Error::Cluster)
}

/// The whole result of `df`, computed by the workers.
pub(crate) fn collect(client: &Client, options: &FrameOptions, threads: usize, df: &DataFrame, _on: ResultOn) -> Result<Vec<RecordBatch>> {
    let (replies, mut record) = run(client, options, threads, df, Action::Collect)?;
    let batches = match replies.first() {
        Some(Reply::Batches(bytes)) => decode_batches(bytes),
        _ => Err(Error::NoResult("rank 0 of the query job sent no result".into())),
    };
    match &batches {
        Ok(b) => record.rows = b.iter().map(|b| b.num_rows() as u64).sum(),
        Err(e) => record.error = Some(e.to_string()),
    }
    client.record_query(record);
    batches
}

/// Runs a write on the workers; returns every file written.
pub(crate) fn write(client: &Client, options: &FrameOptions, threads: usize, df: &DataFrame, action: Action) -> Result<Vec<std::path::PathBuf>> {
    let (replies, record) = run(client, options, threads, df, action)?;
    client.record_query(record);
    Ok(replies
        .into_iter()
        .flat_map(|r| match r {
            Reply::Written(paths) => paths,
            Reply::Batches(_) => Vec::new(),
        })
        .map(Into::into)
        .collect())
}
