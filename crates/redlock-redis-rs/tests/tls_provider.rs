//! The `tls` feature picks a rustls crypto provider before the first TLS
//! connection, and keeps one that is already installed. Its own test binary
//! (its own process), so that nothing installed a provider before.

use std::sync::Arc;

use redlock_redis_rs::RedisNode;
use rustls::crypto::CryptoProvider;

#[test]
fn a_node_builder_installs_a_provider_once() {
    assert!(
        CryptoProvider::get_default().is_none(),
        "a provider was installed before the test; it would prove nothing"
    );
    let _builder = RedisNode::builder();
    let first = CryptoProvider::get_default().expect("a provider after RedisNode::builder()");
    let _builder = RedisNode::builder();
    let second = CryptoProvider::get_default().expect("still a provider");
    assert!(
        Arc::ptr_eq(first, second),
        "the installed provider was replaced"
    );
}
