//! Printing results (text or JSON on stdout) and errors (stderr, with an exit code
//! per error class).

use crate::Error;
use serde::Serialize;
use std::fmt;
use std::io::Write;
use std::process::ExitCode;

/// `println!` for command results: a closed stdout (`stratus ls … | head`) ends
/// the process quietly, as a SIGPIPE would, instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*), true)
    };
}
pub(crate) use say;

/// `println!` for the long-running supervisor: write errors are ignored (it must
/// keep supervising, and stop its nodes, whatever happens to its stdout).
macro_rules! tell {
    ($($arg:tt)*) => {
        $crate::cli::output::write_line(format_args!($($arg)*), false)
    };
}
pub(crate) use tell;

/// Writes one line to stdout; on a broken pipe exits with status 0 when
/// `exit_on_broken_pipe`.
pub fn write_line(args: fmt::Arguments<'_>, exit_on_broken_pipe: bool) {
    let mut out = std::io::stdout().lock();
    let result = out
        .write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = result {
        if exit_on_broken_pipe && e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable text.
    Text,
    /// One JSON document per command (JSON lines for `stratus dev` events).
    Json,
}

/// Where results go.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub format: OutputFormat,
}

impl Out {
    pub fn new(format: OutputFormat) -> Out {
        Out { format }
    }

    pub fn is_json(self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints `value` as pretty JSON on stdout.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> anyhow::Result<()> {
        say!("{}", serde_json::to_string_pretty(value)?);
        Ok(())
    }

    /// Prints `value` as one JSON line on stdout (event streams).
    pub fn json_line<T: Serialize + ?Sized>(self, value: &T) -> anyhow::Result<()> {
        tell!("{}", serde_json::to_string(value)?);
        Ok(())
    }
}

/// A command-line usage problem found after parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit codes, documented in `stratus --help`.
pub mod exit {
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const PRECONDITION: u8 = 4;
    pub const UNAVAILABLE: u8 = 5;
    pub const INTEGRITY: u8 = 6;
    pub const OUTCOME_UNKNOWN: u8 = 7;
}

/// The exit code of an SDK error class.
pub fn exit_code_of(e: &Error) -> u8 {
    match e {
        Error::InvalidArgument { .. } | Error::Config { .. } => exit::USAGE,
        Error::NotFound { .. } => exit::NOT_FOUND,
        Error::FailedPrecondition { .. } | Error::AlreadyExists { .. } => exit::PRECONDITION,
        Error::Unavailable { .. }
        | Error::NotLeader { .. }
        | Error::Transport { .. }
        | Error::DeadlineExceeded { .. }
        | Error::ResourceExhausted { .. } => exit::UNAVAILABLE,
        Error::Integrity { .. } | Error::DataLoss { .. } => exit::INTEGRITY,
        Error::OutcomeUnknown { .. } => exit::OUTCOME_UNKNOWN,
        Error::PermissionDenied { .. }
        | Error::Unauthenticated { .. }
        | Error::Io { .. }
        | Error::Other { .. } => exit::OTHER,
    }
}

#[derive(Serialize)]
struct JsonError<'a> {
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    message: String,
}

/// Prints `e` on stderr and returns the process exit code.
pub fn report_error(e: &anyhow::Error, format: OutputFormat) -> ExitCode {
    let sdk = e.chain().find_map(|c| c.downcast_ref::<Error>());
    let usage = e.chain().any(|c| c.is::<UsageError>());
    let code = match (sdk, usage) {
        (_, true) => exit::USAGE,
        (Some(s), _) => exit_code_of(s),
        (None, false) => exit::OTHER,
    };
    let message = e
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    match format {
        OutputFormat::Text => eprintln!("error: {message}"),
        OutputFormat::Json => {
            let body = JsonError {
                kind: sdk.map_or(if usage { "usage" } else { "other" }, Error::kind),
                code: sdk.and_then(Error::code),
                message,
            };
            let doc = serde_json::json!({ "error": body });
            eprintln!("{doc}");
        }
    }
    ExitCode::from(code)
}

/// Milliseconds since the Unix epoch → `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn format_time_ms(ms: u64) -> String {
    if ms == 0 {
        return "-".to_owned();
    }
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Bytes in a human unit (binary prefixes).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Prints rows as left-aligned columns separated by two spaces.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    say!("{}", render_table(header, rows));
}

/// Renders rows as left-aligned columns separated by two spaces (no final newline).
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut lines = vec![line(&header)];
    lines.extend(rows.iter().map(|r| line(r)));
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_format() {
        assert_eq!(format_time_ms(0), "-");
        assert_eq!(format_time_ms(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(format_time_ms(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        let t = render_table(&["ID", "NAME"], &[vec!["10".into(), "a".into()]]);
        assert_eq!(t, "ID  NAME\n10  a");
    }

    #[test]
    fn error_classes_have_distinct_exit_codes() {
        let nf = Error::NotFound {
            what: "object".into(),
            message: "m".into(),
            code: None,
        };
        assert_eq!(exit_code_of(&nf), exit::NOT_FOUND);
        let pre = Error::FailedPrecondition {
            message: "etag".into(),
            code: None,
        };
        assert_eq!(exit_code_of(&pre), exit::PRECONDITION);
        let integrity = Error::Integrity {
            what: "x".into(),
            expected: "a".into(),
            actual: "b".into(),
        };
        assert_eq!(exit_code_of(&integrity), exit::INTEGRITY);
        assert_eq!(exit_code_of(&Error::invalid("bad")), exit::USAGE);
    }
}
