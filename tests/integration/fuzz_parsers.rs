//! Property tests for the parsers privy runs on input it does not control
//! (issue 10, "Fuzzing"): the OCI state on a hook's stdin, a bundle's
//! `config.json` and the request built from it, `privy.toml`, the paths a
//! plugin returns (`RelPath`), and `grant.hosts` entries and the URLs a
//! plugin sends.
//!
//! Inputs are generated with structure: valid documents whose fields are
//! each kept, dropped, given the wrong type or an extreme value; control
//! characters, bidi overrides and over-long strings; deep nesting; valid
//! documents then mutated byte by byte; and plain random bytes. Every parser
//! must hold:
//!
//! - no panic;
//! - bounded time and memory for every input: each call is timed, and the
//!   bytes it allocates (peak, on its own thread) are counted by the
//!   allocator below;
//! - an error is one line (no control character at all);
//! - what is accepted means what it says (an oracle computed from the
//!   generated structure, or a round trip), and keeps the invariants later
//!   stages rely on (a `RelPath` never has `..`, is never absolute, ...).
//!
//! Case counts are fixed so CI time is too (about 32 000 inputs in all);
//! `PRIVY_FUZZ_SCALE=N` runs N times as many. A failure prints the smallest
//! failing input proptest found; nothing is written to disk.

use privy::config::Config;
use privy::oci::{map_id, IdMapping, Spec, State};
use privy::plugin::net::{parse_grant_host, parse_url, HostName};
use privy::request::Request;
use privy::secret::{RelPath, MAX_COMPONENT, MAX_PATH};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Map, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

// ---- measuring each call: time and this thread's allocations ----

/// The system allocator, counting the bytes live on each thread and their
/// peak, so a test can bound what one parse allocates. Counting is two
/// thread-local cells (const-initialised, no destructor: they never
/// allocate themselves), so every other test in the binary is unaffected.
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now)
            }
        });
    });
}

// SAFETY: every call is passed on to `System` unchanged; the counting
// touches only const thread-locals and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            track(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        track(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            track(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The longest one parse may take. Generous: the machine is shared and the
/// build is a debug one; a parser that is quadratic or worse on these
/// inputs (at most 64 KiB) blows far past it.
const MAX_CALL: Duration = Duration::from_secs(2);

/// Run `f` (one parse of `input_len` bytes) and check its time and the peak
/// of what it allocated: at most 64 bytes per input byte plus 1 MiB.
fn bounded<T>(input_len: usize, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let started = Instant::now();
    let out = f();
    let took = started.elapsed();
    let peak = (PEAK.with(Cell::get) - base).max(0) as usize;
    let budget = 64 * input_len + (1 << 20);
    prop_assert!(took < MAX_CALL, "took {took:?} on {input_len} bytes");
    prop_assert!(
        peak <= budget,
        "allocated {peak} bytes at peak on {input_len} bytes of input"
    );
    Ok(out)
}

/// An error message is one printable line.
fn one_line(e: &impl std::fmt::Display) -> Result<String, TestCaseError> {
    let s = e.to_string();
    prop_assert!(
        !s.chars().any(char::is_control),
        "error is not one printable line: {s:?}"
    );
    prop_assert!(!s.is_empty());
    Ok(s)
}

/// An error as `main` prints it (`privy: {e:#}` with newlines made spaces):
/// one printable line. For `Config` errors, whose library text can span
/// lines (toml's own messages do: "invalid table header\nexpected ...").
fn printed_line(e: &impl std::fmt::Display) -> Result<String, TestCaseError> {
    let s = format!("{e:#}").replace('\n', " ");
    prop_assert!(
        !s.chars().any(char::is_control),
        "printed error is not one printable line: {s:?}"
    );
    Ok(s)
}

/// Cases for one property, scaled by `PRIVY_FUZZ_SCALE`.
fn cases(n: u32) -> ProptestConfig {
    let scale = std::env::var("PRIVY_FUZZ_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1)
        .max(1);
    ProptestConfig {
        cases: n * scale,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..ProptestConfig::default()
    }
}

// ---- generators shared by several parsers ----

/// Text as it arrives from outside: plain names, anything Unicode, control
/// characters and bidi overrides, empty, long.
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9./_-]{0,24}",
        2 => any::<String>(),
        1 => "[\\x00-\\x1f\\x7f\\u{202e}\\u{2028}a/.\"\\\\]{0,12}",
        1 => Just(String::new()),
        1 => (1usize..6000).prop_map(|n| "x".repeat(n)),
    ]
    .boxed()
}

