//! A five-node Redlock of `FredNode`s end to end, on servers the tests start:
//! the same bodies the redis-rs adapter runs (`redlock_testkit::e2e`).

mod common;

redlock_testkit::e2e_tests!(common::factory);
