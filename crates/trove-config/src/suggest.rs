//! "Did you mean": the known word closest to a typo, for configuration keys, recipe names
//! and the command line's recipe names alike.

/// The known word closest to `word`, if one is close enough to be a typo (Jaro-Winkler
/// similarity of at least 0.8, which favours a shared beginning as typos keep it).
///
/// ```
/// use trove_config::did_you_mean;
/// assert_eq!(did_you_mean("prics", ["calendar", "prices"]), Some("prices"));
/// assert_eq!(did_you_mean("zzz", ["calendar", "prices"]), None);
/// ```
pub fn did_you_mean<'k>(word: &str, known: impl IntoIterator<Item = &'k str>) -> Option<&'k str> {
    known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(word, k), k))
        .filter(|&(score, _)| score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}
