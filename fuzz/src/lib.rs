//! A fuzz harness for atex's decoders of outside bytes that runs on the
//! stable toolchain: the control stream a test writes (`atex-exec`), the
//! Test/Machine/Result record lines every tool reads, and the fmf YAML
//! loader (`atex-discover`).
//!
//! cargo-fuzz needs a nightly compiler; this harness uses proptest as its
//! engine instead. Each case picks a seed from the target's corpus
//! (`fuzz/corpus/<target>/`) and applies a short list of mutations to it
//! (bit flips, interesting bytes and numbers, dictionary tokens, deletions,
//! truncation, repeats, splices with another seed); a failing case is shrunk
//! by proptest toward the unmutated seed. Every corpus file is replayed
//! first, so the corpus doubles as the regression suite. See
//! `fuzz/README.md` for how to run it and how to keep a crash.
//!
//! The properties of each target live in [`control`], [`records`] and
//! [`yaml`]; the engine in [`engine`].

pub mod control;
pub mod engine;
pub mod records;
pub mod yaml;
