//! Human-readable output of a run: the terminal table (headline metrics, median ± spread, ratios)
//! and `report.md` (every metric with min–max, notes, errors, goals, plots, run context).

use std::fmt::Write as _;

use crate::goals;
use crate::path::NetPath;
use crate::results::{RunResults, ScenarioResult};
use crate::scenarios::{Better, MetricSpec};
use crate::stats::{Ratio, Summary};
use crate::target::Wire;

/// A number with precision that suits its size (`12,345`, `123`, `12.3`, `1.23`, `0.123`).
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "—".to_string();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".to_string()
    } else if a >= 10_000.0 {
        group_thousands(v.round() as i64)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn arrow(m: &MetricSpec) -> &'static str {
    match m.better {
        Better::Higher => " ↑",
        Better::Lower => " ↓",
        Better::Neither => "",
    }
}

/// A ratio and the range of its paired repetitions, or `—`.
pub fn ratio_text(r: Option<Ratio>) -> String {
    r.map_or_else(|| "—".to_string(), |r| r.text())
}

/// `median ±spread%` for the terminal.
fn short_cell(s: &Summary) -> String {
    if s.n > 1 {
        format!("{} ±{:.0}%", num(s.median), s.spread_pct())
    } else {
        num(s.median)
    }
}

/// `median (min–max)` for report.md.
fn long_cell(s: &Summary) -> String {
    if s.n > 1 {
        format!("{} ({}–{})", num(s.median), num(s.min), num(s.max))
    } else {
        num(s.median)
    }
}

fn cell(result: &ScenarioResult, wire: Wire, key: &str, long: bool) -> String {
    match result.transport(wire) {
        None => "not run".to_string(),
        Some(t) => match t.summary.get(key) {
            Some(s) if long => long_cell(s),
            Some(s) => short_cell(s),
            None if t.error.is_some() => "error".to_string(),
            None => "—".to_string(),
        },
    }
}

fn wires(run: &RunResults) -> Vec<Wire> {
    run.wires.iter().map(|w| w.wire).collect()
}

