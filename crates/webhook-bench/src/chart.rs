//! The chart of the report, as a hand-written SVG: grouped bars in panels, one under the other.
//! A few dozen lines here keep a plotting library (and its crates) out of every build.

use std::fmt::Write as _;

use crate::results::Results;
use crate::webhookd::Backend;

#[derive(Debug, Clone)]
pub(crate) struct Panel {
    pub(crate) title: String,
    /// A logarithmic value axis (for latencies that span decades).
    pub(crate) log: bool,
    /// Series names and colours; each group has one value per series.
    pub(crate) series: Vec<(String, &'static str)>,
    pub(crate) groups: Vec<(String, Vec<Option<f64>>)>,
}

const WIDTH: f64 = 960.0;
const PANEL_HEIGHT: f64 = 320.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
/// Within a panel: the title, then the plot, then the group labels.
const PLOT_TOP: f64 = 50.0;
const PLOT_HEIGHT: f64 = 220.0;

/// The panels, stacked, as one SVG document.
pub(crate) fn svg(panels: &[Panel]) -> String {
    let height = PANEL_HEIGHT * panels.len() as f64;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
         viewBox=\"0 0 {WIDTH} {height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    for (n, panel) in panels.iter().enumerate() {
        draw_panel(&mut out, panel, n as f64 * PANEL_HEIGHT);
    }
    out.push_str("</svg>\n");
    out
}

fn draw_panel(out: &mut String, panel: &Panel, top: f64) {
    let plot_width = WIDTH - LEFT - RIGHT;
    let bottom = top + PLOT_TOP + PLOT_HEIGHT;
    let values = panel.groups.iter().flat_map(|(_, v)| v.iter().flatten());
    let max = values.clone().fold(0.0_f64, |a, &b| a.max(b));
    let min_positive = values
        .filter(|v| **v > 0.0)
        .fold(f64::MAX, |a, &b| a.min(b));
    let scale = Scale::new(panel.log, min_positive, max);
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\" font-size=\"15\" font-weight=\"bold\">{}</text>",
        top + 24.0,
        escape(&panel.title)
    );
    // Legend, right-aligned on the title line.
    for (n, (name, colour)) in panel.series.iter().rev().enumerate() {
        let x = WIDTH - RIGHT - 110.0 * (n as f64 + 1.0);
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            top + 14.0,
            x + 16.0,
            top + 24.0,
            escape(name)
        );
    }
    for (value, label) in scale.ticks() {
        let y = bottom - scale.height(value);
        let _ = writeln!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"#555\">{label}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let group_width = plot_width / panel.groups.len().max(1) as f64;
    let bar_width = group_width * 0.8 / panel.series.len().max(1) as f64;
    for (g, (label, values)) in panel.groups.iter().enumerate() {
        let group_left = LEFT + g as f64 * group_width + group_width * 0.1;
        for (s, value) in values.iter().enumerate() {
            let x = group_left + s as f64 * bar_width;
            let colour = panel.series.get(s).map_or("#999", |(_, c)| c);
            let centre = x + bar_width / 2.0;
            match value {
                Some(v) => {
                    let h = scale.height(*v);
                    let _ = writeln!(
                        out,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" \
                         fill=\"{colour}\"/><text x=\"{centre:.1}\" y=\"{:.1}\" \
                         text-anchor=\"middle\" font-size=\"10\">{}</text>",
                        bottom - h,
                        bar_width - 2.0,
                        bottom - h - 3.0,
                        short(*v)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" \
                         font-size=\"10\" fill=\"#999\">n/a</text>",
                        bottom - 3.0
                    );
                }
            }
        }
        // A label may have several lines, one under the other.
        for (n, line) in label.lines().enumerate() {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
                LEFT + (g as f64 + 0.5) * group_width,
                bottom + 16.0 + 13.0 * n as f64,
                escape(line)
            );
        }
    }
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{bottom}\" y2=\"{bottom}\" stroke=\"#333\"/>",
        WIDTH - RIGHT
    );
}

/// Values to bar heights: linear from 0 to a round maximum, or by decades.
#[derive(Debug)]
struct Scale {
    log: bool,
    low: f64,
    high: f64,
}

impl Scale {
    fn new(log: bool, min_positive: f64, max: f64) -> Self {
        if log {
            let low = if min_positive < f64::MAX {
                min_positive.log10().floor()
            } else {
                0.0
            };
            let high = max.max(1e-9).log10().ceil().max(low + 1.0);
            Self { log, low, high }
        } else {
            Self {
                log,
                low: 0.0,
                high: round_up(max),
            }
        }
    }

    fn height(&self, value: f64) -> f64 {
        let fraction = if self.log {
            // A bar below the lowest decade still shows as a sliver.
            (value.max(1e-12).log10() - self.low) / (self.high - self.low)
        } else {
            value / self.high
        };
        fraction.clamp(0.0, 1.0) * PLOT_HEIGHT
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            (self.low as i32..=self.high as i32)
                .map(|e| {
                    let v = 10f64.powi(e);
                    (v, short(v))
                })
                .collect()
        } else {
            (0..=4)
                .map(|n| {
                    let v = self.high * f64::from(n) / 4.0;
                    (v, short(v))
                })
                .collect()
        }
    }
}

