//! Result reporting: partial results and their merge rules, `testout`, the
//! fallback result (spec/atex-reference.md section 3).
