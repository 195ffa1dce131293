//! The controller side of the ATEX test-control protocol: a sans-IO decoder
//! of the control stream (spec/atex-reference.md section 2).