/// A JSON value of any type, for a field given the wrong one.
fn junk() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        text().prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..4).prop_map(|v| json!(v)),
        Just(json!({"nested": {"deeper": [1, "2", null]}})),
    ]
    .boxed()
}

/// A field: usually its valid value, sometimes absent, sometimes junk.
#[derive(Debug, Clone)]
enum Field {
    Valid(Value),
    Absent,
    Junk(Value),
}

fn field(valid: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Field> {
    prop_oneof![
        8 => valid.prop_map(Field::Valid),
        1 => Just(Field::Absent),
        1 => junk().prop_map(Field::Junk),
    ]
    .boxed()
}

fn put(obj: &mut Map<String, Value>, key: &str, f: &Field) {
    match f {
        Field::Valid(v) | Field::Junk(v) => {
            obj.insert(key.into(), v.clone());
        }
        Field::Absent => {}
    }
}

/// Edits to a valid document: (position in per-mille, what to do, a byte).
fn edits() -> impl Strategy<Value = Vec<(u16, u8, u8)>> {
    prop::collection::vec((0u16..1000, 0u8..4, any::<u8>()), 1..8)
}

/// Apply [`edits`]: replace, insert or delete a byte, or cut the rest off.
fn mutate(doc: &[u8], edits: &[(u16, u8, u8)]) -> Vec<u8> {
    let mut d = doc.to_vec();
    for &(at, op, byte) in edits {
        let i = (at as usize * d.len()) / 1000;
        match op {
            0 if i < d.len() => d[i] = byte,
            1 => d.insert(i.min(d.len()), byte),
            2 if i < d.len() => {
                d.remove(i);
            }
            3 => d.truncate(i),
            _ => {}
        }
    }
    d
}

fn string_map() -> BoxedStrategy<BTreeMap<String, String>> {
    prop::collection::btree_map(text(), text(), 0..5).boxed()
}

// ---- the OCI state on stdin ----

#[derive(Debug, Clone)]
struct StateDoc {
    id: Field,
    pid: Field,
    bundle: Field,
    annotations: Field,
    /// Fields runtimes add that privy ignores (`ociVersion`, `status`, ...).
    extra: BTreeMap<String, Value>,
}

fn state_doc() -> BoxedStrategy<StateDoc> {
    (
        field(text().prop_map(Value::String)),
        field(prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            Just(Value::Null)
        ]),
        field(text().prop_map(Value::String)),
        field(string_map().prop_map(|m| json!(m))),
        prop::collection::btree_map("[A-Z][a-zA-Z]{0,8}", junk(), 0..3),
    )
        .prop_map(|(id, pid, bundle, annotations, extra)| StateDoc {
            id,
            pid,
            bundle,
            annotations,
            extra,
        })
        .boxed()
}

impl StateDoc {
    fn json(&self) -> Value {
        let mut o: Map<String, Value> = self.extra.clone().into_iter().collect();
        put(&mut o, "id", &self.id);
        put(&mut o, "pid", &self.pid);
        put(&mut o, "bundle", &self.bundle);
        put(&mut o, "annotations", &self.annotations);
        Value::Object(o)
    }

    /// Whether serde must accept it: `id` and `bundle` strings, `pid` an
    /// i32 or null or absent, `annotations` a map of strings or absent.
    fn valid(&self) -> bool {
        let junk_ok = |f: &Field, ok: &dyn Fn(&Value) -> bool| match f {
            Field::Junk(v) => ok(v),
            _ => true,
        };
        matches!(self.id, Field::Valid(_) | Field::Junk(Value::String(_)))
            && matches!(self.bundle, Field::Valid(_) | Field::Junk(Value::String(_)))
            && junk_ok(&self.pid, &|v| {
                v.is_null() || v.as_i64().is_some_and(|n| i32::try_from(n).is_ok())
            })
            && junk_ok(&self.annotations, &|v| {
                v.as_object()
                    .is_some_and(|m| m.values().all(Value::is_string))
            })
    }
}

