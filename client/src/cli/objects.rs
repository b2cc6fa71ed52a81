//! `stratus put|get|head|ls|rm`.

use super::output::{format_time_ms, human_bytes, Out, UsageError};
use super::paths::{self, ListPath, ObjectPath};
use super::progress::transfer_bar;
use crate::cli::output::say;
use crate::{Client, Consistency, GetOptions, ObjectInfo, PutOptions, PutSource};
use anyhow::Context;
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct PutArgs {
    /// File to upload, or `-` for stdin.
    pub file: PathBuf,
    /// TENANT/CONTAINER/KEY
    #[arg(value_parser = paths::parse_object_path)]
    pub path: ObjectPath,
    /// MIME type (guessed from the file extension when absent).
    #[arg(long)]
    pub content_type: Option<String>,
    /// User metadata NAME=VALUE (repeatable).
    #[arg(long = "meta", value_name = "NAME=VALUE", value_parser = parse_meta)]
    pub meta: Vec<(String, String)>,
    /// Write only if the current object's ETag is this.
    #[arg(long, value_name = "ETAG")]
    pub if_match: Option<String>,
    /// Write only if no current object has this ETag; `*`: only if the key is free.
    #[arg(long, value_name = "ETAG|*")]
    pub if_none_match: Option<String>,
    /// Protect the object with your own 256-bit key (a file of 32 raw bytes); the
    /// cluster keeps only its SHA-256, and every get must send it again.
    #[arg(long, value_name = "FILE")]
    pub encryption_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// TENANT/CONTAINER/KEY
    #[arg(value_parser = paths::parse_object_path)]
    pub path: ObjectPath,
    /// Destination file; stdout when absent or `-`. Written only once verified.
    pub file: Option<PathBuf>,
    /// Byte range START-END (inclusive) or START-.
    #[arg(long, value_parser = paths::parse_range, value_name = "START-END")]
    pub range: Option<(u64, Option<u64>)>,
    /// Read from any replica (may be stale) instead of the leader.
    #[arg(long)]
    pub eventual: bool,
    /// Which copy to read: the primary (default) or, for RA-GRS and RA-GZRS, the
    /// secondary in the paired region (eventually consistent; prints its last sync
    /// time on stderr).
    #[arg(long, value_enum, default_value_t = ReadFrom::Primary)]
    pub from: ReadFrom,
    /// The key file the object was put with (`put --encryption-key-file`).
    #[arg(long, value_name = "FILE")]
    pub encryption_key_file: Option<PathBuf>,
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("metadata {s:?} must be NAME=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

/// A content type from a file extension, for the common cases.
fn guess_content_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "txt" | "log" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "csv" => "text/csv",
        "json" => "application/json",
        "js" => "text/javascript",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" => "application/gzip",
        "tar" => "application/x-tar",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        _ => return None,
    })
}

fn is_stdio(p: &Path) -> bool {
    p.as_os_str() == "-"
}

pub async fn put(client: &Client, args: PutArgs, out: Out) -> anyhow::Result<()> {
    let p = &args.path;
    let (source, size) = if is_stdio(&args.file) {
        (PutSource::reader(tokio::io::stdin()), None)
    } else {
        let meta = std::fs::metadata(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        if meta.is_dir() {
            return Err(UsageError(format!(
                "{} is a directory, not a file",
                args.file.display()
            ))
            .into());
        }
        (PutSource::File(args.file.clone()), Some(meta.len()))
    };
    let encryption_key = args
        .encryption_key_file
        .as_deref()
        .map(crate::EncryptionKey::from_file)
        .transpose()?;
    let content_type = args
        .content_type
        .or_else(|| guess_content_type(&args.file).map(str::to_owned));
    let bar = transfer_bar("uploading", size);
    let opts = PutOptions {
        content_type,
        metadata: args.meta.into_iter().collect::<BTreeMap<_, _>>(),
        if_match: args.if_match,
        if_none_match: args.if_none_match,
        progress: bar.as_ref().map(|(_, f)| f.clone()),
        encryption_key,
    };
    let result = client
        .put(&p.tenant, &p.container, &p.key, source, opts)
        .await;
    if let Some((b, _)) = &bar {
        b.finish_and_clear();
    }
    let info = result?;
    if out.is_json() {
        return out.json(&info);
    }
    say!(
        "uploaded {p}: {} ({} bytes), etag {}, version {}, crc32 {:08x}",
        human_bytes(info.size),
        info.size,
        info.etag,
        info.version_id,
        info.crc32
    );
    Ok(())
}

/// Which copy of a tenant a read goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReadFrom {
    Primary,
    Secondary,
}

/// The consistency a read asks for.
pub fn consistency(from: ReadFrom, eventual: bool) -> Consistency {
    match (from, eventual) {
        (ReadFrom::Secondary, _) => Consistency::Secondary,
        (ReadFrom::Primary, true) => Consistency::Eventual,
        (ReadFrom::Primary, false) => Consistency::Strong,
    }
}

/// Tells a reader of the secondary how current it is.
pub fn note_last_sync(last_sync_ms: Option<u64>) {
    if let Some(ms) = last_sync_ms {
        eprintln!(
            "read from the secondary copy; last sync {} (writes acknowledged after it may be missing)",
            format_time_ms(ms)
        );
    }
}

fn get_options(args: &GetArgs) -> anyhow::Result<GetOptions> {
    Ok(GetOptions {
        range: args.range,
        consistency: consistency(args.from, args.eventual),
        progress: None,
        encryption_key: args
            .encryption_key_file
            .as_deref()
            .map(crate::EncryptionKey::from_file)
            .transpose()?,
    })
}

