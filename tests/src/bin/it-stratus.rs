//! The `stratus` CLI, built inside this crate so integration tests can start it by
//! path (`CARGO_BIN_EXE_it-stratus`) after a plain `cargo test`.

fn main() -> std::process::ExitCode {
    stratus_client::cli::main()
}
