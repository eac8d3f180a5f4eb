//! The `get`, `transfer` and `push` subcommands, and dispatch to `sync`.

use std::fs::File;
use std::io::{BufWriter, IsTerminal as _, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zone_proto::zone::v1::{RecordQuery, TransferRequest};

use super::connect::{self, Client, ConnectOptions, Credentials};
use super::output::{self, ChangeCounts};
use super::{Cli, CliError, Command, changes, sync};

/// Runs one `zone-client` invocation.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    // Local input is checked before connecting so that usage errors never wait on the network.
    let push_batches = match &cli.command {
        Command::Push { file, zone } => Some(read_change_file(file, zone.as_deref())?),
        _ => None,
    };
    let output_file = match &cli.command {
        Command::Transfer {
            output: Some(path), ..
        } => Some(OutputFile::create(path)?),
        _ => None,
    };

    let Some(addr) = cli.addr.as_deref() else {
        return Err(CliError::Usage("missing --addr HOST:PORT".into()));
    };
    let opts = ConnectOptions {
        addr,
        transport: cli.transport,
        ca: cli.ca.as_deref(),
        server_name: cli.server_name.as_deref(),
        plaintext: cli.plaintext,
    };
    let credentials = Credentials::for_user(cli.user.as_deref())?;
    let mut client = connect::connect(&opts, credentials).await?;

    match cli.command {
        Command::Get {
            zone,
            name,
            record_type,
        } => get(&mut client, zone, name, record_type.unwrap_or_default()).await,
        Command::Transfer {
            zone,
            since,
            batch_size,
            ..
        } => transfer(&mut client, zone, since, batch_size, output_file).await,
        Command::Push { .. } => push(&mut client, push_batches.unwrap_or_default()).await,
        Command::Sync {
            zones,
            from,
            follow,
        } => sync::run(&mut client, zones, from, follow).await,
    }
}

async fn get(
    client: &mut Client,
    zone: String,
    name: String,
    record_type: String,
) -> Result<(), CliError> {
    let set = client
        .get_record(RecordQuery {
            zone,
            name,
            r#type: record_type,
        })
        .await?
        .into_inner();
    if set.records.is_empty() {
        emit("(no records)")?;
    } else {
        emit(output::record_table(&set.records).trim_end())?;
    }
    emit(&format!("serial {}", set.serial))
}

async fn transfer(
    client: &mut Client,
    zone: String,
    since: Option<u32>,
    batch_size: u32,
    mut output_file: Option<OutputFile>,
) -> Result<(), CliError> {
    let started = Instant::now();
    let mut stream = client
        .transfer_zone(TransferRequest {
            zone: zone.clone(),
            since_serial: since,
            batch_size,
        })
        .await?
        .into_inner();

    let progress = records_progress();
    let mut records: u64 = 0;
    let mut change_batches: u64 = 0;
    let mut serial = since.unwrap_or(0);
    let mut wrote_origin = false;
    let result: Result<(), CliError> = async {
        while let Some(batch) = stream.message().await? {
            serial = batch.serial;
            if !batch.records.is_empty() {
                if let Some(file) = output_file.as_mut() {
                    if !wrote_origin {
                        file.line(&output::origin_line(&zone))?;
                        wrote_origin = true;
                    }
                    for record in &batch.records {
                        file.line(&output::master_line(record))?;
                    }
                }
                let n = batch.records.len() as u64;
                records += n;
                progress.inc(n);
            }
            if !batch.changes.is_empty() {
                change_batches += 1;
                let mut text = format!(
                    "serial {}: {}",
                    batch.serial,
                    ChangeCounts::of(&batch.changes)
                );
                for change in &batch.changes {
                    text.push_str("\n  ");
                    text.push_str(&output::change_line(change));
                }
                progress.suspend(|| emit(&text))?;
                if let Some(file) = output_file.as_mut() {
                    // Change-file form, so the output can be pushed elsewhere.
                    file.line(&format!("zone {}", batch.zone))?;
                    for change in &batch.changes {
                        file.line(&output::change_line(change))?;
                    }
                    file.line("---")?;
                }
            }
        }
        Ok(())
    }
    .await;
    progress.finish_and_clear();
    result?;
    if let Some(file) = output_file {
        file.finish()?;
    }

    let secs = started.elapsed().as_secs_f64();
    if since.is_some() && records == 0 {
        if change_batches == 0 {
            emit(&format!("no changes since serial {serial}"))
        } else {
            emit(&format!(
                "transferred {change_batches} change batches, serial {serial}, in {secs:.2} s"
            ))
        }
    } else {
        let rate = if secs > 0.0 {
            records as f64 / secs
        } else {
            0.0
        };
        emit(&format!(
            "transferred {records} records, serial {serial}, in {secs:.2} s ({rate:.0} records/s)"
        ))
    }
}

