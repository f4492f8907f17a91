//! Line charts drawn on the server as SVG: the template only places numbers this module
//! computed, so no text from mail or logs ever reaches the drawing.

/// The drawing's size in SVG units; the browser scales it to the page.
pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 200.0;
/// Room for the value labels on the left and the time labels below.
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// One series to draw.
pub struct Series<'a> {
    pub name: &'static str,
    /// The CSS class that colours it (`received`, `delivered`, ...).
    pub class: &'static str,
    pub values: &'a [u64],
    /// A level (the queue length), not a count per minute: its legend shows the latest value,
    /// not a total.
    pub gauge: bool,
}

pub struct Line {
    pub name: &'static str,
    pub class: &'static str,
    /// The polyline's `points`: "x,y x,y ...".
    pub points: String,
    /// The series' total over the chart's window (saturating), or a gauge's latest value, as
    /// people read it.
    pub total_label: String,
    /// Its highest value.
    pub peak_label: String,
}

pub struct Tick {
    pub at: String,
    pub label: String,
    /// SVG text-anchor: labels at the plot's edges stay inside the drawing.
    pub anchor: &'static str,
}

/// A chart ready for the template.
pub struct Chart {
    /// The element id (`hour-messages`), for links and tests.
    pub id: &'static str,
    pub title: String,
    pub lines: Vec<Line>,
    /// The legend's heading over `total_label`: Total, or Now for gauges.
    pub total_heading: &'static str,
    /// Horizontal grid lines with their values.
    pub y_ticks: Vec<Tick>,
    /// Time labels along the bottom.
    pub x_ticks: Vec<Tick>,
    pub left: String,
    pub right: String,
    pub top: String,
    pub bottom: String,
    /// Where the value labels end (right-aligned) and where the time labels stand.
    pub label_x: String,
    pub time_y: String,
}

/// The smallest "round" number (1, 2 or 5 times a power of ten) at or above `max`, and at least
/// 1, so that a chart of zeros has a scale and nothing divides by zero. Near u64::MAX, where no
/// round number is left, `max` itself.
pub fn nice_max(max: u64) -> u64 {
    if max <= 1 {
        return 1;
    }
    let mut power: u64 = 1;
    loop {
        for step in [1u64, 2, 5] {
            match power.checked_mul(step) {
                Some(v) if v >= max => return v,
                Some(_) => {}
                None => return max,
            }
        }
        power = match power.checked_mul(10) {
            Some(p) => p,
            None => return max,
        };
    }
}

/// The x of point `i` of `n` across the plot: the first at the left edge, the last at the right;
/// a single point sits at the right edge (it is "now").
pub fn x_at(i: usize, n: usize) -> f64 {
    let w = WIDTH - LEFT - RIGHT;
    if n <= 1 {
        return LEFT + w;
    }
    LEFT + w * (i.min(n - 1) as f64) / ((n - 1) as f64)
}

/// The y of `v` on a scale from 0 to `max` (a `max` of 0 is taken as 1; values above it sit on
/// the top edge).
pub fn y_at(v: u64, max: u64) -> f64 {
    let h = HEIGHT - TOP - BOTTOM;
    let max = max.max(1);
    let frac = (v.min(max) as f64) / (max as f64);
    TOP + h - h * frac
}

fn num(v: f64) -> String {
    format!("{v:.1}")
}

