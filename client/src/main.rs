//! `stratus`: the Stratus command-line tool; the program is [`stratus_client::cli`].

fn main() -> std::process::ExitCode {
    stratus_client::cli::main()
}
