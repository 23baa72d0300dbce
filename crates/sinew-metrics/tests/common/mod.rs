//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used)]

/// The value of one exposition line `series value`, if present.
pub(crate) fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        let value = rest.strip_prefix(' ')?;
        Some(value.trim().parse().unwrap())
    })
}

/// Like [`sample`], but the series must exist.
pub(crate) fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// How many distinct series of `metric` (a `_count` line per label set).
pub(crate) fn series_count(text: &str, metric: &str) -> usize {
    let prefix = format!("{metric}_count{{");
    text.lines().filter(|l| l.starts_with(&prefix)).count()
}

/// The cumulative bucket counts of one histogram series, keyed by `le`.
pub(crate) fn buckets(text: &str, metric: &str, labels: &str) -> Vec<(String, f64)> {
    let prefix = format!("{metric}_bucket{{{labels},le=\"");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, value) = rest.split_once("\"} ")?;
            Some((le.to_owned(), value.trim().parse().unwrap()))
        })
        .collect()
}

/// The smallest bucket bound whose cumulative count reaches `n`.
pub(crate) fn first_bucket_with(text: &str, metric: &str, labels: &str, n: f64) -> String {
    buckets(text, metric, labels)
        .into_iter()
        .find(|(_, c)| *c >= n)
        .map(|(le, _)| le)
        .unwrap_or_else(|| panic!("no bucket of {metric}{{{labels}}} reaches {n} in\n{text}"))
}
