//! Whether SELinux is on, asked the way runc and crun (go-selinux,
//! libselinux) ask: selinuxfs is mounted at `/sys/fs/selinux` (the file
//! system's magic number, not just a directory of that name), and its
//! `enforce` file says enforcing (`1`) or permissive (`0`). A disabled
//! SELinux has no selinuxfs mounted. Ask before entering a container's
//! mount namespace: the container's `/sys` may not show it.

use std::path::Path;

/// selinuxfs's `f_type` (`SELINUX_MAGIC` in the kernel's `magic.h`).
const SELINUX_MAGIC: i64 = 0xf97c_ff8c;

/// Where selinuxfs is mounted on every current distribution.
const SELINUXFS: &str = "/sys/fs/selinux";

/// Whether SELinux is enabled (enforcing or permissive) on this host.
pub fn enabled() -> bool {
    enabled_at(Path::new(SELINUXFS))
}

fn enabled_at(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid out-buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)]
    if st.f_type as i64 != SELINUX_MAGIC {
        return false;
    }
    matches!(
        std::fs::read_to_string(dir.join("enforce"))
            .as_deref()
            .map(str::trim),
        Ok("0" | "1")
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_directory_that_is_not_selinuxfs_is_not_selinux() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("enforce"), "1").unwrap();
        assert!(!super::enabled_at(d.path()));
        assert!(!super::enabled_at(&d.path().join("missing")));
        // This machine has no SELinux (README says what was tested where).
        if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
            assert!(!super::enabled());
        }
    }
}
