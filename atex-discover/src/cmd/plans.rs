//! The `plans` subcommand.

use std::io::Write;

use crate::cli::CliError;

/// Arguments of `atex-discover plans`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Arguments (not implemented yet).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// Run the subcommand.
pub fn run(_args: Args, _out: &mut dyn Write) -> Result<u8, CliError> {
    Err(CliError::Usage("not implemented yet".into()))
}
