//! WASI `open-at` for source plugins: privy's own, so that no open a plugin
//! makes inside a granted directory can block (B4).
//!
//! wasmtime-wasi opens with a plain blocking `open(2)`, and privy lets WASI
//! file calls run on the thread that runs the plugin
//! (`allow_blocking_current_thread`, five times faster than a thread hop per
//! call). Opening a FIFO there waited for a writer that never came, on a
//! thread where no timer can fire: the plugin's wall-clock limit never
//! ended it. A thread hop would have moved the wait, not ended it (and left
//! a thread stuck in a long-lived process). So the open itself must not
//! wait: this module re-defines the one function that opens,
//! `[method]descriptor.open-at` of `wasi:filesystem/types`, in the linker,
//! after wasmtime-wasi's own.
//!
//! It opens with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative
//! to the directory descriptor, which is the confinement wasmtime-wasi's
//! cap-std gives (no `..` out, no absolute path or absolute symlink, no
//! `/proc` magic link), always `O_RDONLY | O_NONBLOCK | O_NOCTTY`, then
//! checks the opened descriptor with `fstat`. A directory or a regular file
//! becomes the same descriptor type wasmtime-wasi makes, so every other
//! filesystem function works on it unchanged; anything else (a FIFO, a
//! socket, a device) is closed again and refused with `not-permitted`, and
//! the host logs a line that names the source and the path. Every grant is
//! read-only, so an open that asks to create, truncate or write is refused
//! before the OS sees it, exactly as wasmtime-wasi refuses it for a
//! read-only preopen.

use super::imports::HostState;
use crate::sys::fs::{fstat_mode, Kind};
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::filesystem::{Descriptor, Dir, File};
use wasmtime_wasi::p2::bindings::filesystem::types::{
    DescriptorFlags, ErrorCode, OpenFlags, PathFlags,
};
use wasmtime_wasi::OpenMode;

/// The interface wasmtime-wasi 48 defines (`wasi:filesystem@0.2.12`). If a
/// wasmtime-wasi upgrade changes it, this name defines a second, partial
/// instance and every plugin fails to link: loud, never silently unguarded.
const FILESYSTEM_TYPES: &str = "wasi:filesystem/types@0.2.12";

/// Whether WASI file calls run on the calling thread: the speed that makes
/// this module necessary (see the module docs). [`HostState`] sets the
/// WASI context the same way, and descriptors opened here inherit it.
pub(super) const BLOCK_CURRENT_THREAD: bool = true;

/// Replace wasmtime-wasi's `open-at` in `linker` with [`open_at`].
pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = linker.instance(FILESYSTEM_TYPES).and_then(|mut types| {
        types.func_wrap_async(
            "[method]descriptor.open-at",
            |mut store,
             (fd, path_flags, path, oflags, flags): (
                Resource<Descriptor>,
                PathFlags,
                String,
                OpenFlags,
                DescriptorFlags,
            )| {
                Box::new(async move {
                    Ok((open_at(
                        store.data_mut(),
                        fd,
                        path_flags,
                        &path,
                        oflags,
                        flags,
                    )?,))
                })
            },
        )
    });
    linker.allow_shadowing(false);
    defined
}

/// One `open-at`, never blocking. The outer error traps (a bad resource
/// handle); the inner one goes back to the plugin.
fn open_at(
    st: &mut HostState,
    fd: Resource<Descriptor>,
    path_flags: PathFlags,
    path: &str,
    oflags: OpenFlags,
    flags: DescriptorFlags,
) -> wasmtime::Result<Result<Resource<Descriptor>, ErrorCode>> {
    let dir = match st.table().get(&fd)? {
        Descriptor::Dir(d) => d.clone(),
        Descriptor::File(_) => return Ok(Err(ErrorCode::NotDirectory)),
    };
    // The same checks, in the same order, as wasmtime-wasi's `open_at`.
    if flags.intersects(
        DescriptorFlags::FILE_INTEGRITY_SYNC
            | DescriptorFlags::DATA_INTEGRITY_SYNC
            | DescriptorFlags::REQUESTED_WRITE_SYNC,
    ) {
        return Ok(Err(ErrorCode::Unsupported));
    }
    if oflags.contains(OpenFlags::DIRECTORY)
        && oflags.intersects(OpenFlags::CREATE | OpenFlags::EXCLUSIVE | OpenFlags::TRUNCATE)
    {
        return Ok(Err(ErrorCode::Invalid));
    }
    // Grants are read-only (and privy makes no other preopen).
    if oflags.intersects(OpenFlags::CREATE | OpenFlags::TRUNCATE)
        || flags.contains(DescriptorFlags::WRITE)
    {
        return Ok(Err(ErrorCode::NotPermitted));
    }
    let mut how = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    if !path_flags.contains(PathFlags::SYMLINK_FOLLOW) {
        how |= libc::O_NOFOLLOW;
    }
    if oflags.contains(OpenFlags::DIRECTORY) {
        how |= libc::O_DIRECTORY;
    }
    let opened = crate::sys::openat2(
        std::os::fd::AsRawFd::as_raw_fd(&*dir.dir),
        path,
        how,
        0,
        crate::sys::RESOLVE_BENEATH | crate::sys::RESOLVE_NO_MAGICLINKS,
    );
    let file = match opened {
        Ok(fd) => std::fs::File::from(fd),
        // An escape attempt: cap-std reports it as "permission denied".
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => return Ok(Err(ErrorCode::NotPermitted)),
        Err(e) => return Ok(Err(error_code(e))),
    };
    let mode = match fstat_mode(&file) {
        Ok(m) => m,
        Err(e) => return Ok(Err(error_code(e))),
    };
    let desc = match Kind::of_mode(mode) {
        Some(Kind::Directory) => Descriptor::Dir(Dir::new(
            file,
            dir.perms,
            OpenMode::READ,
            BLOCK_CURRENT_THREAD,
        )),
        None => Descriptor::File(File::new(
            file,
            dir.perms,
            OpenMode::READ,
            BLOCK_CURRENT_THREAD,
        )),
        Some(kind) => {
            // Info, not warn: the plugin gets the error and its line names
            // the cause; this is for the hook's log (a CLI prints warnings).
            tracing::info!(
                source = st.source(),
                "refused a WASI open of {} (under a granted directory): it is {kind}, and privy opens only regular files and directories for a plugin (a FIFO or a device could block)",
                crate::shown::shown(path)
            );
            return Ok(Err(ErrorCode::NotPermitted));
        }
    };
    Ok(Ok(st.table().push(desc)?))
}

/// wasmtime-wasi's own mapping of an OS error to a WASI error code.
fn error_code(e: std::io::Error) -> ErrorCode {
    wasmtime_wasi::p2::FsError::from(e)
        .downcast()
        .unwrap_or(ErrorCode::Io)
}
