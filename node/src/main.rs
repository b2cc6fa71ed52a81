//! `stratus-node`: runs one storage node from a config file (see `stratus_node::cli`).

fn main() -> std::process::ExitCode {
    stratus_node::cli::main()
}
