//! `stratus`: the Stratus command-line tool (objects, tenants, containers, cluster
//! status, the `stratus dev` local cluster supervisor and `stratus bench`).
//!
//! Thin on purpose: parses arguments, sets up logging, runs [`cli::run`] and turns
//! its error into a message on stderr and an exit code ([`cli::output`]).

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    init_tracing(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let format = args.output;
    match runtime.block_on(cli::run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => cli::output::report_error(&e, format),
    }
}

/// `RUST_LOG` wins; otherwise `-v` shows this tool's debug logs, `-vv` everything.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "warn,stratus=debug,stratus_client=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
