//! The one table every benchmark prints into: a measure, Lifeline's figure, the baseline measured
//! in the same run (when there is one), their ratio, and the target it is held to.

use std::fmt::Write as _;

#[derive(Debug, Clone)]
pub struct Row {
    pub measure: String,
    pub value: f64,
    pub baseline: Option<f64>,
    pub unit: &'static str,
    pub target: String,
}

impl Row {
    /// A figure with a baseline from the same run.
    pub fn ratio(
        measure: impl Into<String>,
        value: f64,
        baseline: f64,
        unit: &'static str,
        target: impl Into<String>,
    ) -> Self {
        Self {
            measure: measure.into(),
            value,
            baseline: Some(baseline),
            unit,
            target: target.into(),
        }
    }

    /// A figure on its own (counts, errors, absolute times).
    pub fn value(
        measure: impl Into<String>,
        value: f64,
        unit: &'static str,
        target: impl Into<String>,
    ) -> Self {
        Self {
            measure: measure.into(),
            value,
            baseline: None,
            unit,
            target: target.into(),
        }
    }
}

fn figure(v: f64, unit: &str) -> String {
    let digits = if unit.is_empty() || v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        3
    };
    let sep = if unit.is_empty() { "" } else { " " };
    format!("{v:.digits$}{sep}{unit}")
}

/// The table as text (a header line, then one line per row).
pub fn render(rows: &[Row]) -> String {
    let width = rows
        .iter()
        .map(|r| r.measure.chars().count())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:>14}  {:>14}  {:>8}  target",
        "measure", "lifeline", "baseline", "ratio"
    );
    for r in rows {
        let (baseline, ratio) = match r.baseline {
            Some(b) => (
                figure(b, r.unit),
                if b.abs() > f64::EPSILON {
                    format!("{:.2}x", r.value / b)
                } else {
                    "-".to_owned()
                },
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        let _ = writeln!(
            out,
            "{:<width$}  {:>14}  {:>14}  {:>8}  {}",
            r.measure,
            figure(r.value, r.unit),
            baseline,
            ratio,
            r.target
        );
    }
    out
}

/// The value at quantile `p` (0–1) of sorted samples, nearest rank; 0 when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn rows_line_up_and_ratios_use_the_baseline() {
        let text = render(&[
            Row::ratio("restore", 0.24, 0.12, "s", "<= 2x"),
            Row::value("panics", 0.0, "", "0"),
        ]);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains("2.00x"), "{text}");
        let col = lines[0].find("target").expect("a target column");
        assert_eq!(&lines[1][col..], "<= 2x", "{text}");
        assert_eq!(&lines[2][col..], "0", "{text}");
    }
}