/// The smallest of 1, 2, 2.5 or 5 times a power of ten at or above `value` (1 for 0).
fn round_up(value: f64) -> f64 {
    if value <= 0.0 {
        return 1.0;
    }
    let decade = 10f64.powf(value.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * decade)
        .find(|&v| v >= value)
        .unwrap_or(10.0 * decade)
}

/// A compact label: `12.3k`, `10k`, `850`, `24.8`, `10`, `2.5`, `0.42`.
fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", trim_point_zero(format!("{:.1}", v / 1000.0)))
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        trim_point_zero(format!("{v:.1}"))
    } else if v >= 0.0995 || v == 0.0 {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        format!("{v:.3}")
    }
}

fn trim_point_zero(text: String) -> String {
    if let Some(trimmed) = text.strip_suffix(".0") {
        return trimmed.to_owned();
    }
    text
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

const BACKENDS: [(Backend, &str); 2] =
    [(Backend::Sqlite, "#4e79a7"), (Backend::Postgres, "#f28e2b")];

/// The report's chart: deliveries per second by scenario and backend (with the lower ceiling),
/// and p50 and p99 latency by scenario and backend.
pub(crate) fn benchmark_chart(results: &Results) -> String {
    let ids = results.scenario_ids();
    let rate = |id: &str, backend: Backend| {
        results
            .scenarios
            .iter()
            .find(|s| s.id == id && s.backend == backend)
            .and_then(|s| s.delivery_per_s)
    };
    let mut groups: Vec<(String, Vec<Option<f64>>)> = ids
        .iter()
        .filter(|id| !id.starts_with("S4"))
        .map(|id| {
            (
                (*id).to_owned(),
                BACKENDS.iter().map(|&(b, _)| rate(id, b)).collect(),
            )
        })
        .collect();
    groups.push((
        "lower ceiling".to_owned(),
        BACKENDS
            .iter()
            .map(|&(b, _)| results.ceilings.lower(b))
            .collect(),
    ));
    let throughput = Panel {
        title: "Delivery throughput (deliveries/s; S3 is paced, S4 omitted)".to_owned(),
        log: false,
        series: BACKENDS
            .iter()
            .map(|&(b, c)| (b.name().to_owned(), c))
            .collect(),
        groups,
    };
    let latency = Panel {
        title: "End-to-end latency, publish start to receipt (ms, log scale)".to_owned(),
        log: true,
        series: vec![("p50".to_owned(), "#59a14f"), ("p99".to_owned(), "#e15759")],
        groups: BACKENDS
            .iter()
            .flat_map(|&(backend, _)| {
                ids.iter().filter_map(move |id| {
                    let s = results
                        .scenarios
                        .iter()
                        .find(|s| s.id == *id && s.backend == backend)?;
                    let l = s.latency?;
                    Some((
                        format!("{id}\n{}", backend.name()),
                        vec![Some(l.p50_ms), Some(l.p99_ms)],
                    ))
                })
            })
            .collect(),
    };
    svg(&[throughput, latency])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_maxima_and_short_labels() {
        assert_eq!(round_up(0.0), 1.0);
        assert_eq!(round_up(7.0), 10.0);
        assert_eq!(round_up(18_000.0), 20_000.0);
        assert_eq!(round_up(2_100.0), 2_500.0);
        assert_eq!(short(23_456.0), "23.5k");
        assert_eq!(short(10_000.0), "10k");
        assert_eq!(short(10.0), "10");
        assert_eq!(short(850.4), "850");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(1.0), "1");
        assert_eq!(short(0.042), "0.042");
    }

    #[test]
    fn a_panel_draws_one_bar_per_value_and_marks_missing_ones() {
        let panel = Panel {
            title: "Rates <per s> & more".to_owned(),
            log: false,
            series: vec![("a".to_owned(), "#111"), ("b".to_owned(), "#222")],
            groups: vec![
                ("S1".to_owned(), vec![Some(100.0), Some(50.0)]),
                ("S2".to_owned(), vec![Some(200.0), None]),
            ],
        };
        let svg = svg(&[panel]);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        // The background, two legend swatches and three bars.
        assert_eq!(svg.matches("<rect").count(), 1 + 2 + 3);
        assert_eq!(svg.matches(">n/a<").count(), 1);
        assert!(svg.contains("Rates &lt;per s&gt; &amp; more"));
        // The tallest bar fills the plot: 200 on a scale to 200.
        assert!(svg.contains(&format!("height=\"{PLOT_HEIGHT:.1}\"")));
    }

    #[test]
    fn a_log_scale_spans_whole_decades() {
        let scale = Scale::new(true, 0.4, 250.0);
        let ticks: Vec<String> = scale.ticks().into_iter().map(|(_, l)| l).collect();
        assert_eq!(ticks, ["0.1", "1", "10", "100", "1000"]);
        assert!((scale.height(1000.0) - PLOT_HEIGHT).abs() < 1e-9);
        assert!(scale.height(0.1).abs() < 1e-9);
    }
}
