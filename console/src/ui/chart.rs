//! Bar charts drawn on the server as SVG (the console runs no chart library): one group of two
//! bars per label, scaled to the largest value, each bar with its figure as a tooltip and in a
//! `data-value` attribute.

use maud::{Markup, html};

/// One label's two values.
pub struct Group {
    pub label: String,
    /// Short label under the axis.
    pub tick: String,
    pub values: [f64; 2],
}

/// The two series: their names (also the bars' classes) and colours.
pub struct Series {
    pub names: [&'static str; 2],
    pub colours: [&'static str; 2],
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const TOP: f64 = 16.0;

/// The chart `id`; `empty` is said when there is nothing to draw.
pub fn bars(id: &str, groups: &[Group], series: &Series, empty: &str) -> Markup {
    if groups.is_empty() {
        return html! { p.empty id=(id) { (empty) } };
    }
    let max = groups.iter().flat_map(|g| g.values).fold(0.0_f64, f64::max);
    let scale = if max > 0.0 { (HEIGHT - TOP) / max } else { 0.0 };
    let slot = WIDTH / groups.len() as f64;
    let bar = (slot * 0.4).clamp(1.0, 24.0);
    // Every group labelled when they fit; else about ten labels.
    let label_every = groups.len().div_ceil(10).max(1);
    html! {
        svg.chart id=(id) xmlns="http://www.w3.org/2000/svg" role="img" width=(WIDTH) height=(HEIGHT + 40.0)
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 40.0) } {
            line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) stroke="#9aa3ad" {}
            text x="4" y="12" font-size="11" fill="#5b6470" { "max " (figure(max)) }
            @for (i, g) in groups.iter().enumerate() {
                @let x = i as f64 * slot + slot / 2.0;
                @for (k, value) in g.values.iter().enumerate() {
                    @let height = value * scale;
                    rect class=(series.names[k]) x=(format!("{:.1}", x - bar + k as f64 * bar)) y=(format!("{:.1}", HEIGHT - height))
                        width=(format!("{bar:.1}")) height=(format!("{height:.1}")) fill=(series.colours[k])
                        data-label=(g.label) data-value=(value) {
                        title { (g.label) ": " (series.names[k]) " " (figure(*value)) }
                    }
                }
                @if i % label_every == 0 {
                    text x=(format!("{x:.1}")) y=(HEIGHT + 16.0) font-size="11" text-anchor="middle" fill="#5b6470" { (g.tick) }
                }
            }
            @for (k, name) in series.names.iter().enumerate() {
                rect x=(4.0 + k as f64 * 90.0) y=(HEIGHT + 26.0) width="10" height="10" fill=(series.colours[k]) {}
                text x=(18.0 + k as f64 * 90.0) y=(HEIGHT + 35.0) font-size="11" fill="#1d2330" { (name) }
            }
        }
    }
}

/// A value as shown: whole numbers without decimals, others with two.
pub fn figure(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(label: &str, a: f64, b: f64) -> Group {
        Group {
            label: label.into(),
            tick: label.into(),
            values: [a, b],
        }
    }

    const SERIES: Series = Series {
        names: ["revenue", "refunds"],
        colours: ["#2f9e5b", "#c0392b"],
    };

    #[test]
    fn bars_are_scaled_to_the_largest_value() {
        let svg = bars(
            "c",
            &[group("d1", 100.0, 0.0), group("d2", 50.0, 25.0)],
            &SERIES,
            "none",
        )
        .into_string();
        // 180 high with 16 kept on top: 100 is 164 high, 50 is 82, 25 is 41.
        assert!(
            svg.contains(r##"height="164.0" fill="#2f9e5b" data-label="d1""##),
            "{svg}"
        );
        assert!(
            svg.contains(r##"height="82.0" fill="#2f9e5b" data-label="d2""##),
            "{svg}"
        );
        assert!(
            svg.contains(r##"height="41.0" fill="#c0392b" data-label="d2""##),
            "{svg}"
        );
        assert!(svg.contains("max 100"));
        assert!(svg.contains("d2: refunds 25"));
    }

    #[test]
    fn no_groups_no_chart_and_zero_values_draw_flat() {
        assert!(
            bars("c", &[], &SERIES, "nothing here")
                .into_string()
                .contains("nothing here")
        );
        let svg = bars("c", &[group("d", 0.0, 0.0)], &SERIES, "").into_string();
        assert!(svg.contains(r#"height="0.0""#), "{svg}");
    }
}
