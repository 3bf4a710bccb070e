//! Result rows and their output, shared by every benchmark: a figure beside its ceiling and the
//! ratio ([`Row`]), the JSON written by `--json`/`--out`, the Markdown of `--md` and the table
//! printed otherwise.

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::PathBuf;

/// One result line.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) metric: String,
    pub(crate) value: f64,
    pub(crate) unit: String,
    pub(crate) ceiling_metric: Option<String>,
    pub(crate) ceiling: Option<f64>,
    pub(crate) ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) meets_target: Option<bool>,
}

impl Row {
    pub(crate) fn raw(metric: &str, value: f64, unit: &str, note: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            value,
            unit: unit.into(),
            ceiling_metric: None,
            ceiling: None,
            ratio: None,
            note: Some(note.into()),
            target: None,
            meets_target: None,
        }
    }

    pub(crate) fn against(
        metric: &str,
        value: f64,
        unit: &str,
        ceiling_metric: &str,
        ceiling: f64,
        note: impl Into<String>,
    ) -> Row {
        Row {
            metric: metric.into(),
            value,
            unit: unit.into(),
            ceiling_metric: Some(ceiling_metric.into()),
            ceiling: Some(ceiling),
            ratio: Some(value / ceiling),
            note: Some(note.into()),
            target: None,
            meets_target: None,
        }
    }

    pub(crate) fn target(mut self, text: &str, met: bool) -> Row {
        self.target = Some(text.into());
        self.meets_target = Some(met);
        self
    }
}

pub(crate) fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        let s = format!("{:.0}", v);
        // Thousands separators for readability.
        let (sign, digits) = s.split_at(usize::from(s.starts_with('-')));
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        format!("{sign}{out}")
    } else {
        format!("{v:.3}")
    }
}

pub(crate) fn print_table(rows: &[Row]) {
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.metric.clone(),
                num(r.value),
                r.unit.clone(),
                r.ceiling.map(num).unwrap_or_default(),
                r.ratio.map(|x| format!("{x:.3}")).unwrap_or_default(),
                match (&r.ceiling_metric, r.meets_target) {
                    (Some(m), Some(ok)) => {
                        format!(
                            "{m}  [target {}: {}]",
                            r.target.as_deref().unwrap_or(""),
                            if ok { "met" } else { "NOT met" }
                        )
                    }
                    (Some(m), None) => m.clone(),
                    (None, _) => String::new(),
                },
            ]
        })
        .collect();
    let head = [
        "metric",
        "value",
        "unit",
        "ceiling",
        "ratio",
        "ceiling metric",
    ];
    let mut w = head.map(str::len);
    for c in &cells {
        for (i, x) in c.iter().enumerate() {
            w[i] = w[i].max(x.chars().count());
        }
    }
    let head = head.map(String::from);
    for c in std::iter::once(&head).chain(&cells) {
        println!(
            "{:<w0$}  {:>w1$}  {:<w2$}  {:>w3$}  {:>w4$}  {}",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4]
        );
    }
    println!();
    for r in rows {
        if let Some(n) = &r.note {
            println!("{}: {n}", r.metric);
        }
    }
}

pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| metric | value | unit | ceiling | ratio | ceiling metric | target |\n|---|---:|---|---:|---:|---|---|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.metric,
            num(r.value),
            r.unit,
            r.ceiling.map(num).unwrap_or_default(),
            r.ratio.map(|x| format!("{x:.3}")).unwrap_or_default(),
            r.ceiling_metric.as_deref().unwrap_or(""),
            match (&r.target, r.meets_target) {
                (Some(t), Some(ok)) => format!("{t}: {}", if ok { "met" } else { "NOT met" }),
                _ => String::new(),
            }
        );
    }
    out
}

/// Writes `rows`: JSON to `out` and Markdown to `md` if given, then JSON (`--json`) or the table
/// on stdout. Every benchmark ends here.
pub(crate) fn emit(
    rows: &[Row],
    json: bool,
    out: Option<&PathBuf>,
    md: Option<&PathBuf>,
) -> Result<()> {
    let text = serde_json::to_string_pretty(rows)?;
    if let Some(path) = out {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = md {
        std::fs::write(path, markdown(rows))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        println!("{text}");
    } else {
        print_table(rows);
    }
    Ok(())
}

/// Load average (1 min) from /proc/loadavg.
pub(crate) fn loadavg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The `run.wall_seconds` row of a run that started at `started` and read the load average
/// before and after: "whole run including `what`; N cores; load average X before, Y after".
pub(crate) fn wall_row(
    started: std::time::Instant,
    what: &str,
    threads: usize,
    load_before: Option<f64>,
    load_after: Option<f64>,
) -> Row {
    let l = |x: Option<f64>| x.map(|l| format!("{l:.2}")).unwrap_or_default();
    Row::raw(
        "run.wall_seconds",
        started.elapsed().as_secs_f64(),
        "s",
        format!(
            "whole run including {what}; {threads} cores; load average {} before, {} after",
            l(load_before),
            l(load_after)
        ),
    )
}
