//! Reading the user's files as the calling user (privy runs as them; the
//! daemon never reads a user's path), each capped at
//! `limits.max_file_bytes`, into zeroizing buffers.

use super::spec::Spec;
use super::UploadError;
use crate::daemon::client::OutFile;
use crate::secret::Secret;
use std::io::Read;
use std::os::unix::fs::MetadataExt;

/// Read every spec as the calling user, at most `max_file_bytes` each.
pub fn read_all(specs: &[Spec], max_file_bytes: u64) -> Result<Vec<OutFile>, UploadError> {
    let mut stdin_used = false;
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        let rd = |error| UploadError::Read {
            src: s.src.clone(),
            error,
        };
        let (data, mode) = if s.src == "-" {
            if stdin_used {
                return Err(UploadError::StdinTwice);
            }
            stdin_used = true;
            (
                read_capped(std::io::stdin().lock(), max_file_bytes, &s.src)?,
                0o400,
            )
        } else {
            let f = std::fs::File::open(&s.src).map_err(rd)?;
            let meta = f.metadata().map_err(rd)?;
            if !meta.is_file() {
                return Err(UploadError::NotFile { src: s.src.clone() });
            }
            // Keep the owner's read/write bits; others get nothing by
            // default inside the container.
            let mode = (meta.mode() & 0o700).max(0o400);
            (read_capped(f, max_file_bytes, &s.src)?, mode)
        };
        out.push(OutFile {
            path: s.dest.clone(),
            data,
            mode,
        });
    }
    Ok(out)
}

fn read_capped(r: impl Read, max: u64, src: &str) -> Result<Secret, UploadError> {
    let mut buf = Vec::new();
    let res = r.take(max + 1).read_to_end(&mut buf);
    let data = Secret::new(buf);
    res.map_err(|error| UploadError::Read {
        src: src.into(),
        error,
    })?;
    if data.len() as u64 > max {
        return Err(UploadError::TooLarge {
            src: src.into(),
            max,
        });
    }
    Ok(data)
}