proptest! {
    #![proptest_config(cases(1500))]

    #[test]
    fn oci_state_structured(doc in state_doc()) {
        let bytes = serde_json::to_vec(&doc.json()).unwrap();
        let parsed = bounded(bytes.len(), || State::parse(&bytes))?;
        match parsed {
            Ok(s) => {
                prop_assert!(doc.valid(), "accepted an invalid state: {}", doc.json());
                let v = doc.json();
                prop_assert_eq!(Some(s.id.as_str()), v["id"].as_str());
                prop_assert_eq!(Some(s.bundle.as_os_str().to_str().unwrap()), v["bundle"].as_str());
                prop_assert_eq!(s.pid.map(i64::from), v["pid"].as_i64());
                let want: BTreeMap<String, String> =
                    serde_json::from_value(v.get("annotations").cloned().unwrap_or(json!({}))).unwrap();
                prop_assert_eq!(s.annotations, want);
            }
            Err(e) => {
                prop_assert!(!doc.valid(), "refused a valid state {}: {e}", doc.json());
                let line = one_line(&e)?;
                prop_assert!(line.starts_with("OCI state on stdin: "), "{line}");
            }
        }
    }

}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn oci_state_mutated(doc in state_doc(), edits in edits()) {
        let bytes = mutate(&serde_json::to_vec(&doc.json()).unwrap(), &edits);
        if let Err(e) = bounded(bytes.len(), || State::parse(&bytes))? {
            one_line(&e)?;
        }
    }

}

proptest! {
    #![proptest_config(cases(2000))]

    #[test]
    fn oci_state_random_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = bounded(bytes.len(), || State::parse(&bytes))? {
            one_line(&e)?;
        }
    }
}

