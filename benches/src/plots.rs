//! SVG plots of a run (plotters): latency CDFs per transport for the unary c=1 and c=32
//! scenarios, and grouped bars (median with min–max whiskers) for throughput and unary rates.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::path::NetPath;
use crate::results::ScenarioResult;
use crate::stats::Summary;
use crate::target::Wire;

const SIZE: (u32, u32) = (900, 520);

fn color(wire: Wire) -> RGBColor {
    match wire {
        Wire::H2 => RGBColor(0x1f, 0x77, 0xb4),
        Wire::H3 => RGBColor(0xd6, 0x27, 0x28),
        Wire::Peer => RGBColor(0x2c, 0xa0, 0x2c),
        Wire::PeerClient => RGBColor(0x94, 0x67, 0xbd),
    }
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e}")
}

/// Writes every plot the results allow into `dir`, one set per network path (file names start
/// with the path); returns the file names written.
pub fn write_all(dir: &Path, all: &[ScenarioResult]) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    for path in NetPath::ALL {
        let results: Vec<&ScenarioResult> = all.iter().filter(|r| r.path == path).collect();
        if !results.is_empty() {
            written.extend(write_path(dir, path, &results)?);
        }
    }
    Ok(written)
}

fn write_path(
    dir: &Path,
    path: NetPath,
    results: &[&ScenarioResult],
) -> anyhow::Result<Vec<String>> {
    let mut written = Vec::new();
    for name in ["unary-64b-c1", "unary-64b-c32"] {
        if let Some(r) = results.iter().find(|r| r.name == name) {
            let file = format!("{path}-latency-cdf-{name}.svg");
            if latency_cdf(&dir.join(&file), r)? {
                written.push(file);
            }
        }
    }
    let groups = |names: &[&str], metric: &str| -> Vec<(String, Vec<(Wire, Summary)>)> {
        names
            .iter()
            .filter_map(|n| results.iter().find(|r| r.name == *n))
            .map(|r| {
                let bars = r
                    .transports
                    .iter()
                    .filter_map(|t| t.summary.get(metric).map(|s| (t.wire, *s)))
                    .collect();
                (r.name.to_string(), bars)
            })
            .filter(|(_, bars): &(String, Vec<_>)| !bars.is_empty())
            .collect()
    };
    let throughput = groups(&["transfer-small", "stream-64k", "push"], "gbit_s");
    if !throughput.is_empty() {
        let file = format!("{path}-throughput.svg");
        bars(
            &dir.join(&file),
            &format!("Streaming throughput, {} (median, min–max)", path.title()),
            "Gbit/s",
            &throughput,
        )?;
        written.push(file);
    }
    let rates = groups(
        &[
            "unary-64b-c1",
            "unary-64b-c32",
            "unary-64b-c256",
            "unary-64k-c32",
        ],
        "rate",
    );
    if !rates.is_empty() {
        let file = format!("{path}-unary-rate.svg");
        bars(
            &dir.join(&file),
            &format!("Unary call rate, {} (median, min–max)", path.title()),
            "calls/s",
            &rates,
        )?;
        written.push(file);
    }
    Ok(written)
}

