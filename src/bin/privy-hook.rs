//! `privy-hook`: the thin hook the runtimes execute (createRuntime,
//! poststop). It names `privy_core` and `std` only, so it links no
//! WebAssembly engine, async runtime or TLS (`scripts/check-layers` keeps
//! it so); how it works is `privy_core::hook::thin`.

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(privy_core::hook::thin::main())
}