#[test]
fn oci_state_deep_nesting_and_huge_numbers_are_errors_not_crashes() {
    let mut cases: Vec<Vec<u8>> = Vec::new();
    for depth in [200usize, 100_000] {
        let open = "[".repeat(depth);
        cases.push(format!(r#"{{"id":"c","bundle":"/b","annotations":{open}"#).into_bytes());
        cases.push(
            format!(
                r#"{{"id":"c","bundle":"/b","x":{open}1{}}}"#,
                "]".repeat(depth)
            )
            .into_bytes(),
        );
        cases.push("{\"a\":".repeat(depth).into_bytes());
    }
    cases.push(br#"{"id":"c","bundle":"/b","pid":1e999999}"#.to_vec());
    cases.push(br#"{"id":"c","bundle":"/b","pid":99999999999999999999999}"#.to_vec());
    cases.push(format!(r#"{{"id":"{}","bundle":"/b"}}"#, "\\u0000".repeat(10_000)).into_bytes());
    for c in cases {
        let r = bounded(c.len(), || State::parse(&c)).unwrap();
        if let Err(e) = r {
            one_line(&e).unwrap();
        }
    }
}

// ---- a bundle's config.json, and the request built from it ----

fn id_mappings() -> BoxedStrategy<Value> {
    prop::collection::vec(
        (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(c, h, s)| json!({"containerID": c, "hostID": h, "size": s})),
        0..4,
    )
    .prop_map(Value::Array)
    .boxed()
}

fn spec_doc() -> BoxedStrategy<Value> {
    let user = (
        field(any::<u32>().prop_map(|n| json!(n))),
        field(any::<u32>().prop_map(|n| json!(n))),
        field(prop::collection::vec(any::<u32>(), 0..4).prop_map(|v| json!(v))),
    )
        .prop_map(|(uid, gid, groups)| {
            let mut o = Map::new();
            put(&mut o, "uid", &uid);
            put(&mut o, "gid", &gid);
            put(&mut o, "additionalGids", &groups);
            Value::Object(o)
        });
    let env = prop::collection::vec(
        prop_oneof![
            text(),
            text().prop_map(|t| format!("PRIVY_TICKET={t}")),
            Just("PATH=/bin".to_string()),
        ],
        0..4,
    );
    let process = (field(user), field(env.prop_map(|e| json!(e)))).prop_map(|(u, e)| {
        let mut o = Map::new();
        put(&mut o, "user", &u);
        put(&mut o, "env", &e);
        o.insert("args".into(), json!(["sh"]));
        Value::Object(o)
    });
    let linux = (field(id_mappings()), field(id_mappings())).prop_map(|(u, g)| {
        let mut o = Map::new();
        put(&mut o, "uidMappings", &u);
        put(&mut o, "gidMappings", &g);
        Value::Object(o)
    });
    let annotations = prop::collection::btree_map(
        prop_oneof![
            3 => text(),
            1 => Just("io.privy.names".to_string()),
            1 => Just("io.privy.stage".to_string()),
            1 => Just("io.privy.ticket".to_string()),
        ],
        prop_oneof![
            text(),
            Just("build".to_string()),
            Just(" a , ,b/c ,".to_string())
        ],
        0..5,
    );
    (
        field(text().prop_map(|p| json!({ "path": p }))),
        field(process),
        field(linux),
        field(annotations.prop_map(|m| json!(m))),
    )
        .prop_map(|(root, process, linux, annotations)| {
            let mut o = Map::new();
            o.insert("ociVersion".into(), json!("1.0.2"));
            put(&mut o, "root", &root);
            put(&mut o, "process", &process);
            put(&mut o, "linux", &linux);
            put(&mut o, "annotations", &annotations);
            Value::Object(o)
        })
        .boxed()
}

/// The id mapping rule, written out: the first extent that holds `id` maps
/// it to the same offset in its host range, computed without wrapping (an
/// extent whose host end passes `u32::MAX` maps nothing; the kernel refuses
/// such a map anyway); no maps means no user namespace.
fn mapped(maps: &[IdMapping], id: u32) -> Option<u32> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        let (c, h, s) = (m.container_id as u64, m.host_id as u64, m.size as u64);
        let id = id as u64;
        (id >= c && id < c + s)
            .then(|| u32::try_from(h + (id - c)).ok())
            .flatten()
    })
}

proptest! {
    #![proptest_config(cases(1000))]

    #[test]
    fn bundle_config_and_request_structured(
        spec in spec_doc(),
        state in state_doc(),
        bundle in prop_oneof![Just("/b/x".to_string()), text()],
        edits in prop::option::weighted(0.3, edits()),
    ) {
        let mut bytes = serde_json::to_vec(&spec).unwrap();
        if let Some(e) = &edits {
            bytes = mutate(&bytes, e);
        }
        let parsed = bounded(bytes.len(), || Spec::parse(&bytes, Path::new("/b/config.json")))?;
        let spec = match parsed {
            Ok(s) => s,
            Err(e) => {
                let line = one_line(&e)?;
                prop_assert!(line.starts_with("/b/config.json: "), "{line}");
                return Ok(());
            }
        };
        // The request, from any state the parser accepts.
        let Ok(mut state) = State::parse(&serde_json::to_vec(&state.json()).unwrap()) else {
            return Ok(());
        };
        state.bundle = PathBuf::from(&bundle);
        let (state_ann, spec_ann) = (state.annotations.clone(), spec.annotations.clone());
        let env = spec.process.as_ref().map(|p| p.env.clone()).unwrap_or_default();
        let root_given = spec.root.as_ref().map(|r| r.path.clone());
        let req = match bounded(bytes.len(), || Request::from_oci(state, spec))? {
            Ok(r) => r,
            Err(e) => {
                prop_assert!(root_given.is_none(), "refused with a root: {e}");
                one_line(&e)?;
                return Ok(());
            }
        };
        // Root: absolute as given, or under the bundle.
        let root = root_given.unwrap();
        if root.is_absolute() {
            prop_assert_eq!(&req.root, &root);
        } else {
            prop_assert_eq!(&req.root, &Path::new(&bundle).join(&root));
        }
        // Annotations: the spec's, the state's winning, plus an env ticket
        // only when no annotation names one.
        let mut want = spec_ann;
        want.extend(state_ann);
        if !want.contains_key("io.privy.ticket") {
            if let Some(t) = env.iter().find_map(|e| e.strip_prefix("PRIVY_TICKET=")) {
                want.insert("io.privy.ticket".into(), t.to_owned());
            }
        }
        prop_assert_eq!(&req.annotations, &want);
        // Names: trimmed, none empty.
        prop_assert!(req.names.iter().all(|n| !n.is_empty() && n.trim() == n));
        if want.get("io.privy.stage").map(String::as_str) == Some("build") {
            prop_assert_eq!(req.stage, privy::request::Stage::Build);
        }
        // Owner: through the mappings exactly, never a wrapped id.
        let owner = req.host_owner();
        prop_assert_eq!(
            owner,
            mapped(&req.uid_mappings, req.user.uid).zip(mapped(&req.gid_mappings, req.user.gid))
        );
    }

}

proptest! {
    #![proptest_config(cases(4000))]

    #[test]
    fn id_maps_never_wrap(maps in id_mappings(), id in any::<u32>()) {
        let maps: Vec<IdMapping> = serde_json::from_value(maps).unwrap();
        prop_assert_eq!(map_id(&maps, id), mapped(&maps, id));
    }
}

// ---- privy.toml ----

fn abs_path() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "(/[a-z0-9._-]{1,10}){1,4}",
        1 => Just("/".to_string()),
        1 => Just("/.".to_string()),
        1 => "/proc(/[a-z]{1,5}){0,2}",
        1 => "[a-z]{1,8}(/[a-z]{1,4}){0,2}",
        1 => "/a/(\\.\\./){1,3}b",
        1 => text(),
    ]
    .boxed()
}

/// A `host:port` grant entry, valid or not.
fn host_entry() -> BoxedStrategy<String> {
    (host_text(), port_text())
        .prop_map(|(h, p)| format!("{h}:{p}"))
        .boxed()
}

fn host_text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<std::net::Ipv4Addr>().prop_map(|a| a.to_string()),
        2 => any::<std::net::Ipv6Addr>().prop_map(|a| format!("[{a}]")),
        1 => any::<std::net::Ipv6Addr>().prop_map(|a| a.to_string()),
        3 => "[a-zA-Z][a-zA-Z0-9-]{0,12}(\\.[a-zA-Z0-9-]{1,12}){0,3}\\.?",
        1 => text(),
    ]
    .boxed()
}

