//! The one place that reads YAML: fmf files into [`Value`]s with YAML 1.2
//! typing as python fmf (ruamel.yaml) does it.
//!
//! OWNER: yaml agent. Stub until implemented.

use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::value::Value;

/// Parse one fmf file's text. `path` is used for error locations only.
/// Errors are [`ErrorKind::FileError`] with the file, line and column.
pub fn parse(text: &str, path: &Path) -> Result<Value> {
    let _ = text;
    Err(Error::new(ErrorKind::FileError, "yaml: not implemented yet").in_file(path))
}
