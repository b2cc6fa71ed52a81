//! `stratus key show|rotate|import|revoke|restore|delete|recover|purge|retire TENANT`.

use super::output::{format_time_ms, print_table, Out};
use crate::cli::output::say;
use crate::{Client, EncryptionKey, KeyInfo, KeyOperation};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// KEK versions, which is current, state, and re-wrap progress.
    Show { tenant: String },
    /// Make a new KEK version current; data keys are re-wrapped in the background.
    Rotate { tenant: String },
    /// Make customer-managed key material (a file of 32 raw bytes) the new version.
    Import {
        tenant: String,
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
    /// Refuse every read and write of the tenant until restored.
    Revoke { tenant: String },
    /// Undo a revoke.
    Restore { tenant: String },
    /// Soft-delete the keys: data is inaccessible until recovered, or gone once purged.
    Delete {
        tenant: String,
        /// Seconds before a purge is allowed (default 90 days).
        #[arg(long, value_name = "SECS")]
        retention_seconds: Option<u64>,
    },
    /// Bring soft-deleted keys back.
    Recover { tenant: String },
    /// Destroy deleted keys for good: the tenant's data becomes unrecoverable.
    Purge { tenant: String },
    /// Destroy an older KEK version once no object uses it (after a rotation's
    /// re-wrap finished; see `key show`).
    Retire {
        tenant: String,
        #[arg(long, value_name = "N")]
        version: u32,
    },
}

pub async fn run(client: &Client, command: KeyCommand, out: Out) -> anyhow::Result<()> {
    let (tenant, op, done) = match command {
        KeyCommand::Show { tenant } => (tenant, KeyOperation::Show, None),
        KeyCommand::Rotate { tenant } => (tenant, KeyOperation::Rotate, Some("rotated")),
        KeyCommand::Import { tenant, key_file } => (
            tenant,
            KeyOperation::Import(EncryptionKey::from_file(&key_file)?),
            Some("imported a customer-managed key for"),
        ),
        KeyCommand::Revoke { tenant } => {
            (tenant, KeyOperation::Revoke, Some("revoked the keys of"))
        }
        KeyCommand::Restore { tenant } => {
            (tenant, KeyOperation::Restore, Some("restored the keys of"))
        }
        KeyCommand::Delete {
            tenant,
            retention_seconds,
        } => (
            tenant,
            KeyOperation::Delete { retention_seconds },
            Some("deleted (recoverable) the keys of"),
        ),
        KeyCommand::Recover { tenant } => {
            (tenant, KeyOperation::Recover, Some("recovered the keys of"))
        }
        KeyCommand::Purge { tenant } => (tenant, KeyOperation::Purge, Some("purged the keys of")),
        KeyCommand::Retire { tenant, version } => (
            tenant,
            KeyOperation::Retire { version },
            Some("retired a KEK version of"),
        ),
    };
    let info = client.key(&tenant, op).await?;
    if out.is_json() {
        return out.json(&info);
    }
    if let Some(done) = done {
        say!("{done} tenant {tenant}");
    }
    print_info(&info);
    Ok(())
}

fn print_info(k: &KeyInfo) {
    let mut state = k.state.clone();
    if k.state == "deleted" {
        state.push_str(&format!(
            " (purge allowed from {})",
            format_time_ms(k.purge_after_ms)
        ));
    }
    say!("tenant:           {}", k.tenant);
    say!("state:            {state}");
    say!("current version:  {}", k.current_version);
    say!(
        "purge protection: {}",
        if k.purge_protection { "on" } else { "off" }
    );
    if k.usage_known {
        say!(
            "re-wrap:          {}",
            if k.rewrap_pending == 0 {
                "finished".to_string()
            } else {
                format!("{} object(s) pending", k.rewrap_pending)
            }
        );
        say!("customer keys:    {} object(s)", k.customer_key_objects);
    }
    let rows: Vec<Vec<String>> = k
        .versions
        .iter()
        .map(|v| {
            vec![
                v.version.to_string(),
                if v.current { "*".into() } else { String::new() },
                v.origin.clone(),
                format_time_ms(v.created_at_ms),
                v.objects.to_string(),
                match (v.destroyed, v.retired_at_ms) {
                    (true, Some(at)) => format!("retired {}", format_time_ms(at)),
                    (true, None) => "destroyed".to_string(),
                    (false, _) => String::new(),
                },
            ]
        })
        .collect();
    print_table(
        &["VERSION", "CURRENT", "ORIGIN", "CREATED", "OBJECTS", ""],
        &rows,
    );
}
