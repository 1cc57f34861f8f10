//! What can name the resources of a lock: one name or many.

/// The longest key accepted, in bytes: the resource name with the key
/// prefix before it (64 KiB). Longer names are refused with
/// [`InvalidArgument::ResourceTooLong`](crate::InvalidArgument::ResourceTooLong):
/// every request carries the key, and a huge key only costs memory and time
/// on every node.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// One resource name or a list of them. Implemented for `&str`, `String`,
/// slices, arrays and vectors of either.
pub trait IntoResources {
    /// The names, in order.
    fn into_resources(self) -> Vec<String>;
}

impl IntoResources for &str {
    fn into_resources(self) -> Vec<String> {
        vec![self.to_owned()]
    }
}

impl IntoResources for String {
    fn into_resources(self) -> Vec<String> {
        vec![self]
    }
}

impl IntoResources for &String {
    fn into_resources(self) -> Vec<String> {
        vec![self.clone()]
    }
}

impl<S: AsRef<str>> IntoResources for Vec<S> {
    fn into_resources(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_owned()).collect()
    }
}

impl<S: AsRef<str>> IntoResources for &[S] {
    fn into_resources(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_owned()).collect()
    }
}

impl<S: AsRef<str>, const N: usize> IntoResources for [S; N] {
    fn into_resources(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_owned()).collect()
    }
}

impl<S: AsRef<str>, const N: usize> IntoResources for &[S; N] {
    fn into_resources(self) -> Vec<String> {
        self.iter().map(|s| s.as_ref().to_owned()).collect()
    }
}