fn port_text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => (1u32..=65535).prop_map(|p| p.to_string()),
        2 => (65536u64..u64::MAX).prop_map(|p| p.to_string()),
        1 => Just("0".to_string()),
        1 => Just("00080".to_string()),
        1 => Just("+80".to_string()),
        1 => Just(String::new()),
        1 => text(),
    ]
    .boxed()
}

fn toml_value(v: impl Into<toml::Value>) -> toml::Value {
    v.into()
}

fn source_table() -> BoxedStrategy<toml::Value> {
    let name = prop_oneof![
        Just("a".to_string()),
        Just("host-dir".to_string()),
        "[a-z0-9-]{1,12}",
        text()
    ];
    let plugin = prop_oneof![
        Just("host-dir".to_string()),
        Just("vault".to_string()),
        Just("upload".to_string()),
        Just("/srv/p.wasm".to_string()),
        Just("rel.wasm".to_string()),
        text()
    ];
    let sha = prop::option::of(prop_oneof![
        "[0-9a-f]{64}",
        "[0-9A-F]{64}",
        "[0-9a-f]{0,70}",
        text()
    ]);
    let paths = || prop::collection::vec(abs_path(), 0..3);
    let grant = (
        paths(),
        paths(),
        prop::collection::vec(
            prop_oneof![host_entry(), Just("127.0.0.1:8200".to_string())],
            0..3,
        ),
        any::<bool>(),
    );
    let config = prop::collection::btree_map(
        prop_oneof![
            Just("address".to_string()),
            Just("dir".to_string()),
            Just("token_file".to_string()),
            "[a-z_]{1,10}"
        ],
        prop_oneof![
            Just("http://127.0.0.1:8200".to_string()),
            "https?://[a-z0-9.]{1,12}:[0-9]{1,6}",
            abs_path(),
            text()
        ],
        0..4,
    );
    let when = prop::option::of((
        prop::option::of(text()),
        prop::option::of(text()),
        prop::option::of(prop_oneof![
            Just("run".to_string()),
            Just("build".to_string()),
            text()
        ]),
    ));
    (name, plugin, sha, any::<bool>(), grant, config, when)
        .prop_map(
            |(name, plugin, sha, required, (dirs, files, hosts, daemon), config, when)| {
                let mut t = toml::Table::new();
                t.insert("name".into(), toml_value(name));
                t.insert("plugin".into(), toml_value(plugin));
                if let Some(s) = sha {
                    t.insert("sha256".into(), toml_value(s));
                }
                t.insert("required".into(), toml_value(required));
                let mut g = toml::Table::new();
                g.insert("dirs".into(), toml_value(dirs));
                g.insert("files".into(), toml_value(files));
                g.insert("hosts".into(), toml_value(hosts));
                g.insert("daemon".into(), toml_value(daemon));
                t.insert("grant".into(), toml::Value::Table(g));
                t.insert(
                    "config".into(),
                    toml::Value::Table(
                        config
                            .into_iter()
                            .map(|(k, v)| (k, toml_value(v)))
                            .collect(),
                    ),
                );
                if let Some((annotation, value, stage)) = when {
                    let mut w = toml::Table::new();
                    for (k, v) in [
                        ("annotation", annotation),
                        ("value", value),
                        ("stage", stage),
                    ] {
                        if let Some(v) = v {
                            w.insert(k.into(), toml_value(v));
                        }
                    }
                    t.insert("when".into(), toml::Value::Table(w));
                }
                toml::Value::Table(t)
            },
        )
        .boxed()
}