/// A count as people read it: 1234567 → "1,234,567".
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Lays out `series` (all of the same length, one value per time slot) on one shared scale;
/// `labels` names some slots on the time axis (index, text).
pub fn chart(
    id: &'static str,
    title: impl Into<String>,
    series: &[Series<'_>],
    labels: &[(usize, String)],
) -> Chart {
    let n = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let peak = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(0);
    let max = nice_max(peak);
    let lines = series
        .iter()
        .map(|s| {
            let total = if s.gauge {
                s.values.last().copied().unwrap_or(0)
            } else {
                s.values.iter().fold(0u64, |a, v| a.saturating_add(*v))
            };
            let peak = s.values.iter().copied().max().unwrap_or(0);
            Line {
                name: s.name,
                class: s.class,
                points: s
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| format!("{},{}", num(x_at(i, n)), num(y_at(*v, max))))
                    .collect::<Vec<_>>()
                    .join(" "),
                total_label: grouped(total),
                peak_label: grouped(peak),
            }
        })
        .collect();
    // Gridlines at 0, half and the top of the scale: a half of an odd top is shown rounded.
    let y_ticks = [0, max / 2, max]
        .into_iter()
        .enumerate()
        .filter(|(i, v)| *i == 0 || *v > 0)
        .map(|(_, v)| Tick {
            at: num(y_at(v, max)),
            label: grouped(v),
            anchor: "end",
        })
        .collect::<Vec<Tick>>();
    let mut y_ticks = y_ticks;
    y_ticks.dedup_by(|a, b| a.label == b.label);
    let x_ticks = labels
        .iter()
        .filter(|(i, _)| n > 0 && *i < n)
        .map(|(i, l)| Tick {
            at: num(x_at(*i, n)),
            label: l.clone(),
            anchor: if *i + 1 == n {
                "end"
            } else if *i == 0 {
                "start"
            } else {
                "middle"
            },
        })
        .collect();
    Chart {
        id,
        title: title.into(),
        total_heading: if !series.is_empty() && series.iter().all(|s| s.gauge) {
            "Now"
        } else {
            "Total"
        },
        lines,
        y_ticks,
        x_ticks,
        left: num(LEFT),
        right: num(WIDTH - RIGHT),
        top: num(TOP),
        bottom: num(HEIGHT - BOTTOM),
        label_x: num(LEFT - 4.0),
        time_y: num(HEIGHT - 6.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords(points: &str) -> Vec<(f64, f64)> {
        points
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    fn inside(x: f64, y: f64) {
        assert!(x.is_finite() && y.is_finite(), "{x},{y}");
        assert!((LEFT..=WIDTH - RIGHT).contains(&x), "x {x}");
        assert!((TOP..=HEIGHT - BOTTOM).contains(&y), "y {y}");
    }

    #[test]
    fn round_scales() {
        assert_eq!(nice_max(0), 1);
        assert_eq!(nice_max(1), 1);
        assert_eq!(nice_max(3), 5);
        assert_eq!(nice_max(7), 10);
        assert_eq!(nice_max(11), 20);
        assert_eq!(nice_max(200), 200);
        assert_eq!(nice_max(201), 500);
        assert_eq!(
            nice_max(10_000_000_000_000_000_000),
            10_000_000_000_000_000_000
        );
        // No round number above: the value itself, never an overflow.
        assert_eq!(nice_max(u64::MAX), u64::MAX);
        assert_eq!(nice_max(u64::MAX - 1), u64::MAX - 1);
    }

    #[test]
    fn empty_data_draws_an_empty_chart() {
        let c = chart("c", "Nothing", &[], &[(0, "07:00".into())]);
        assert!(c.lines.is_empty());
        assert!(c.x_ticks.is_empty(), "no slot to label");
        assert_eq!(c.y_ticks.len(), 2, "0 and the scale of 1");
        let none: [u64; 0] = [];
        let c = chart(
            "c",
            "Empty series",
            &[Series {
                name: "Received",
                class: "received",
                values: &none,
                gauge: false,
            }],
            &[],
        );
        assert_eq!(c.lines[0].points, "");
        assert_eq!(c.lines[0].total_label, "0");
    }

    #[test]
    fn zeros_lie_on_the_axis() {
        let zeros = [0u64; 60];
        let c = chart(
            "c",
            "Zeros",
            &[Series {
                name: "Received",
                class: "received",
                values: &zeros,
                gauge: false,
            }],
            &[
                (0, "a".into()),
                (59, "b".into()),
                (60, "past the end".into()),
            ],
        );
        let pts = coords(&c.lines[0].points);
        assert_eq!(pts.len(), 60);
        for (x, y) in &pts {
            inside(*x, *y);
            assert_eq!(*y, HEIGHT - BOTTOM);
        }
        assert_eq!(pts[0].0, LEFT);
        assert_eq!(pts[59].0, WIDTH - RIGHT);
        assert_eq!(c.x_ticks.len(), 2);
    }

    #[test]
    fn one_point_sits_at_now() {
        let c = chart(
            "c",
            "One",
            &[Series {
                name: "Queue length",
                class: "queue",
                values: &[3],
                gauge: true,
            }],
            &[(0, "07:00".into())],
        );
        let pts = coords(&c.lines[0].points);
        assert_eq!(pts.len(), 1);
        inside(pts[0].0, pts[0].1);
        assert_eq!(pts[0].0, WIDTH - RIGHT);
        // 3 on a scale of 5.
        let h = HEIGHT - TOP - BOTTOM;
        assert!((pts[0].1 - (TOP + h - h * 0.6)).abs() < 0.1, "{:?}", pts[0]);
        assert_eq!(c.lines[0].peak_label, "3");
        assert_eq!(
            (c.total_heading, c.lines[0].total_label.as_str()),
            ("Now", "3")
        );
    }

    #[test]
    fn big_numbers_neither_overflow_nor_leave_the_plot() {
        let values = [u64::MAX, 0, u64::MAX / 2, u64::MAX - 1, 1];
        let c = chart(
            "c",
            "Big",
            &[
                Series {
                    name: "Received",
                    class: "received",
                    values: &values,
                    gauge: false,
                },
                Series {
                    name: "Failed",
                    class: "failed",
                    values: &[u64::MAX; 5],
                    gauge: false,
                },
            ],
            &[],
        );
        for l in &c.lines {
            for (x, y) in coords(&l.points) {
                inside(x, y);
            }
        }
        assert_eq!(
            c.lines[0].total_label,
            grouped(u64::MAX),
            "the total saturates"
        );
        assert_eq!(c.lines[0].peak_label, grouped(u64::MAX));
        let top = c.y_ticks.last().unwrap();
        assert_eq!(top.label, grouped(u64::MAX));
        assert_eq!(top.at, num(TOP));
    }

    #[test]
    fn counts_are_grouped_in_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(u64::MAX), "18,446,744,073,709,551,615");
    }
}