pub async fn get(client: &Client, args: GetArgs, out: Out) -> anyhow::Result<()> {
    let p = &args.path;
    let mut opts = get_options(&args)?;
    match args.file.as_deref().filter(|f| !is_stdio(f)) {
        None => {
            let mut stdout = tokio::io::stdout();
            let info = client
                .get_to_writer(&p.tenant, &p.container, &p.key, opts, &mut stdout)
                .await?;
            if out.is_json() {
                // stdout carries the data: the metadata goes to stderr.
                eprintln!("{}", serde_json::to_string(&info)?);
            } else {
                note_last_sync(info.last_sync_ms);
            }
            Ok(())
        }
        Some(file) => {
            // Ask for the size first only to decide on a progress bar.
            let size = match std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                true => client
                    .head(&p.tenant, &p.container, &p.key)
                    .await
                    .ok()
                    .map(|i| i.size),
                false => None,
            };
            let bar = size.and_then(|s| transfer_bar("downloading", Some(s)));
            opts.progress = bar.as_ref().map(|(_, f)| f.clone());
            let result = download_to_file(client, p, opts, file).await;
            if let Some((b, _)) = &bar {
                b.finish_and_clear();
            }
            let info = result?;
            if out.is_json() {
                return out.json(&info);
            }
            note_last_sync(info.last_sync_ms);
            say!(
                "downloaded {p} to {}: {} bytes, crc32 verified",
                file.display(),
                info.size
            );
            Ok(())
        }
    }
}

/// Writes into a temporary file next to `file` and renames it into place only
/// after every byte was verified, so a failed download leaves no partial file.
async fn download_to_file(
    client: &Client,
    p: &ObjectPath,
    opts: GetOptions,
    file: &Path,
) -> anyhow::Result<ObjectInfo> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| UsageError(format!("{} is not a file name", file.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".stratus-partial")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    let std_file = tmp.reopen().context("cannot open the temporary file")?;
    let mut writer = tokio::fs::File::from_std(std_file);
    let info = client
        .get_to_writer(&p.tenant, &p.container, &p.key, opts, &mut writer)
        .await?;
    writer
        .sync_all()
        .await
        .context("cannot flush the downloaded file")?;
    drop(writer);
    tmp.persist(file)
        .with_context(|| format!("cannot move the download into {}", file.display()))?;
    Ok(info)
}

pub async fn head(client: &Client, p: &ObjectPath, from: ReadFrom, out: Out) -> anyhow::Result<()> {
    let info = client
        .head_with(&p.tenant, &p.container, &p.key, consistency(from, false))
        .await?;
    if out.is_json() {
        return out.json(&info);
    }
    note_last_sync(info.last_sync_ms);
    let rows = [
        ("path", p.to_string()),
        (
            "size",
            format!("{} ({})", info.size, human_bytes(info.size)),
        ),
        ("content-type", info.content_type.clone()),
        ("etag", info.etag.clone()),
        ("version", info.version_id.clone()),
        ("crc32", format!("{:08x}", info.crc32)),
        ("created", format_time_ms(info.created_at_ms)),
        ("modified", format_time_ms(info.modified_at_ms)),
    ];
    for (k, v) in rows {
        say!("{k:<13} {v}");
    }
    for (k, v) in &info.metadata {
        say!("{:<13} {v}", format!("meta.{k}"));
    }
    Ok(())
}

pub async fn ls(
    client: &Client,
    p: &ListPath,
    page_size: Option<u32>,
    from: ReadFrom,
    out: Out,
) -> anyhow::Result<()> {
    let mut token: Option<String> = None;
    let mut all: Vec<ObjectInfo> = Vec::new();
    let mut count = 0usize;
    loop {
        let page = client
            .list_with(
                &p.tenant,
                &p.container,
                &p.prefix,
                page_size.unwrap_or(0),
                token.as_deref(),
                consistency(from, false),
            )
            .await?;
        if token.is_none() && !out.is_json() {
            note_last_sync(page.objects.first().and_then(|o| o.last_sync_ms));
        }
        count += page.objects.len();
        if out.is_json() {
            all.extend(page.objects);
        } else {
            for o in &page.objects {
                say!(
                    "{:>12}  {}  {}",
                    o.size,
                    format_time_ms(o.modified_at_ms),
                    o.key
                );
            }
        }
        match page.next_continuation {
            Some(next) if token.as_deref() != Some(next.as_str()) => token = Some(next),
            _ => break,
        }
    }
    if out.is_json() {
        return out.json(&all);
    }
    if count == 0 {
        eprintln!("no objects under {}/{}/{}", p.tenant, p.container, p.prefix);
    }
    Ok(())
}

#[derive(Serialize)]
struct Deleted<'a> {
    deleted: String,
    version_id: &'a str,
}

pub async fn rm(
    client: &Client,
    p: &ObjectPath,
    if_match: Option<&str>,
    out: Out,
) -> anyhow::Result<()> {
    let version = client
        .delete(&p.tenant, &p.container, &p.key, if_match)
        .await?;
    if out.is_json() {
        return out.json(&Deleted {
            deleted: p.to_string(),
            version_id: &version,
        });
    }
    say!("deleted {p}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_content_type_parsing() {
        assert_eq!(
            parse_meta("owner=alice=b"),
            Ok(("owner".into(), "alice=b".into()))
        );
        assert!(parse_meta("novalue").is_err());
        assert_eq!(guess_content_type(Path::new("a/b.JPG")), Some("image/jpeg"));
        assert_eq!(guess_content_type(Path::new("-")), None);
    }
}
