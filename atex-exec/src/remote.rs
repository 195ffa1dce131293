//! The remote layout on one machine: the work dir, the uploaded tree, the
//! wrapper, per-test setup, plan prepare/finish (spec/atex-reference.md
//! section 4 "Remote layout and start()").
