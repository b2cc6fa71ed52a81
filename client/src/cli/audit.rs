//! `stratus audit export TENANT [--since T]` and `stratus audit verify FILE|TENANT`.

use super::output::Out;
use crate::cli::output::say;
use crate::Client;
use anyhow::{bail, Context};
use clap::Subcommand;
use std::io::Write;
use std::path::{Path, PathBuf};
use stratus_core::audit::{parse_hash, verify, AuditRecord};

/// Records one export or verification reads at most.
const AUDIT_RECORDS_MAX: usize = 10_000_000;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Write TENANT's audit log as JSON lines (one record per line, oldest first).
    Export {
        tenant: String,
        /// Only records from this time on: a duration ago (`15m`, `2h`, `7d`) or
        /// milliseconds since the epoch. (Verify a partial export with `--segment`.)
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Check a hash chain and name the first record that breaks it: an exported
    /// FILE, or TENANT's log in the cluster (also checked against its current head).
    Verify {
        /// FILE (if it exists) or TENANT.
        target: String,
        /// FILE is a partial export (`--since`): start from its first record's
        /// `prev_hash` instead of requiring the chain from its first record.
        #[arg(long)]
        segment: bool,
    },
}

/// `--since`: milliseconds since the epoch, or a duration before now.
fn since_ms(s: &str) -> anyhow::Result<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(ms);
    }
    let ago = super::access::parse_duration_s(s).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(now_ms.saturating_sub(ago.unsigned_abs().saturating_mul(1000)))
}

/// Parses an exported file.
fn read_export(path: &Path) -> anyhow::Result<Vec<AuditRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!(
                    "{} line {}: not an audit record (the file was damaged or is not an export)",
                    path.display(),
                    i + 1
                )
            })
        })
        .collect()
}

/// Verifies `records` from the tenant's genesis, or with `segment` from the
/// first record's `prev_hash`; returns the last (seq, hash).
fn check(
    what: &str,
    records: &[AuditRecord],
    segment: bool,
) -> anyhow::Result<Option<(u64, [u8; 32])>> {
    let start = match records.first() {
        Some(first) if segment && first.seq > 1 => Some((
            first.seq - 1,
            parse_hash(&first.prev_hash)
                .with_context(|| format!("{what}: record 1 has a malformed prev_hash"))?,
        )),
        _ => None,
    };
    if let Some(t) = records.iter().position(|r| r.tenant != records[0].tenant) {
        bail!(
            "{what}: record {} (seq {}) is of tenant {:?}, the log is {:?}'s",
            t + 1,
            records[t].seq,
            records[t].tenant,
            records[0].tenant
        );
    }
    verify(records, start).map_err(|b| anyhow::anyhow!("{what}: {b}"))
}

pub async fn run(
    connect: impl std::future::Future<Output = anyhow::Result<Client>>,
    command: AuditCommand,
    out: Out,
) -> anyhow::Result<()> {
    match command {
        AuditCommand::Export {
            tenant,
            since,
            file,
        } => {
            let client = connect.await?;
            let from = since.as_deref().map(since_ms).transpose()?.unwrap_or(0);
            let page = client.audit_all(&tenant, 0, AUDIT_RECORDS_MAX).await?;
            let mut sink: Box<dyn Write> = match &file {
                Some(f) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(f)
                        .with_context(|| format!("cannot create {}", f.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut n = 0;
            for r in page.records.iter().filter(|r| r.event.time_ms >= from) {
                writeln!(sink, "{}", serde_json::to_string(r)?)?;
                n += 1;
            }
            sink.flush()?;
            if file.is_some() {
                eprintln!("exported {n} audit records of tenant {tenant}");
            }
            Ok(())
        }
        AuditCommand::Verify { target, segment } => {
            let path = Path::new(&target);
            let (what, records, head) = if path.is_file() {
                (target.clone(), read_export(path)?, None)
            } else {
                let client = connect.await?;
                let page = client.audit_all(&target, 0, AUDIT_RECORDS_MAX).await?;
                (
                    format!("the audit log of tenant {target}"),
                    page.records,
                    Some(page.head),
                )
            };
            let last = check(&what, &records, segment)?;
            if let Some(head) = head {
                let have = last.map(|(s, h)| (s, hex::encode(h)));
                if have != head {
                    bail!(
                        "{what}: the chain read ends at {:?} but the cluster's head is {:?}: records are missing",
                        have.map(|h| h.0),
                        head.map(|h| h.0)
                    );
                }
            }
            let first = records.first().map_or(0, |r| r.seq);
            if out.is_json() {
                return out.json(&serde_json::json!({
                    "ok": true,
                    "records": records.len(),
                    "first_seq": first,
                    "last_seq": last.map(|l| l.0),
                    "last_hash": last.map(|l| hex::encode(l.1)),
                }));
            }
            match last {
                None => say!("{what}: no records"),
                Some((seq, hash)) => say!(
                    "{what}: ok, {} records (seq {first}..={seq}), chain intact; last hash {}",
                    records.len(),
                    hex::encode(hash)
                ),
            }
            Ok(())
        }
    }
}
