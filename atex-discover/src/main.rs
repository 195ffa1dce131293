//! The `atex-discover` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    atex_discover::cli::main()
}
