//! Where a hook's one error line must go so that the user sees it: runc
//! shows a failed hook's stderr; crun sends it to /dev/null, and under
//! podman crun's own `--log` file is what podman shows
//! (`engines::runtime`).

use std::io::Write;
use std::path::PathBuf;

/// Print a hook's one-line error where the user will see it. runc shows a
/// failed hook's stderr; crun sends it to /dev/null (`engines::runtime`). When ours is /dev/null,
/// the line also goes to the runtime's own stderr (our parent's fd 2), so
/// `crun run` tells the user why the container did not start.
pub fn report_error(line: &str) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    eprintln!("{line}");
    let devnull =
        |m: &std::fs::Metadata| m.file_type().is_char_device() && m.rdev() == libc::makedev(1, 3);
    let ours = std::fs::metadata("/proc/self/fd/2");
    if !ours.as_ref().is_ok_and(devnull) {
        return;
    }
    let ppid = std::os::unix::process::parent_id();
    // Under podman, crun's own errors go to the file its `--log` names, and
    // podman shows what that file says: put the cause there too.
    if let Some((path, json)) = runtime_log(ppid) {
        let entry = if json {
            let mut e = serde_json::to_string(&serde_json::json!({"level": "error", "msg": line}))
                .expect("json");
            e.push('\n');
            e
        } else {
            format!("{line}\n")
        };
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&path) {
            let _ = f.write_all(entry.as_bytes());
        }
    }
    let theirs = format!("/proc/{ppid}/fd/2");
    if std::fs::metadata(&theirs).is_ok_and(|m| !devnull(&m)) {
        if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(&theirs) {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The runtime's `--log FILE` and whether `--log-format` is json, from its
/// command line.
fn runtime_log(ppid: u32) -> Option<(PathBuf, bool)> {
    let raw = std::fs::read(format!("/proc/{ppid}/cmdline")).ok()?;
    let args: Vec<&str> = raw
        .split(|b| *b == 0)
        .filter_map(|a| std::str::from_utf8(a).ok())
        .collect();
    let (log, json) = crate::engines::runtime::log_destination(&args)?;
    // Only an existing regular file: never create one where the runtime did not.
    let path = Some(log).filter(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()))?;
    Some((path, json))
}
