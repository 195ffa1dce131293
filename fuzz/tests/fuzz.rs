//! The fuzz targets, each a test: replay the target's corpus, then mutate
//! it for `ATEX_FUZZ_SECONDS` (15 s by default). `make fuzz` runs them
//! longer; fuzz/README.md says how to keep a finding.

use atex_fuzz::engine::{Target, run};

fn fuzz(target: &Target) {
    match run(target) {
        Ok(report) => assert!(report.replayed > 0, "{} replayed no corpus", target.name),
        Err(why) => panic!("{why}"),
    }
}

#[test]
fn control_stream() {
    fuzz(&atex_fuzz::control::TARGET);
}

#[test]
fn record_lines() {
    fuzz(&atex_fuzz::records::TARGET);
}

#[test]
fn fmf_yaml() {
    fuzz(&atex_fuzz::yaml::TARGET);
}
