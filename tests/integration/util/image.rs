//! An image in podman's storage for one test, removed when dropped.

use std::process::Command;

/// An image tag removed (with every tag on the same image) on drop.
pub struct Image(pub String);

impl Image {
    /// `localhost/<a unique name from prefix>:t`.
    pub fn tagged(prefix: &str) -> Image {
        Image(format!("localhost/{}:t", super::unique_id(prefix)))
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rmi", "-f", &self.0]).output();
    }
}
