//! The conformance suite on one real `redis-server` (or the first of
//! `REDLOCK_TEST_NODES`): the trait-level checks, the checks that look at
//! the server, and those that start their own servers.

mod common;

use redlock_testkit::conformance::{single_subject, Subject};

async fn subject() -> Subject {
    single_subject(&common::factory).await
}

redlock_testkit::conformance_tests!(subject);
redlock_testkit::server_conformance_tests!(common::factory);
