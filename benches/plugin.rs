//! Plugin host costs, measured in one process and printed as medians and
//! ratios:
//! - loading a precompiled component from the cache against compiling it
//!   (what the cache saves on every container start);
//! - one warm call (fresh store, instantiate, `fetch` of 3 files of 4 KiB),
//!   through host-dir reading real files and through a fixture returning
//!   the same from memory, on the hook's on-demand host and on a pooled
//!   host (long-lived processes).
//!
//! Run: `cargo bench --bench plugin`.

use privy::config::{Grant, Limits};
use privy::plan::PluginRef;
use privy::plugin::{Call, Plugin, PluginHost, PluginRequest};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(n: usize, mut f: impl FnMut() -> T) -> Duration {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        std::hint::black_box(f());
        v.push(t.elapsed());
    }
    median(v)
}

fn config(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Median of 1000 warm calls (after 50 to warm up) that must return 3 files.
fn warm_call(
    host: &PluginHost,
    plugin: &Plugin,
    grant: &Grant,
    config: &BTreeMap<String, String>,
) -> Duration {
    let limits = Limits::default();
    let req = PluginRequest::bare("bench", privy::request::Stage::Run);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let call = || {
        let c = Call {
            source: "bench",
            grant,
            config,
            limits: &limits,
            request: &req,
            daemon: None,
        };
        assert_eq!(rt.block_on(host.fetch(plugin, c)).unwrap().files.len(), 3);
    };
    for _ in 0..50 {
        call();
    }
    time(1000, call)
}

fn main() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["a", "b", "c"] {
        std::fs::write(dir.path().join(f), vec![7u8; 4096]).unwrap();
    }
    let host = PluginHost::new(cache.path()).unwrap();
    let pooled = PluginHost::new_pooled(cache.path(), &Limits::default(), 4).unwrap();
    let host_dir = PluginRef::Embedded("host-dir".into());
    let wasm = privy::plugin::embedded("host-dir").unwrap().wasm;
    let hostile =
        std::fs::read(std::path::Path::new(privy::plugin::GUEST_DIR).join("hostile.wasm")).unwrap();

    host.load(&host_dir).unwrap(); // fills the cache
    let compile = time(5, || {
        wasmtime::component::Component::new(host.engine(), wasm).unwrap()
    });
    let cached = time(200, || host.load(&host_dir).unwrap());
    let engine = time(50, || PluginHost::new(cache.path()).unwrap());

    let fs_grant = Grant {
        dirs: vec![dir.path().to_owned()],
        ..Grant::default()
    };
    let fs_config = config(&[("dir", dir.path().to_str().unwrap())]);
    let mem_config = config(&[("mode", "ok"), ("count", "3"), ("size", "4096")]);
    let none = Grant::default();
    let mut rows = Vec::new();
    for (name, h) in [
        ("on-demand (hook)", &host),
        ("pooled (long-lived)", &pooled),
    ] {
        let fs = warm_call(h, &h.load(&host_dir).unwrap(), &fs_grant, &fs_config);
        let mem = warm_call(h, &h.load_bytes(&hostile).unwrap(), &none, &mem_config);
        rows.push((name, fs, mem));
    }

    println!("engine + linker setup (PluginHost::new): {engine:?}");
    println!("compile host-dir with Cranelift:        {compile:?}");
    println!("load host-dir from the component cache: {cached:?}");
    println!(
        "  cache speed-up: {:.0}x",
        compile.as_secs_f64() / cached.as_secs_f64()
    );
    println!(
        "warm call = store + instantiate + fetch of 3 x 4 KiB; ratio against the 100 us budget:"
    );
    for (name, fs, mem) in rows {
        let r = |d: Duration| d.as_secs_f64() / 100e-6;
        println!("  {name:20} from memory {mem:>10.1?} ({:.2})   host-dir, real files {fs:>10.1?} ({:.2})", r(mem), r(fs));
    }
}
