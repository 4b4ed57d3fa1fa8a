//! The one writer of privy's log lines: JSON lines to the config's
//! `log_file` (created 0600: names and fingerprints only, but still root's
//! business), or text to stderr when it is empty or cannot be opened.
//!
//! A process installs one [`Sink`] ([`install`]). The CLI's `tracing`
//! subscriber writes its lines through it, and so does [`event`], which
//! writes a structured event itself: the audit event's `injection` is one
//! nested JSON object, which `tracing`'s formatters can only write as a
//! string (their nesting needs a build flag for every user). Both write a
//! whole line with one call under one lock, so lines never interleave.
//! A process that has installed none (a library caller) writes nothing.
//!
//! The JSON line is what `tracing-subscriber`'s JSON formatter writes, key
//! for key: `{"timestamp":"2026-12-02T04:39:35.804991Z","level":"INFO",
//! "fields":{"message":...,<fields>},"target":"privy::audit"}`.

use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where log lines go.
#[derive(Debug)]
pub struct Sink {
    out: Mutex<Out>,
}

#[derive(Debug)]
enum Out {
    /// JSON lines, appended.
    File(std::fs::File),
    /// Text, for a person.
    Stderr,
}

static SINK: OnceLock<Sink> = OnceLock::new();

impl Sink {
    /// The log file at `path`, created 0600 (and its directory) if
    /// missing; `None` when `path` is empty or cannot be opened.
    pub fn open(path: &Path) -> Option<Sink> {
        if path.as_os_str().is_empty() {
            return None;
        }
        if let Some(d) = path.parent() {
            let _ = std::fs::create_dir_all(d);
        }
        let f = std::os::unix::fs::OpenOptionsExt::mode(
            std::fs::OpenOptions::new().create(true).append(true),
            0o600,
        )
        .open(path)
        .ok()?;
        Some(Sink {
            out: Mutex::new(Out::File(f)),
        })
    }

    /// Standard error, as text.
    pub fn stderr() -> Sink {
        Sink {
            out: Mutex::new(Out::Stderr),
        }
    }

    /// Whether lines go to a file (as JSON).
    pub fn is_file(&self) -> bool {
        matches!(*self.lock(), Out::File(_))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write `line` (which ends with its newline) whole. A log that cannot
    /// be written loses the line, nothing else.
    pub fn write_line(&self, line: &[u8]) {
        match &mut *self.lock() {
            Out::File(f) => {
                let _ = f.write_all(line);
            }
            Out::Stderr => {
                let _ = std::io::stderr().lock().write_all(line);
            }
        }
    }

    /// Write one event: `message` and `fields` (a struct whose fields
    /// serialize in order) at `level` for `target`.
    pub fn event<F: Serialize>(&self, level: Level, target: &str, message: &str, fields: &F) {
        let now = SystemTime::now();
        let line = if self.is_file() {
            json_line(now, level, target, message, fields)
        } else {
            text_line(now, level, target, message, fields)
        };
        self.write_line(line.as_bytes());
    }
}

/// Make `sink` this process's; the first one installed stays.
pub fn install(sink: Sink) -> &'static Sink {
    let _ = SINK.set(sink);
    SINK.get().expect("set above")
}

/// This process's sink, if one was installed.
pub fn sink() -> Option<&'static Sink> {
    SINK.get()
}

/// Write one event through this process's sink, if it has one and
/// `tracing`'s filter lets `level` for `target` through (the caller asks
/// it: `tracing::enabled!` needs the target as a constant).
pub fn event<F: Serialize>(enabled: bool, level: Level, target: &str, message: &str, fields: &F) {
    if let (true, Some(s)) = (enabled, sink()) {
        s.event(level, target, message, fields);
    }
}

/// A `tracing` subscriber for a process that must start fast (the thin
/// hook): every enabled event becomes one line through this process's
/// [`Sink`], in the same shape the CLI's `tracing-subscriber` writes, so
/// one log file reads the same whichever binary wrote it. It filters by
/// level only: `PRIVY_LOG` is read as a bare level (`debug`), and any
/// other directive (`privy=debug`) means the default, `info`. Spans are
/// not recorded (the hook opens none). `tracing-subscriber` itself, with
/// its env filter, would double the hook's start-up work (relocations and
/// page faults: docs/design.md, "the thin hook").
#[derive(Debug)]
pub struct LineSubscriber {
    max: tracing::Level,
}

impl LineSubscriber {
    /// Filtering at `PRIVY_LOG`'s level, `default` when it names none.
    pub fn from_env(default: tracing::Level) -> Self {
        let max = std::env::var(crate::contract::ENV_LOG)
            .ok()
            .and_then(|v| v.trim().parse::<tracing::Level>().ok())
            .unwrap_or(default);
        LineSubscriber { max }
    }

