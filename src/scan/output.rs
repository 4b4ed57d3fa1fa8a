//! Rendering a [`Report`]: text for people, JSON, and SARIF 2.1.0 for CI
//! code scanning (GitHub accepts it as uploaded). None of them can contain
//! secret bytes: a report holds names, places and lengths only.
//!
//! Names come from the image (tar and zip entries, JSON keys, labels) and
//! are escaped where they are read (`shown::escaped_bytes`); the target and
//! secret names the caller gave are escaped here. No format can carry a
//! control character or a bidi override to a terminal: text escapes them,
//! and JSON and SARIF spell any that remain as `\uXXXX` (the same JSON
//! value, parsed).

use super::{Finding, Report, Section};
use crate::shown::{escaped, is_unsafe};
use serde_json::{json, Value};
use std::borrow::Cow;
use std::fmt::Write;

/// `s` with unsafe characters (controls, bidi overrides) escaped but
/// backslashes kept: for lines built from names that are escaped already.
fn safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(
        s.chars()
            .map(|c| {
                if is_unsafe(c) {
                    format!("\\u{{{:x}}}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// JSON text with every unsafe character written as a `\uXXXX` escape
/// (serde_json leaves DEL, C1 controls and bidi overrides raw). A raw
/// newline is the pretty printer's own (serde escapes those in strings).
fn json_safe(text: String) -> String {
    let bad = |c: char| c != '\n' && is_unsafe(c);
    if !text.chars().any(bad) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if bad(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn size(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// Where a finding is, for people: `layer sha256:… path` or
/// `config sha256:… /history/2/created_by`.
pub fn place(f: &Finding) -> String {
    let what = match f.section {
        Section::Layer => "layer",
        Section::Config => "config",
        Section::History => "history in config",
        Section::Manifest => "manifest",
    };
    let path = if f.path.is_empty() {
        "(whole blob)"
    } else {
        &f.path
    };
    format!("{what} {} {}", safe(&f.layer), safe(path))
}

/// Human-readable report.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    let summary = format!(
        "{} layer(s), {} scanned, {} secret(s), min-match {}",
        r.layers,
        size(r.bytes),
        r.secrets.len(),
        r.min_match
    );
    for f in &r.findings {
        let _ = writeln!(
            s,
            "LEAK {}: secret \"{}\" as {} ({} bytes at offset {})",
            place(f),
            escaped(&f.source).replace('"', "\\\""),
            f.kind_label(),
            f.length,
            f.offset
        );
    }
    for i in &r.incomplete {
        let _ = writeln!(s, "INCOMPLETE {}", safe(i));
    }
    let verdict = if !r.findings.is_empty() {
        format!("{} leak(s) found", r.findings.len())
    } else if !r.incomplete.is_empty() {
        "NOT proven clean: parts could not be scanned".to_string()
    } else {
        "clean".to_string()
    };
    let _ = writeln!(s, "{}: {verdict} ({summary})", escaped(&r.target));
    s
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "target": f.target,
        "layer": f.layer,
        "section": f.section,
        "path": f.path,
        "offset": f.offset,
        "source": f.source,
        "kind": f.kind,
        "compressed": f.compressed,
        "match": f.kind_label(),
        "codec": f.codec,
        "length": f.length,
    })
}

/// Machine-readable report.
pub fn json(r: &Report) -> String {
    let v = json!({
        "target": r.target,
        "clean": r.is_clean(),
        "exit_code": r.exit_code(),
        "layers": r.layers,
        "bytes": r.bytes,
        "min_match": r.min_match,
        "secrets": r.secrets,
        "incomplete": r.incomplete,
        "findings": r.findings.iter().map(finding_json).collect::<Vec<_>>(),
    });
    json_safe(serde_json::to_string_pretty(&v).expect("report serializes"))
}

/// A relative URI reference for a path: unreserved bytes, `/` and `!`
/// kept, everything else percent-encoded.
fn uri_path(p: &str) -> String {
    let mut s = String::with_capacity(p.len());
    for &b in p.trim_start_matches("./").as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

fn fingerprint(f: &Finding) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [
        f.layer.as_str(),
        f.path.as_str(),
        f.source.as_str(),
        f.kind.as_str(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// SARIF 2.1.0 log with one rule (`privy/leak`) and one result per finding.
pub fn sarif(r: &Report) -> String {
    let results: Vec<Value> = r
        .findings
        .iter()
        .map(|f| {
            let uri = match f.section {
                Section::Layer if !f.path.is_empty() => uri_path(&f.path),
                Section::Layer => "layer-blob".to_string(),
                Section::Config | Section::History => "image-config.json".to_string(),
                Section::Manifest => "image-manifest.json".to_string(),
            };
            json!({
                "ruleId": "privy/leak",
                "ruleIndex": 0,
                "level": "error",
                "message": {"text": format!(
                    "Private file \"{}\" found in the image ({}, {} bytes at offset {}) in {}",
                    escaped(&f.source), f.kind_label(), f.length, f.offset, place(f)
                )},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri},
                        "region": {"startLine": 1, "byteOffset": f.offset, "byteLength": f.length}
                    },
                    "logicalLocations": [{"name": f.layer, "kind": "module"}]
                }],
                "partialFingerprints": {"privyLeak/v1": fingerprint(f)},
                "properties": {
                    "target": f.target, "layer": f.layer, "section": f.section,
                    "path": f.path, "source": f.source, "kind": f.kind,
                    "compressed": f.compressed
                }
            })
        })
        .collect();
    let notes: Vec<Value> = r
        .incomplete
        .iter()
        .map(|i| json!({"level": "error", "message": {"text": safe(i)}}))
        .collect();
    let v = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "privy",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/privy/privy",
                "rules": [{
                    "id": "privy/leak",
                    "name": "PrivateFileInImage",
                    "shortDescription": {"text": "A private file's content is in the image"},
                    "fullDescription": {"text": "Bytes of a private file (whole, a substring of at least min-match bytes, or its base64/base64url/hex encoding, possibly inside a gzip file) were found in an image layer, its config or its history."},
                    "help": {"text": "Remove the step that copies or prints the private file; read it from /run/private during RUN steps instead of COPY, ARG or ENV."},
                    "defaultConfiguration": {"level": "error"},
                    "properties": {"tags": ["security", "secret"], "security-severity": "9.0"}
                }]
            }},
            "invocations": [{
                "executionSuccessful": r.incomplete.is_empty(),
                "toolExecutionNotifications": notes
            }],
            "automationDetails": {"id": format!("privy-scan/{}", escaped(&r.target))},
            "results": results
        }]
    });
    json_safe(serde_json::to_string_pretty(&v).expect("report serializes"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sarif_uris_are_percent_encoded_relative_paths() {
        assert_eq!(
            super::uri_path("./a b/c%d.tar.gz!/k"),
            "a%20b/c%25d.tar.gz!/k"
        );
    }
}
