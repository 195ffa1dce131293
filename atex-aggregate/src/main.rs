//! The `atex-aggregate` binary: everything lives in the library.

fn main() -> std::process::ExitCode {
    atex_aggregate::main()
}