/// CDF of per-call latency, one line per transport, log-scaled latency axis. False when the
/// scenario has no latency data.
fn latency_cdf(path: &Path, result: &ScenarioResult) -> anyhow::Result<bool> {
    let series: Vec<(Wire, &[(f64, f64)])> = result
        .transports
        .iter()
        .filter_map(|t| t.latency.as_ref().map(|l| (t.wire, l.cdf.as_slice())))
        .filter(|(_, cdf)| !cdf.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(false);
    }
    let points = series.iter().flat_map(|(_, c)| c.iter().map(|p| p.0));
    let lo = points.clone().fold(f64::INFINITY, f64::min).max(0.1);
    let hi = points.fold(0.0, f64::max).max(lo * 2.0);
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("Latency CDF, {}", result.name), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d((lo * 0.9..hi * 1.1).log_scale(), 0.0..1.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("latency per call (µs, log scale)")
        .y_desc("fraction of calls ≤ x")
        .x_label_formatter(&|v| crate::report::num(*v))
        .draw()
        .map_err(plot_err)?;
    for (wire, cdf) in series {
        let c = color(wire);
        chart
            .draw_series(LineSeries::new(cdf.iter().copied(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(wire.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(true)
}

/// Grouped bars: one group per scenario, one bar per transport (median) with a min–max whisker.
fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    groups: &[(String, Vec<(Wire, Summary)>)],
) -> anyhow::Result<()> {
    let top = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, s)| s.max))
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.2;
    let n = groups.len() as f64;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y_desc)
        .y_label_formatter(&|v| crate::report::num(*v))
        .draw()
        .map_err(plot_err)?;
    for wire in Wire::ALL {
        let c = color(wire);
        let mut rects = Vec::new();
        let mut whiskers = Vec::new();
        for (g, (_, bars)) in groups.iter().enumerate() {
            let Some(i) = bars.iter().position(|(w, _)| *w == wire) else {
                continue;
            };
            let s = bars[i].1;
            let width = 0.8 / bars.len() as f64;
            let x0 = g as f64 + 0.1 + i as f64 * width;
            let mid = x0 + width / 2.0;
            rects.push(Rectangle::new(
                [(x0 + width * 0.05, 0.0), (x0 + width * 0.95, s.median)],
                c.filled(),
            ));
            whiskers.push(PathElement::new(
                vec![(mid, s.min), (mid, s.max)],
                BLACK.stroke_width(2),
            ));
        }
        if rects.is_empty() {
            continue;
        }
        chart
            .draw_series(rects)
            .map_err(plot_err)?
            .label(wire.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled()));
        chart.draw_series(whiskers).map_err(plot_err)?;
    }
    // Group names go under the axis, centred below their bars (in pixels of the whole image).
    let label_style = TextStyle::from(("sans-serif", 16)).pos(Pos::new(HPos::Center, VPos::Top));
    for (g, (name, _)) in groups.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(g as f64 + 0.5, 0.0));
        root.draw(&Text::new(name.clone(), (x, y + 10), label_style.clone()))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Line chart of named series of (x, y) points, with markers (netlab grids have few points).
pub fn lines(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0xe3, 0x77, 0xc2),
        RGBColor(0x17, 0xbe, 0xcf),
    ];
    let all = series.iter().flat_map(|(_, s)| s.iter().copied());
    let x_hi = all.clone().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.05;
    let y_hi = all.map(|p| p.1).fold(0.0, f64::max).max(f64::MIN_POSITIVE) * 1.15;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_hi, 0.0..y_hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(&|v| crate::report::num(*v))
        .draw()
        .map_err(plot_err)?;
    for (i, (name, points)) in series.iter().enumerate() {
        let c = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::results::TransportResult;
    use crate::scenarios::CATALOGUE;
    use crate::stats::LatencyDist;

    #[test]
    fn writes_cdf_and_bar_svgs() {
        let mut h = crate::load::latency_histogram().unwrap();
        for v in 1..500u64 {
            h.record(20_000 + v * 100).unwrap();
        }
        let dist = LatencyDist::of(&h).unwrap();
        let make = |name: &str| {
            let def = CATALOGUE.iter().find(|d| d.name == name).unwrap();
            let transports = Wire::ALL
                .into_iter()
                .map(|wire| TransportResult {
                    wire,
                    samples: Vec::new(),
                    summary: [("rate", Summary::of(&[1000.0, 1200.0]).unwrap())]
                        .into_iter()
                        .collect(),
                    latency: Some(dist.clone()),
                    error: None,
                })
                .collect();
            ScenarioResult::new(def, NetPath::Loopback, transports)
        };
        let results = vec![make("unary-64b-c1"), make("unary-64b-c32")];
        let dir = tempfile::tempdir().unwrap();
        let files = write_all(dir.path(), &results).unwrap();
        assert_eq!(
            files,
            [
                "loopback-latency-cdf-unary-64b-c1.svg",
                "loopback-latency-cdf-unary-64b-c32.svg",
                "loopback-unary-rate.svg"
            ]
        );
        let svg = std::fs::read_to_string(dir.path().join("loopback-unary-rate.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("tonic-h3") && svg.contains("unary-64b-c32"));
    }
}
