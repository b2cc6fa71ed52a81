//! `stratus-node`: runs one storage node from a config file (see `stratus_node::cli`).

/// glibc's allocator showed up prominently in profiles under load (many short-lived
/// buffers of a few KiB): mimalloc cut that cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    stratus_node::cli::main()
}