fn config_doc() -> BoxedStrategy<toml::Table> {
    let limit = prop_oneof![
        4 => 1i64..1 << 30,
        1 => Just(0i64),
        1 => Just(i64::MAX),
        1 => any::<i64>(),
    ];
    let limits = prop::collection::btree_map(
        prop_oneof![
            Just("max_file_bytes"),
            Just("max_total_bytes"),
            Just("max_files"),
            Just("plugin_memory_bytes"),
            Just("plugin_cpu_ms"),
            Just("plugin_timeout_ms"),
            Just("no_such_limit"),
        ],
        limit,
        0..4,
    );
    (
        prop::option::of(abs_path()),
        limits,
        prop::collection::vec(source_table(), 0..4),
        prop::option::of((
            abs_path(),
            abs_path(),
            prop_oneof![abs_path(), Just(String::new())],
        )),
        prop::option::of("[a-z_]{1,10}"),
    )
        .prop_map(|(target, limits, sources, paths, unknown)| {
            let mut t = toml::Table::new();
            if let Some(target) = target {
                t.insert("target".into(), toml_value(target));
            }
            if let Some((cache, state, log)) = paths {
                t.insert("cache_dir".into(), toml_value(cache));
                t.insert("state_dir".into(), toml_value(state));
                t.insert("log_file".into(), toml_value(log));
            }
            if let Some(k) = unknown {
                t.insert(k, toml_value(1));
            }
            t.insert(
                "limits".into(),
                toml::Value::Table(
                    limits
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), toml_value(v)))
                        .collect(),
                ),
            );
            t.insert("source".into(), toml::Value::Array(sources));
            t
        })
        .boxed()
}

/// What a config must never accept, whoever validates it.
fn config_invariants(cfg: &Config) -> Result<(), TestCaseError> {
    let target = Path::new(&cfg.target);
    prop_assert!(
        target.is_absolute() && cfg.target != "/",
        "target {:?}",
        cfg.target
    );
    for s in &cfg.sources {
        for h in &s.grant.hosts {
            prop_assert!(parse_grant_host(h).is_ok(), "grant.hosts entry {h:?}");
        }
    }
    let mut names: Vec<&str> = cfg.sources.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    names.dedup();
    prop_assert_eq!(names.len(), cfg.sources.len(), "duplicate source names");
    Ok(())
}

/// Valid documents to mutate: the built-in default and README's examples.
fn seed_configs() -> Vec<String> {
    vec![
        toml::to_string(&Config::embedded_default()).unwrap(),
        r#"target = "/run/private"
[limits]
max_file_bytes = 1048576
plugin_timeout_ms = 10000
[[source]]
name = "entitlements"
plugin = "host-dir"
required = true
when = { annotation = "io.example.entitled", value = "yes", stage = "run" }
[source.grant]
dirs = ["/srv/entitlements"]
[[source]]
name = "vault"
plugin = "vault"
[source.grant]
hosts = ["127.0.0.1:8200"]
files = ["/etc/privy/vault-token"]
[source.config]
address = "http://127.0.0.1:8200"
token_file = "/etc/privy/vault-token"
allow = "ci/*"
"#
        .to_string(),
    ]
}

proptest! {
    #![proptest_config(cases(800))]

    #[test]
    fn privy_toml_structured(doc in config_doc()) {
        let text = toml::to_string(&doc).unwrap();
        let parsed = bounded(text.len(), || Config::parse(&text, Path::new("/etc/privy/privy.toml")))?;
        match parsed {
            Ok(cfg) => {
                config_invariants(&cfg)?;
                // What was accepted reads back the same.
                let again = toml::to_string(&cfg).unwrap();
                let back = Config::parse(&again, Path::new("x"));
                prop_assert!(back.is_ok(), "re-parse of an accepted config failed: {:?}", back.err());
                prop_assert_eq!(back.unwrap(), cfg);
            }
            Err(e) => {
                let line = printed_line(&e)?;
                prop_assert!(
                    line.starts_with("config key `") || line.starts_with("config /etc/privy/privy.toml: "),
                    "{line}"
                );
            }
        }
    }

}

