//! The sandbox's limits, as wasmtime enforces them: the engine settings
//! (stacks, memory reservations, epoch interruption) and their pooled
//! variant, the epoch ticker that CPU limits are counted in, and how a
//! wasmtime error becomes the limit it hit (CPU, memory, time) or a
//! one-line trap.

use super::imports::HostState;
use super::PluginError;
use crate::config::Limits;
use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::{Config, Engine, Store};

/// Length of one epoch tick; CPU limits are counted in these.
pub(super) const TICK: Duration = Duration::from_millis(10);

/// The engine configuration; part of the cache key through wasmtime's
/// compatibility hash, so changing it invalidates cached code.
pub fn wasm_config() -> Config {
    let mut c = Config::new();
    c.epoch_interruption(true);
    c.wasm_component_model(true);
    c.max_wasm_stack(512 << 10);
    c.async_stack_size(1 << 20);
    c.memory_reservation(1 << 30);
    c.memory_guard_size(64 << 10);
    c
}

/// The engine configuration for a long-lived host: the same settings, plus
/// a pooling allocator with `slots` instance slots, so each call reuses
/// reserved memory and stacks instead of mapping them afresh. `memory` is
/// the largest linear memory a plugin may have (`limits.plugin_memory_bytes`).
pub fn pooled_wasm_config(slots: u32, memory: u64) -> Config {
    let mut pool = wasmtime::PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 8)
        .total_stacks(slots)
        .max_memories_per_component(2)
        // A source's tables hold its indirect functions (hundreds); the
        // default (20,000 elements) reserved 160 KB a table, 8 tables a slot.
        .table_elements(10_000)
        .max_memory_size(memory as usize);
    let mut c = wasm_config();
    c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    c
}

/// Start, once per engine, the thread that advances its epoch every
/// [`TICK`]; it ends when the engine is dropped.
pub(super) fn start_ticker(engine: &Engine, started: &OnceLock<()>) {
    started.get_or_init(|| {
        let engine = engine.weak();
        std::thread::Builder::new()
            .name("privy-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                match engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => return,
                }
            })
            .expect("spawn epoch ticker");
    });
}

/// Turn a wasmtime error into the limit it hit, or a one-line trap.
pub(super) fn classify(
    e: &wasmtime::Error,
    store: &Store<HostState>,
    limits: &Limits,
) -> PluginError {
    let st = store.data();
    if st.timed_out {
        return PluginError::Timeout(limits.plugin_timeout_ms);
    }
    if st.cpu_exceeded {
        return PluginError::Cpu(limits.plugin_cpu_ms);
    }
    let text = format!("{e:#}");
    if text.contains("forcing trap when growing memory") || text.contains("memory minimum size") {
        return PluginError::Memory(limits.plugin_memory_bytes >> 20);
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let what = match trap {
            wasmtime::Trap::StackOverflow => "stack overflow (runaway recursion)".to_string(),
            wasmtime::Trap::UnreachableCodeReached => "wasm `unreachable` executed (the plugin panicked or aborted)".into(),
            wasmtime::Trap::MemoryOutOfBounds => {
                "out-of-bounds memory access (its stack ran out, as deep recursion does, or a plugin bug)".into()
            }
            wasmtime::Trap::Interrupt => return PluginError::Cpu(limits.plugin_cpu_ms),
            other => other.to_string(),
        };
        return PluginError::Trap(what);
    }
    PluginError::Trap(one_line(e))
}

/// An error chain as one whole line, its parts joined with `: `. Parts
/// that span lines (wasmparser pretty-prints the bytes it expected and
/// found, `expected=[\n    0x0,\n ...]`) are folded onto one line, not
/// cut at their first newline.
pub(super) fn one_line(e: &wasmtime::Error) -> String {
    let s: Vec<String> = e.chain().map(|c| fold_lines(&c.to_string())).collect();
    crate::shown::one_line(&s.join(": "), 400)
}

/// `s` with every run of whitespace (newlines included) made one space, and
/// the padding of a pretty-printed list dropped: `[ 0x0, 0x61, ]` becomes
/// `[0x0, 0x61]`.
fn fold_lines(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace("[ ", "[")
        .replace(", ]", "]")
}
