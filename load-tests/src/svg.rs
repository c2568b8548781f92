//! The run chart: four stacked panels over time (arrivals per second, concurrent sessions, queue
//! length, latency percentiles), drawn as plain SVG polylines so no plotting crate is needed.

use std::fmt::Write as _;

use crate::report::TimelinePoint;

const W: f64 = 900.0;
const PANEL_H: f64 = 150.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const GAP: f64 = 40.0;

struct Series<'a> {
    label: &'a str,
    color: &'a str,
    points: Vec<(f64, Option<f64>)>,
}

pub fn chart(title: &str, timeline: &[TimelinePoint]) -> String {
    let t_max = timeline.iter().map(|p| p.t_s).max().unwrap_or(0).max(1) as f64;
    let col = |f: &dyn Fn(&TimelinePoint) -> Option<f64>| -> Vec<(f64, Option<f64>)> {
        timeline.iter().map(|p| (p.t_s as f64, f(p))).collect()
    };
    let panels: Vec<(&str, Vec<Series>)> = vec![
        (
            "arrivals / s",
            vec![Series {
                label: "arrivals",
                color: "#1f77b4",
                points: col(&|p| Some(p.arrivals as f64)),
            }],
        ),
        (
            "concurrent sessions",
            vec![Series {
                label: "active",
                color: "#2ca02c",
                points: col(&|p| Some(p.active as f64)),
            }],
        ),
        (
            "queue length",
            vec![Series {
                label: "in queue",
                color: "#d62728",
                points: col(&|p| Some(p.in_queue as f64)),
            }],
        ),
        (
            "latency ms",
            vec![
                Series {
                    label: "greeting p50",
                    color: "#9467bd",
                    points: col(&|p| p.greeting_p50_ms),
                },
                Series {
                    label: "greeting p99",
                    color: "#ff7f0e",
                    points: col(&|p| p.greeting_p99_ms),
                },
                Series {
                    label: "bot answer p99",
                    color: "#17becf",
                    points: col(&|p| p.bot_answer_p99_ms),
                },
            ],
        ),
    ];
    let height = TOP + panels.len() as f64 * (PANEL_H + GAP) + 10.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    for (i, (name, series)) in panels.iter().enumerate() {
        let y0 = TOP + i as f64 * (PANEL_H + GAP);
        panel(&mut s, y0, t_max, name, series);
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, y0: f64, t_max: f64, name: &str, series: &[Series]) {
    let plot_w = W - LEFT - RIGHT;
    let v_max = series
        .iter()
        .flat_map(|se| se.points.iter().filter_map(|p| p.1))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let x = |t: f64| LEFT + t / t_max * plot_w;
    let y = |v: f64| y0 + PANEL_H - v / v_max * PANEL_H;
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{y0}" width="{plot_w}" height="{PANEL_H}" fill="none" stroke="#999"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#,
        y0 - 6.0,
        escape(name)
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
        LEFT - 4.0,
        y0 + 10.0,
        fmt(v_max)
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        y0 + PANEL_H
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">{} s</text>"#,
        W - RIGHT,
        y0 + PANEL_H + 13.0,
        t_max
    );
    let mut legend_x = LEFT + 150.0;
    for se in series {
        // Gaps (seconds without samples) split the line rather than dropping to zero.
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, s: &mut String| {
            if !run.is_empty() {
                let _ = writeln!(
                    s,
                    r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
                    se.color,
                    run.join(" ")
                );
                run.clear();
            }
        };
        for &(t, v) in &se.points {
            match v {
                Some(v) => run.push(format!("{:.1},{:.1}", x(t), y(v))),
                None => flush(&mut run, s),
            }
        }
        flush(&mut run, s);
        let _ = writeln!(
            s,
            r#"<text x="{legend_x}" y="{}" fill="{}">{}</text>"#,
            y0 - 6.0,
            se.color,
            escape(se.label)
        );
        legend_x += 110.0;
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_a_line_per_series_and_escapes_the_title() {
        let tl: Vec<TimelinePoint> = (0..5)
            .map(|t| TimelinePoint {
                t_s: t,
                arrivals: t * 10,
                active: t * 20,
                greeting_p50_ms: Some(1.0),
                greeting_p99_ms: if t == 2 { None } else { Some(3.0) },
                ..TimelinePoint::default()
            })
            .collect();
        let svg = chart("a<b", &tl);
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a&lt;b"));
        // arrivals, active, queue, greeting p50, greeting p99 split in two by the gap.
        assert_eq!(svg.matches("<polyline").count(), 6);
    }
}
