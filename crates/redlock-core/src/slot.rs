//! Redis Cluster hash slots, independent of any client.
//!
//! A cluster adapter must never let a `CROSSSLOT` error reach the user: it
//! groups the keys of one call by slot ([`group_by_slot`]), sends one request
//! per group, and compensates (releases what it took) when a group conflicts.
//! Both adapters use this module so the rule lives in one place.

/// Number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The part of `key` that Redis hashes: the text between the first `{` and
/// the next `}` when that is non-empty, otherwise the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The cluster slot of `key` (CRC16/XMODEM of its hash tag, mod 16384).
///
/// ```
/// use redlock_core::slot::hash_slot;
/// assert_eq!(hash_slot(b"foo"), 12182);
/// assert_eq!(hash_slot(b"{user1000}.following"), hash_slot(b"{user1000}.followers"));
/// ```
pub fn hash_slot(key: &[u8]) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(hash_tag(key)) % SLOTS
}

/// Groups `keys` by slot, keeping first-seen order of slots and of keys
/// within a slot. Each group can be sent as one single-slot request.
pub fn group_by_slot(keys: &[String]) -> Vec<(u16, Vec<String>)> {
    let mut groups: Vec<(u16, Vec<String>)> = Vec::new();
    for key in keys {
        let slot = hash_slot(key.as_bytes());
        match groups.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, g)) => g.push(key.clone()),
            None => groups.push((slot, vec![key.clone()])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_slots() {
        // Values from `CLUSTER KEYSLOT` on a real server.
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"bar"), 5061);
        assert_eq!(hash_slot(b"{foo}bar"), 12182);
        assert_eq!(hash_slot(b"{}foo"), hash_slot(b"{}foo"));
        assert_ne!(hash_slot(b"{}foo"), hash_slot(b"foo"));
        assert_eq!(hash_slot(b"foo{}{bar}"), hash_slot(b"foo{}{bar}"));
        assert_eq!(hash_slot(b"foo{{bar}}zap"), hash_slot(b"{bar"));
    }

    #[test]
    fn grouping_keeps_order() {
        let keys: Vec<String> = ["{a}1", "b", "{a}2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let groups = group_by_slot(&keys);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, vec!["{a}1".to_string(), "{a}2".to_string()]);
        assert_eq!(groups[1].1, vec!["b".to_string()]);
    }
}
