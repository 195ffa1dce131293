//! Running one test: setup, the wrapper process, the control stream, the
//! deadline, results and the fallback (spec/atex-reference.md section 4
//! "Per-test run_test").
