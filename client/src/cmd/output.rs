//! How commands print: one result on stdout (human text or `--json`), warnings on stderr.
//!
//! Only formatting lives here; nothing is fetched or verified.

use crate::cmd::fmt_time;
use serde_json::Value;
use std::io::Write as _;

pub fn out(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes());
    if !s.ends_with('\n') {
        let _ = o.write_all(b"\n");
    }
    let _ = o.flush();
}

pub fn out_json(v: &Value) {
    out(&serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn warn(s: &str) {
    let _ = writeln!(std::io::stderr(), "warning: {s}");
}

/// A plain indented rendering of a JSON value (times ending in `_at`/`time` get a UTC form).
pub fn human(v: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(m) => {
            let mut s = String::new();
            for (k, x) in m {
                match x {
                    Value::Object(_) | Value::Array(_) if !is_scalar_array(x) => {
                        s += &format!("{pad}{k}:\n{}", human(x, indent + 2));
                    }
                    _ => {
                        let mut line = scalar(x);
                        if let Some(n) = x.as_u64() {
                            if (k.ends_with("_at")
                                || k == "time"
                                || k == "deadline"
                                || k == "due"
                                || k.starts_with("not_"))
                                && n > 1_000_000_000_000
                            {
                                line = format!("{n} ({})", fmt_time(n));
                            }
                        }
                        s += &format!("{pad}{k}: {line}\n");
                    }
                }
            }
            s
        }
        Value::Array(a) => {
            let mut s = String::new();
            for (i, x) in a.iter().enumerate() {
                s += &format!("{pad}- [{i}]\n{}", human(x, indent + 2));
            }
            s
        }
        x => format!("{pad}{}\n", scalar(x)),
    }
}

fn is_scalar_array(v: &Value) -> bool {
    matches!(v, Value::Array(a) if a.iter().all(|x| !x.is_object() && !x.is_array()))
}

pub fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        Value::Array(a) => a.iter().map(scalar).collect::<Vec<_>>().join(", "),
        x => x.to_string(),
    }
}