/// Attempts of a batch the server refused with `ABORTED` only because another writer took
/// the serial it filled in (the change file pins none).
const PUSH_ATTEMPTS: u32 = 5;
/// Pause before the second attempt; doubled after each.
const PUSH_BACKOFF: Duration = Duration::from_millis(20);

/// One `PushChanges` call per batch: a failed call then tells which batches were applied, so
/// a batch refused with `ABORTED` can be resent alone without applying earlier ones twice.
async fn push(
    client: &mut Client,
    batches: Vec<zone_proto::zone::v1::ChangeBatch>,
) -> Result<(), CliError> {
    let mut total = zone_proto::zone::v1::PushResult::default();
    for batch in batches {
        let result = push_batch(client, batch).await?;
        total.zone = result.zone;
        total.serial = result.serial;
        total.batches_applied = total.batches_applied.saturating_add(result.batches_applied);
        total.changes_applied = total.changes_applied.saturating_add(result.changes_applied);
    }
    emit(&format!(
        "applied {} batches ({} changes) to {}, serial {}",
        total.batches_applied, total.changes_applied, total.zone, total.serial
    ))
}

/// Pushes one batch. Without an `expected_serial` the server fills in the zone's serial, and
/// on a shared journal another server may take it first (`ABORTED`; the server has caught up
/// by then), so that refusal is retried a few times; any other status ends the push.
async fn push_batch(
    client: &mut Client,
    batch: zone_proto::zone::v1::ChangeBatch,
) -> Result<zone_proto::zone::v1::PushResult, CliError> {
    let (mut attempt, mut backoff) = (1, PUSH_BACKOFF);
    loop {
        match client
            .push_changes(tokio_stream::iter([batch.clone()]))
            .await
        {
            Ok(result) => return Ok(result.into_inner()),
            Err(status)
                if status.code() == tonic::Code::Aborted
                    && batch.expected_serial.is_none()
                    && attempt < PUSH_ATTEMPTS =>
            {
                tokio::time::sleep(backoff).await;
                attempt += 1;
                backoff = backoff.saturating_mul(2);
            }
            Err(status) => return Err(status.into()),
        }
    }
}

fn read_change_file(
    path: &Path,
    zone: Option<&str>,
) -> Result<Vec<zone_proto::zone::v1::ChangeBatch>, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
    changes::parse_change_file(&text, zone).map_err(|source| CliError::ChangeFile {
        path: path.to_owned(),
        source,
    })
}

/// A spinner with the record count and rate; the total is unknown while streaming. Hidden unless
/// both stdout and stderr (where it draws) are terminals, so piped output stays clean.
fn records_progress() -> ProgressBar {
    if !(std::io::stdout().is_terminal() && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{spinner} {human_pos} records ({per_sec}) {elapsed}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// `--output`, created before the RPC so that an unwritable path fails fast (exit 2).
struct OutputFile {
    path: PathBuf,
    writer: BufWriter<File>,
}

impl OutputFile {
    fn create(path: &Path) -> Result<Self, CliError> {
        let file = File::create(path)
            .map_err(|e| CliError::Usage(format!("cannot create {}: {e}", path.display())))?;
        Ok(OutputFile {
            path: path.to_owned(),
            writer: BufWriter::new(file),
        })
    }

    fn line(&mut self, line: &str) -> Result<(), CliError> {
        writeln!(self.writer, "{line}").map_err(|e| self.error(e))
    }

    fn finish(mut self) -> Result<(), CliError> {
        self.writer.flush().map_err(|e| self.error(e))
    }

    fn error(&self, source: std::io::Error) -> CliError {
        CliError::Write {
            what: self.path.display().to_string(),
            source,
        }
    }
}

/// Writes one line to stdout; a closed stdout is an error rather than a panic.
pub(super) fn emit(line: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|source| CliError::Write {
            what: "to stdout".into(),
            source,
        })
}
