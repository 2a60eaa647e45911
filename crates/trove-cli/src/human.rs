//! Output for people: sizes, ages, argument lists, paths, and the progress spinner.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether diagnostics on stderr may be coloured: stderr is a terminal and `NO_COLOR` is
/// unset or empty (<https://no-color.org>).
pub(crate) fn color_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// The largest whole unit: `42s`, `5m`, `3h`, `12d`.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m", s / 60),
        3_600..86_400 => format!("{}h", s / 3_600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The stored arguments as a JSON value (an array for command recipes), or the text as
/// a string when it is not JSON.
pub(crate) fn args_value(args_json: &str) -> serde_json::Value {
    serde_json::from_str(args_json)
        .unwrap_or_else(|_| serde_json::Value::String(args_json.to_owned()))
}

/// `path` relative to the first of `bases` it is under, else as given.
pub(crate) fn relative(path: &Path, bases: &[&Path]) -> String {
    bases
        .iter()
        .find_map(|base| path.strip_prefix(base).ok())
        .filter(|rel| !rel.as_os_str().is_empty())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// `path` relative to the project directory `dir` (`.` for the directory itself), or
/// as given when it is outside the project.
pub(crate) fn in_project(path: &Path, dir: &Path) -> String {
    match path.strip_prefix(dir) {
        Ok(rel) if rel.as_os_str().is_empty() => ".".to_owned(),
        Ok(rel) => rel.display().to_string(),
        Err(_) => path.display().to_string(),
    }
}

/// Writes one line to stdout and flushes it, so a reader sees each line as it happens.
pub(crate) fn emit(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// A spinner on stderr while long work runs, only when stderr is a terminal; cleared when
/// dropped.
pub(crate) struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Starts spinning with `message`, or does nothing when stderr is not a terminal.
    pub(crate) fn start(message: impl Into<String>) -> Spinner {
        if !crate::stderr_is_terminal() {
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner(Some(bar))
    }

    /// Removes the spinner from the terminal.
    pub(crate) fn clear(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn ages_read_like_people_write_them() {
        assert_eq!(super::age(Duration::from_secs(42)), "42s");
        assert_eq!(super::age(Duration::from_secs(7_200)), "2h");
    }
}