proptest! {
    #![proptest_config(cases(2500))]

    #[test]
    fn privy_toml_mutated(seed in 0usize..2, edits in edits()) {
        let text = mutate(seed_configs()[seed].as_bytes(), &edits);
        let Ok(text) = String::from_utf8(text) else { return Ok(()) };
        match bounded(text.len(), || Config::parse(&text, Path::new("/p.toml")))? {
            Ok(cfg) => config_invariants(&cfg)?,
            Err(e) => {
                printed_line(&e)?;
            }
        }
    }
}

#[test]
fn privy_toml_seeds_are_valid_and_large_documents_stay_bounded() {
    for s in seed_configs() {
        Config::parse(&s, Path::new("seed")).unwrap();
    }
    // Many sources, deep inline tables, long arrays: bounded, one line.
    let many = "[[source]]\nname='a'\nplugin='host-dir'\n".repeat(2000);
    let deep = format!("x = {}1{}", "[".repeat(5000), "]".repeat(5000));
    let long = format!(
        "[[source]]\nname='a'\nplugin='host-dir'\ngrant.dirs=[{}]\n",
        "'/a',".repeat(10_000)
    );
    for text in [many, deep, long] {
        let r = bounded(text.len(), || Config::parse(&text, Path::new("big"))).unwrap();
        if let Err(e) = r {
            printed_line(&e).unwrap();
        }
    }
}

// ---- paths a plugin returns ----

/// Path components, mostly valid, with every kind of wrong one.
fn component() -> BoxedStrategy<String> {
    prop_oneof![
        8 => "[a-zA-Z0-9._-]{1,12}",
        1 => Just(".".to_string()),
        2 => Just("..".to_string()),
        1 => Just(String::new()),
        1 => Just("..a".to_string()),
        1 => "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}]",
        1 => any::<String>(),
        1 => (250usize..260).prop_map(|n| "c".repeat(n)),
        1 => "[é☃\\u{202e}\\u{feff}]{1,3}",
    ]
    .boxed()
}

fn plugin_path() -> BoxedStrategy<String> {
    (
        prop::bool::weighted(0.1),
        prop::collection::vec(component(), 1..8),
        prop::bool::weighted(0.05),
        0usize..3,
    )
        .prop_map(|(abs, parts, trailing, longer)| {
            let mut p = parts.join("/");
            // Now and then a path near and past the total limit.
            if longer == 2 {
                while p.len() <= MAX_PATH {
                    p.push_str("/abcdefghij");
                }
            }
            if abs {
                p.insert(0, '/');
            }
            if trailing {
                p.push('/');
            }
            p
        })
        .boxed()
}

/// RelPath's rule, written out independently.
fn relpath_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_PATH
        && !p.chars().any(char::is_control)
        && !p.starts_with('/')
        && p.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && c.len() <= MAX_COMPONENT)
}

fn check_relpath(p: &str) -> Result<(), TestCaseError> {
    match bounded(p.len(), || RelPath::new(p))? {
        Ok(r) => {
            prop_assert!(relpath_ok(p), "accepted {p:?}");
            prop_assert_eq!(r.as_str(), p);
            prop_assert_eq!(r.components().collect::<Vec<_>>().join("/"), p);
            prop_assert!(r
                .components()
                .all(|c| c != ".." && c != "." && !c.is_empty()));
            let (dirs, name) = r.split_last();
            prop_assert!(!name.is_empty() && dirs.len() + 1 == r.components().count());
        }
        Err(e) => {
            prop_assert!(!relpath_ok(p), "refused {p:?}: {e}");
            let line = one_line(&e)?;
            // The path came from a plugin: shown short, never whole.
            prop_assert!(line.chars().count() < 300, "{line}");
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(4000))]

    #[test]
    fn relpath_structured(p in plugin_path()) {
        check_relpath(&p)?;
    }

    #[test]
    fn relpath_any_string(p in any::<String>()) {
        check_relpath(&p)?;
    }
}

// ---- grant.hosts entries and the URLs a plugin sends ----

/// Whether a host as written is one privy must accept, and as what.
fn host_meaning(h: &str) -> Option<HostName> {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inner
            .parse()
            .ok()
            .map(|a| HostName::Ip(std::net::IpAddr::V6(a)));
    }
    if let Ok(a) = h.parse::<std::net::Ipv4Addr>() {
        return Some(HostName::Ip(a.into()));
    }
    let n = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (!n.is_empty() && n.len() <= 253 && n.split('.').all(label)).then_some(HostName::Name(n))
}