/// Rows of plain text laid out in left-aligned columns.
pub fn layout(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, text) in row.iter().enumerate() {
            let pad = widths[c].saturating_sub(text.chars().count());
            line.push_str(text);
            line.extend(std::iter::repeat_n(' ', pad + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A table, header row first: aligned plain text, or Markdown (cells escaped so no `|` or line
/// break can end one early). Every report of zone-bench (run, netlab, soak, faults) writes its
/// tables with this.
pub fn table(rows: &[Vec<String>], markdown: bool) -> String {
    if !markdown {
        return layout(rows);
    }
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|c| md(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
        if i == 0 {
            let _ = writeln!(out, "|{}", "---|".repeat(row.len()));
        }
    }
    out
}

/// The terminal table: headline metrics of every scenario, then errors and goals.
pub fn terminal(run: &RunResults) -> String {
    let mut out = String::new();
    for path in NetPath::ALL {
        let results: Vec<&ScenarioResult> =
            run.scenarios.iter().filter(|r| r.path == path).collect();
        if !results.is_empty() {
            let _ = writeln!(out, "\n{}\n", path.title());
            out.push_str(&terminal_table(run, &results));
        }
    }
    out.push_str(
        "\nmedian ±half-range over the measured repetitions; ratios are of medians \
         (↑ higher is better, ↓ lower is better), in brackets the range of the ratios of the \
         repetitions paired round by round; tonic-h3>h3 is tonic-h3's client against our \
         server, its ratio is over tonic-h3 against its own server.\n",
    );
    let errors = error_lines(run);
    if !errors.is_empty() {
        out.push_str("\nerrors (recorded as results):\n");
        for e in errors {
            let _ = writeln!(out, "  {e}");
        }
    }
    if let Some(steal) = run.machine.steal_pct {
        let _ = writeln!(
            out,
            "\nCPU steal during the run: {steal:.1} % (the hypervisor running others on these \
             vCPUs slows every wire alike)"
        );
    }
    out.push_str("\ngoals (reported, not enforced):\n");
    for g in &run.goals {
        let _ = writeln!(out, "  {}", goals::line(g));
    }
    out
}

/// The ratio columns of every table: header and the value of one metric.
const RATIO_COLUMNS: [&str; 3] = ["h3/h2", "ours/tonic-h3", "tonic-h3 client: ours/theirs"];

fn ratio_cells(result: &ScenarioResult, key: &str) -> [String; 3] {
    let r = result.ratios.get(key).copied().unwrap_or_default();
    [
        ratio_text(r.h3_over_h2),
        ratio_text(r.ours_over_peer),
        ratio_text(r.peer_client_ours_over_peer),
    ]
}

/// The headline metrics of `results` (one path) as a plain-text table.
fn terminal_table(run: &RunResults, results: &[&ScenarioResult]) -> String {
    let wires = wires(run);
    let mut header = vec!["scenario".to_string(), "metric".to_string()];
    header.extend(wires.iter().map(|w| w.label().to_string()));
    header.extend(RATIO_COLUMNS.iter().map(|c| c.to_string()));
    let mut rows = vec![header];
    for result in results {
        let mut first = true;
        for m in result.metrics.iter().filter(|m| m.headline) {
            let mut row = vec![
                if first {
                    result.name.to_string()
                } else {
                    String::new()
                },
                format!("{}{}", m.label, arrow(m)),
            ];
            first = false;
            row.extend(wires.iter().map(|&w| cell(result, w, m.key, false)));
            row.extend(ratio_cells(result, m.key));
            rows.push(row);
        }
    }
    layout(&rows)
}

fn error_lines(run: &RunResults) -> Vec<String> {
    run.scenarios
        .iter()
        .flat_map(|r| {
            r.transports.iter().filter_map(move |t| {
                t.error
                    .as_ref()
                    .map(|e| format!("{} over {} ({}): {}", r.name, t.wire, r.path, one_line(e)))
            })
        })
        .collect()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Escapes the characters that would break a Markdown table cell.
fn md(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

/// `report.md`.
pub fn markdown(run: &RunResults, plots: &[String]) -> String {
    let wires = wires(run);
    let mut out = String::new();
    let _ = writeln!(out, "# zone-bench report\n");
    out.push_str(&run.machine.markdown_lines(run.git_commit.as_deref()));
    let s = &run.settings;
    let _ = writeln!(
        out,
        "- settings: {:?} profile, {} measured repetition(s) after {} warm-up round(s), \
         {:.2} s per case (max {} operations), zone of {} records",
        s.profile,
        s.reps,
        s.warmup_rounds,
        s.duration.as_secs_f64(),
        s.max_ops,
        s.zone_records
    );
    let _ = writeln!(out, "- command: `{}`", run.command_line.join(" "));
    let _ = writeln!(out, "- run time: {:.1} s\n", run.duration_s);
    let _ = writeln!(
        out,
        "Client and servers run in one process, over each network path below in turn; each \
         round runs every transport once (interleaved), warm-up rounds are discarded. Cells are \
         median (min–max) over the measured repetitions; ratios are of medians, in brackets \
         the range of the ratios of the repetitions paired round by round.\n"
    );
    for w in &run.wires {
        let _ = writeln!(out, "- **{}**: {}", w.wire, w.description);
    }
    out.push('\n');

    let _ = writeln!(out, "## Goals\n\nReported, never enforced.\n");
    for g in &run.goals {
        let _ = writeln!(out, "- {}", goals::line(g));
    }
    out.push('\n');

    for path in NetPath::ALL {
        let results: Vec<&ScenarioResult> =
            run.scenarios.iter().filter(|r| r.path == path).collect();
        if !results.is_empty() {
            let _ = writeln!(out, "## {}\n\n{}\n", path.title(), path.depends_on());
            markdown_scenarios(&mut out, &wires, &results);
        }
    }

    if !plots.is_empty() {
        let _ = writeln!(out, "## Plots\n");
        for p in plots {
            let _ = writeln!(out, "![{p}]({p})\n");
        }
    }
    out
}

/// One `###` section per scenario of one path.
fn markdown_scenarios(out: &mut String, wires: &[Wire], results: &[&ScenarioResult]) {
    for result in results {
        let _ = writeln!(
            out,
            "### {} ({})\n\n{}\n",
            result.name, result.path, result.description
        );
        let mut header = String::from("| metric |");
        let mut rule = String::from("|---|");
        for w in wires {
            let _ = write!(header, " {w} |");
            rule.push_str("---:|");
        }
        for c in RATIO_COLUMNS {
            let _ = write!(header, " {c} |");
            rule.push_str("---:|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for metric in result.metrics {
            let mut row = format!("| {}{} |", metric.label, arrow(metric));
            for &w in wires {
                let _ = write!(row, " {} |", cell(result, w, metric.key, true));
            }
            for r in ratio_cells(result, metric.key) {
                let _ = write!(row, " {r} |");
            }
            let _ = writeln!(out, "{row}");
        }
        out.push('\n');
        let latency: Vec<_> = result
            .transports
            .iter()
            .filter_map(|t| t.latency.as_ref().map(|l| (t.wire, l)))
            .collect();
        if !latency.is_empty() {
            let _ = writeln!(
                out,
                "Latency over all measured repetitions (µs): {}\n",
                latency
                    .iter()
                    .map(|(w, l)| format!(
                        "{w} p50 {} / p90 {} / p99 {} / p99.9 {} / max {} ({} calls)",
                        num(l.p50_us),
                        num(l.p90_us),
                        num(l.p99_us),
                        num(l.p999_us),
                        num(l.max_us),
                        l.count
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        for note in result.notes {
            let _ = writeln!(out, "- {}", md(note));
        }
        for t in &result.transports {
            if let Some(e) = &t.error {
                let _ = writeln!(
                    out,
                    "- **{} error** (recorded as the result): {}",
                    t.wire,
                    md(e)
                );
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_precision_by_size() {
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(12_345.0), "12,345");
        assert_eq!(num(-12_345.0), "-12,345");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(f64::NAN), "—");
    }

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["a".to_string(), "µs".to_string(), "x".to_string()],
            vec!["long".to_string(), "1".to_string(), "y".to_string()],
        ];
        assert_eq!(layout(&rows), "a     µs  x\nlong  1   y\n");
    }

    #[test]
    fn table_cells_cannot_break_markdown() {
        assert_eq!(md("a | b\n c"), "a \\| b c");
    }
}
