//! The trait-level conformance suite on the in-memory node, through the
//! same macro every adapter uses.

use redlock_testkit::conformance::Subject;
use redlock_testkit::sim::SimNode;

async fn subject() -> Subject {
    Subject::new(SimNode::new("sim").as_dyn())
}

redlock_testkit::conformance_tests!(subject);
