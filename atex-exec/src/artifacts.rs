//! A test's artifacts directory: confined file names and appending writes.
