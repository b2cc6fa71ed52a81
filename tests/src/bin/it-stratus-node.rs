//! The `stratus-node` program, built inside this crate so integration tests can start
//! it by path (`CARGO_BIN_EXE_it-stratus-node`) after a plain `cargo test`.

fn main() -> std::process::ExitCode {
    stratus_node::cli::main()
}
