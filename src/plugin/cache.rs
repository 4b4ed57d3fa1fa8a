//! Precompiled components on disk, keyed by wasmtime's compatibility hash of
//! the engine settings plus the SHA-256 of the wasm, so the hook never runs
//! Cranelift on a container start. Loading native code from disk is only as
//! safe as the directory, so the cache is used only when it and the file are
//! owned by us (root) and writable by nobody else; otherwise privy compiles
//! in memory and says so.

use super::PluginError;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::Engine;

pub struct ComponentCache {
    engine: Engine,
    dir: PathBuf,
    engine_key: String,
}

impl ComponentCache {
    pub fn new(engine: &Engine, dir: &Path) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        env!("CARGO_PKG_VERSION").hash(&mut h);
        ComponentCache {
            engine: engine.clone(),
            dir: dir.to_owned(),
            engine_key: format!("{:016x}", h.finish()),
        }
    }

    /// Where the compiled form of a wasm with digest `sha256` lives.
    pub fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{}-{}.cwasm", self.engine_key, sha256))
    }

    /// The compiled component, from the cache when it is trustworthy,
    /// otherwise compiled now (and stored when the directory allows).
    pub fn get_or_compile(&self, wasm: &[u8], sha256: &str) -> Result<Component, PluginError> {
        let path = self.path_for(sha256);
        if trusted(&self.dir) && trusted(&path) {
            // SAFETY: the file is in a directory that only we can write, was
            // written by `store` from our own compilation, and is keyed by the
            // engine's compatibility hash, so it is wasmtime's own output for
            // this engine.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached component: {e}")
                }
            }
        }
        let component = Component::new(&self.engine, wasm)
            .map_err(|e| PluginError::Incompatible(super::one_line(&e)))?;
        if let Err(e) = self.store(&component, &path) {
            tracing::debug!(path = %path.display(), "not caching compiled component: {e}");
        }
        Ok(component)
    }

    fn store(&self, component: &Component, path: &Path) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        if !trusted(&self.dir) {
            return Err(std::io::Error::other(
                "cache directory is not private to this user",
            ));
        }
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let opts = crate::sys::WriteOpts {
            mode: Some(0o600),
            sync: true,
            replace_only: false,
        };
        crate::sys::write_atomic(path, &bytes, opts)
    }
}

/// Owned by the effective user and not writable by group or others.
fn trusted(p: &Path) -> bool {
    match std::fs::symlink_metadata(p) {
        // SAFETY: geteuid has no preconditions.
        Ok(m) => {
            m.uid() == unsafe { libc::geteuid() }
                && m.mode() & 0o022 == 0
                && !m.file_type().is_symlink()
        }
        Err(_) => false,
    }
}
