//! The remote test wrapper: the script atex-exec installs on a machine to
//! run one test (control fd, own session, cleanup, exit code).