/// Whether a port as written is 1-65535, in decimal digits.
fn port_meaning(p: &str) -> Option<u16> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let d = p.trim_start_matches('0');
    if d.is_empty() || d.len() > 5 {
        return None;
    }
    d.parse::<u32>()
        .ok()
        .filter(|n| *n <= 65535)
        .map(|n| n as u16)
}

proptest! {
    #![proptest_config(cases(4000))]

    #[test]
    fn grant_hosts_structured(h in host_text(), p in port_text()) {
        let entry = format!("{h}:{p}");
        let got = bounded(entry.len(), || parse_grant_host(&entry))?;
        let want = host_meaning(&h).zip(port_meaning(&p));
        match (&got, &want) {
            (Ok(g), Some(w)) => prop_assert_eq!(g, w),
            // `h` holding a colon can split elsewhere; all that matters
            // then is that nothing odd is accepted.
            (Ok((host, port)), None) => {
                prop_assert!(h.contains(':') || p.contains(':'), "accepted {entry:?}");
                prop_assert!(*port >= 1);
                prop_assert_eq!(parse_grant_host(&format!("{host}:{port}")).unwrap(), (host.clone(), *port));
            }
            (Err(e), None) => {
                one_line(e)?;
            }
            (Err(e), Some(w)) => prop_assert!(false, "refused {entry:?} (means {w:?}): {e}"),
        }
        if let Ok((host, port)) = got {
            // Written back, it reads the same.
            prop_assert_eq!(parse_grant_host(&format!("{host}:{port}")).unwrap(), (host, port));
        }
    }

}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn plugin_urls_structured(
        scheme in prop_oneof![4 => Just("http"), 4 => Just("https"), 1 => Just("ftp"), 1 => Just("HTTP")],
        userinfo in prop::option::weighted(0.1, "[a-z]{1,5}(:[a-z]{1,5})?"),
        h in host_text(),
        p in prop::option::weighted(0.7, port_text()),
        path in "(/[a-zA-Z0-9._~-]{0,8}){0,4}",
        query in prop::option::weighted(0.3, "[a-z]{1,6}=[A-Za-z0-9]{1,12}"),
    ) {
        let mut url = format!("{scheme}://");
        if let Some(u) = &userinfo {
            url.push_str(u);
            url.push('@');
        }
        url.push_str(&h);
        if let Some(p) = &p {
            url.push(':');
            url.push_str(p);
        }
        url.push_str(&path);
        if let Some(q) = &query {
            url.push('?');
            url.push_str(q);
        }
        let got = bounded(url.len(), || parse_url(&url))?;
        let tls = scheme == "https";
        // The port as the URL has it: up to where the authority ends.
        let port = match p.as_deref().map(|p| p.split(['/', '?', '#']).next().unwrap_or("")) {
            None => Some(if tls { 443 } else { 80 }),
            Some(p) => port_meaning(p),
        };
        let plain_host = !h.contains(|c: char| "/?#@[]:".contains(c)) || h.starts_with('[');
        let must = (scheme == "http" || scheme == "https") && userinfo.is_none() && plain_host;
        match got {
            Ok(t) => {
                prop_assert!(scheme != "ftp", "{url}");
                prop_assert!(userinfo.is_none(), "user info accepted: {url}");
                prop_assert!(t.path.starts_with('/'));
                // (A host with `/`, `?`, `#` ends the authority early: the
                // rest is path, and there is no port or host to compare.)
                if plain_host {
                    // The port is the one written (or the default), never a
                    // default standing in for one it could not read.
                    prop_assert_eq!(Some(t.port), port, "{}", url);
                    prop_assert_eq!(Some(t.host), host_meaning(&h), "{}", url);
                }
            }
            Err(e) => {
                let line = one_line(&e)?;
                // A query may carry a token: never in an error.
                if let Some(q) = &query {
                    prop_assert!(!line.contains(q.as_str()), "{line}");
                }
                if must && host_meaning(&h).is_some() && port.is_some() {
                    prop_assert!(false, "refused {url}: {line}");
                }
            }
        }
    }

}

proptest! {
    #![proptest_config(cases(4000))]

    #[test]
    fn plugin_urls_any_string(url in prop_oneof![any::<String>(), "https?://[ -~]{0,40}"]) {
        if let Err(e) = bounded(url.len(), || parse_url(&url))? {
            one_line(&e)?;
        }
    }
}
