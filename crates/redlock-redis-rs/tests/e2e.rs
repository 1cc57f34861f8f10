//! Five-node Redlock end to end, on servers the tests start (bodies shared
//! with every adapter in `redlock_testkit::e2e`).

mod common;

redlock_testkit::e2e_tests!(common::factory);