    /// Make this the process's subscriber (the first one set stays).
    pub fn install(self) {
        let _ = tracing::subscriber::set_global_default(self);
    }
}

#[derive(Default)]
struct Collect {
    message: String,
    fields: serde_json::Map<String, serde_json::Value>,
}

impl tracing::field::Visit for Collect {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let v = format!("{value:?}");
        if field.name() == "message" {
            self.message = v;
        } else {
            self.fields.insert(field.name().into(), v.into());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.message = value.into();
        } else {
            self.fields.insert(field.name().into(), value.into());
        }
    }
    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.fields.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.fields.insert(field.name().into(), value.into());
    }
}

impl tracing::Subscriber for LineSubscriber {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        metadata.level() <= &self.max
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::from_level(self.max))
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let Some(sink) = sink() else { return };
        let mut c = Collect::default();
        event.record(&mut c);
        let m = event.metadata();
        let level = match *m.level() {
            tracing::Level::ERROR => Level::Error,
            tracing::Level::WARN => Level::Warn,
            tracing::Level::INFO => Level::Info,
            tracing::Level::DEBUG => Level::Debug,
            tracing::Level::TRACE => Level::Trace,
        };
        sink.event(level, m.target(), &c.message, &c.fields);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

/// A log level, as the lines spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

#[derive(Serialize)]
struct JsonLine<'a, F: Serialize> {
    timestamp: String,
    level: &'a str,
    fields: Fields<'a, F>,
    target: &'a str,
}

#[derive(Serialize)]
struct Fields<'a, F: Serialize> {
    message: &'a str,
    #[serde(flatten)]
    rest: &'a F,
}

fn json_line<F: Serialize>(
    now: SystemTime,
    level: Level,
    target: &str,
    message: &str,
    fields: &F,
) -> String {
    let mut line = serde_json::to_string(&JsonLine {
        timestamp: rfc3339_micros(now),
        level: level.as_str(),
        fields: Fields {
            message,
            rest: fields,
        },
        target,
    })
    .expect("log fields serialize");
    line.push('\n');
    line
}

/// `TIMESTAMP  LEVEL target: message key=value ...`, as `tracing`'s text
/// formatter writes it; strings quoted, anything else as compact JSON.
fn text_line<F: Serialize>(
    now: SystemTime,
    level: Level,
    target: &str,
    message: &str,
    fields: &F,
) -> String {
    let mut line = format!(
        "{} {:>5} {target}: {message}",
        rfc3339_micros(now),
        level.as_str()
    );
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(fields) {
        for (k, v) in map {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    line.push('\n');
    line
}

/// `2026-12-02T04:39:35.804991Z`: UTC, microseconds.
pub fn rfc3339_micros(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// `2026-12-02T04:39:35Z`: unix second `secs`, UTC (an expiry, as shown
/// to operators).
pub fn rfc3339_seconds(secs: u64) -> String {
    let micros = rfc3339_micros(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    format!("{}Z", &micros[..micros.len() - 8])
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_with_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(1_796_186_375_804_991);
        assert_eq!(rfc3339_micros(t), "2026-12-02T04:39:35.804991Z");
        assert_eq!(rfc3339_micros(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&rfc3339_micros(leap)[..10], "2000-02-29");
        assert_eq!(rfc3339_seconds(1_796_186_375), "2026-12-02T04:39:35Z");
    }

    #[derive(Serialize)]
    struct F<'a> {
        container: &'a str,
        injection: serde_json::Value,
        total_us: u64,
    }

    #[test]
    fn a_json_line_nests_objects_and_keeps_the_key_order() {
        let f = F {
            container: "c1",
            injection: serde_json::json!({"count": 1, "files": [{"path": "a"}]}),
            total_us: 7,
        };
        let line = json_line(UNIX_EPOCH, Level::Info, "privy::audit", "injected", &f);
        assert_eq!(
            line,
            "{\"timestamp\":\"1970-01-01T00:00:00.000000Z\",\"level\":\"INFO\",\"fields\":{\"message\":\"injected\",\"container\":\"c1\",\"injection\":{\"count\":1,\"files\":[{\"path\":\"a\"}]},\"total_us\":7},\"target\":\"privy::audit\"}\n"
        );
        let text = text_line(UNIX_EPOCH, Level::Info, "privy::audit", "injected", &f);
        assert!(
            text.starts_with(
                "1970-01-01T00:00:00.000000Z  INFO privy::audit: injected container=\"c1\""
            ),
            "{text}"
        );
        assert!(text.ends_with("total_us=7\n"), "{text}");
    }
}
