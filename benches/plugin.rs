//! Plugin host costs, measured in one process and printed as medians and
//! ratios: loading a precompiled component from the cache against compiling
//! it (what the cache saves on every container start), and one warm call
//! (fresh store, instantiate, `fetch` of 3 files of 4 KiB) through host-dir.
//!
//! Run: `cargo bench --bench plugin`.

use privy::config::{Grant, Limits};
use privy::plan::PluginRef;
use privy::plugin::{Call, PluginHost, PluginRequest};
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

fn main() {
    let cache = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["a", "b", "c"] {
        std::fs::write(dir.path().join(f), vec![7u8; 4096]).unwrap();
    }
    let host = PluginHost::new(cache.path()).unwrap();
    let plugin = PluginRef::Embedded("host-dir".into());
    let wasm = privy::plugin::embedded("host-dir").unwrap().wasm;

    host.load(&plugin).unwrap(); // fills the cache
    let compile = time(5, || {
        wasmtime::component::Component::new(host.engine(), wasm).unwrap()
    });
    let cached = time(200, || host.load(&plugin).unwrap());
    let engine = time(50, || PluginHost::new(cache.path()).unwrap());

    let component = host.load(&plugin).unwrap();
    let grant = Grant {
        dirs: vec![dir.path().to_owned()],
        ..Grant::default()
    };
    let config: BTreeMap<String, String> =
        [("dir".to_string(), dir.path().display().to_string())].into();
    let limits = Limits::default();
    let req = PluginRequest::bare("bench", privy::request::Stage::Run);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let call = || {
        let c = Call {
            source: "host-dir",
            grant: &grant,
            config: &config,
            limits: &limits,
            request: &req,
        };
        let files = rt.block_on(host.fetch(&component, c)).unwrap();
        assert_eq!(files.len(), 3);
    };
    for _ in 0..50 {
        call();
    }
    let fetch = time(1000, call);

    // The same call on a host with a pooling allocator, as a long-lived
    // process (the daemon) would use.
    let pooled = PluginHost::new_pooled(cache.path(), &limits, 4).unwrap();
    let pcomponent = pooled.load(&plugin).unwrap();
    let pcall = || {
        let c = Call {
            source: "host-dir",
            grant: &grant,
            config: &config,
            limits: &limits,
            request: &req,
        };
        assert_eq!(rt.block_on(pooled.fetch(&pcomponent, c)).unwrap().len(), 3);
    };
    for _ in 0..50 {
        pcall();
    }
    let pooled_fetch = time(1000, pcall);

    // The same call shape without any filesystem work: the fixture's `ok`
    // mode returns 3 x 4 KiB from memory. The difference is WASI I/O.
    let hostile = host
        .load_bytes(
            &std::fs::read(std::path::Path::new(privy::plugin::GUEST_DIR).join("hostile.wasm"))
                .unwrap(),
        )
        .unwrap();
    let hconfig: BTreeMap<String, String> = [("mode", "ok"), ("count", "3"), ("size", "4096")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let empty = Grant::default();
    let bare = || {
        let c = Call {
            source: "hostile",
            grant: &empty,
            config: &hconfig,
            limits: &limits,
            request: &req,
        };
        assert_eq!(rt.block_on(host.fetch(&hostile, c)).unwrap().len(), 3);
    };
    for _ in 0..50 {
        bare();
    }
    let no_fs = time(1000, bare);
    let phostile = pooled
        .load_bytes(
            &std::fs::read(std::path::Path::new(privy::plugin::GUEST_DIR).join("hostile.wasm"))
                .unwrap(),
        )
        .unwrap();
    let pbare = || {
        let c = Call {
            source: "hostile",
            grant: &empty,
            config: &hconfig,
            limits: &limits,
            request: &req,
        };
        assert_eq!(rt.block_on(pooled.fetch(&phostile, c)).unwrap().len(), 3);
    };
    for _ in 0..50 {
        pbare();
    }
    let pooled_no_fs = time(1000, pbare);

    println!("engine + linker setup (PluginHost::new): {engine:?}");
    println!("compile host-dir with Cranelift:        {compile:?}");
    println!("load host-dir from the component cache: {cached:?}");
    println!(
        "  cache speed-up: {:.0}x",
        compile.as_secs_f64() / cached.as_secs_f64()
    );
    println!("warm call (store + instantiate + fetch of 3 x 4 KiB): {fetch:?}");
    println!("  vs 100 us budget: {:.2}", fetch.as_secs_f64() / 100e-6);
    println!(
        "warm call without filesystem (instantiate + fetch of 3 x 4 KiB from memory): {no_fs:?}"
    );
    println!("  vs 100 us budget: {:.2}", no_fs.as_secs_f64() / 100e-6);
    println!(
        "pooled host, host-dir with 3 files: {pooled_fetch:?} (vs on-demand {:.2}x, vs 100 us budget {:.2})",
        pooled_fetch.as_secs_f64() / fetch.as_secs_f64(),
        pooled_fetch.as_secs_f64() / 100e-6
    );
    println!(
        "pooled host, without filesystem: {pooled_no_fs:?} (vs 100 us budget {:.2})",
        pooled_no_fs.as_secs_f64() / 100e-6
    );
}
