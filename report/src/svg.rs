//! A small SVG writer for the report's charts: rectangles, lines and text,
//! every string escaped, coordinates with one decimal.

use core::fmt::Write as _;

use crate::html::escape;

/// An `<svg>` element being written.
#[derive(Debug)]
pub(crate) struct Svg {
    out: String,
}

impl Svg {
    /// An SVG of `width` × `height` user units, labelled `title` for
    /// screen readers.
    pub(crate) fn new(width: f64, height: f64, title: &str) -> Self {
        let mut out = String::new();
        let _ = write!(
            out,
            r#"<svg viewBox="0 0 {width:.1} {height:.1}" width="{width:.1}" height="{height:.1}" role="img" aria-label="{t}"><title>{t}</title>"#,
            t = escape(title)
        );
        Self { out }
    }

    /// A filled rectangle (`x`, `y`, width, height) of CSS class `class`,
    /// with a tooltip.
    pub(crate) fn rect(&mut self, [x, y, w, h]: [f64; 4], class: &str, tip: &str) {
        let _ = write!(
            self.out,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" class="{}"><title>{}</title></rect>"#,
            escape(class),
            escape(tip)
        );
    }

    /// A line of CSS class `class`.
    pub(crate) fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, class: &str) {
        let _ = write!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" class="{}"/>"#,
            escape(class)
        );
    }

    /// Text at (`x`, `y`), anchored `anchor` (`start`, `middle`, `end`).
    pub(crate) fn text(&mut self, x: f64, y: f64, anchor: &str, class: &str, text: &str) {
        let _ = write!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{}" class="{}">{}</text>"#,
            escape(anchor),
            escape(class),
            escape(text)
        );
    }

    /// The finished element.
    pub(crate) fn finish(mut self) -> String {
        self.out.push_str("</svg>");
        self.out
    }
}

/// A round step for an axis from 0 to `max` with about five ticks.
pub(crate) fn tick_step(max: u64) -> u64 {
    let mut step = 1_u64;
    loop {
        for m in [1, 2, 5] {
            let s = step.saturating_mul(m);
            if max.checked_div(s).unwrap_or(0) <= 5 {
                return s;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// One series of a stacked bar chart: its label, CSS class and values.
#[derive(Debug)]
pub(crate) struct Series<'a> {
    pub(crate) label: &'a str,
    pub(crate) class: &'a str,
    pub(crate) values: Vec<u64>,
}

/// A stacked bar chart: one bar per label, each series stacked in order,
/// with a y axis, a legend, and a dashed marker before bar `marker.0`
/// labelled `marker.1`.
pub(crate) fn stacked_bars(
    title: &str,
    labels: &[String],
    series: &[Series<'_>],
    marker: Option<(f64, &str)>,
) -> String {
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 36.0;
    const PLOT_H: f64 = 220.0;
    const BOTTOM: f64 = 56.0;
    const MIN_PLOT_W: f64 = 640.0;
    let n = labels.len().max(1) as f64;
    let slot = (720.0 / n).clamp(8.0, 48.0);
    let legend_w: f64 = series
        .iter()
        .map(|s| 24.0 + 7.0 * s.label.chars().count() as f64)
        .sum();
    let width = LEFT + (slot * n).max(MIN_PLOT_W).max(legend_w) + RIGHT;
    let height = TOP + PLOT_H + BOTTOM;
    let totals: Vec<u64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0))
                .fold(0_u64, u64::saturating_add)
        })
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let step = tick_step(max);
    let top_tick = max.div_ceil(step).saturating_mul(step);
    let scale = PLOT_H / top_tick as f64;
    let mut svg = Svg::new(width, height, title);

    // Legend.
    let mut x = LEFT;
    for s in series {
        svg.rect([x, 10.0, 12.0, 12.0], s.class, s.label);
        svg.text(x + 16.0, 20.5, "start", "legend", s.label);
        x += 24.0 + 7.0 * s.label.chars().count() as f64;
    }

    // Y axis and grid.
    let base = TOP + PLOT_H;
    for k in 0..=top_tick.checked_div(step).unwrap_or(0) {
        let tick = k.saturating_mul(step);
        let y = base - tick as f64 * scale;
        svg.line(LEFT, y, width - RIGHT, y, "grid");
        svg.text(LEFT - 6.0, y + 4.0, "end", "axis", &tick.to_string());
    }

    // Bars, and a label under every bar when they fit, else every few.
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1) as f64 * 6.5 + 8.0;
    let every = (label_w / slot).ceil().max(1.0);
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT + slot * i as f64;
        let mut y = base;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0);
            if v == 0 {
                continue;
            }
            let h = v as f64 * scale;
            y -= h;
            let tip = format!("{label}: {v} {}", s.label);
            svg.rect([x + slot * 0.1, y, slot * 0.8, h], s.class, &tip);
        }
        if (i as f64 % every) == 0.0 {
            svg.text(x + slot / 2.0, base + 16.0, "middle", "axis", label);
        }
    }
    svg.line(LEFT, base, width - RIGHT, base, "axis-line");

    if let Some((at, text)) = marker {
        let x = LEFT + slot * at;
        svg.line(x, TOP - 6.0, x, base + 24.0, "marker");
        svg.text(x, base + 40.0, "middle", "marker-label", text);
    }
    svg.finish()
}

/// A horizontal completion bar, `done` of `total`.
pub(crate) fn completion_bar(done: u64, total: u64) -> String {
    const W: f64 = 240.0;
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).clamp(0.0, 1.0)
    };
    let mut svg = Svg::new(W, 16.0, &format!("{done} of {total} done"));
    svg.rect([0.0, 2.0, W, 12.0], "bar-rest", &format!("{total} devices"));
    svg.rect(
        [0.0, 2.0, W * frac, 12.0],
        "bar-done",
        &format!("{done} done"),
    );
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::tick_step;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1), 1);
        assert_eq!(tick_step(5), 1);
        assert_eq!(tick_step(6), 2);
        assert_eq!(tick_step(12), 5);
        assert_eq!(tick_step(26), 5);
        assert_eq!(tick_step(36), 10);
        assert_eq!(tick_step(1_000_000), 200_000);
        assert!(tick_step(u64::MAX) > 0);
    }
}
