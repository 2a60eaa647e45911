//! Numbers, durations, sizes and version counters, read with their positions.

use std::collections::BTreeMap;
use std::time::Duration;

use super::Reader;
use crate::error::ConfigError;
use crate::syntax::{Kind, Node};
use crate::units::{parse_duration, parse_size};

const DURATION_HINT: &str =
    "durations look like \"30d\", \"1h30m\" or \"500ms\" (units: w, d, h, m, s, ms)";
const SIZE_HINT: &str = "sizes look like \"20GiB\", \"512MiB\", \"10GB\" or \"123\" (bytes)";

/// The most variants a key may keep: beyond it, `store.variants` is surely a mistake.
const MAX_VARIANTS: u64 = 1000;

impl Reader<'_> {
    pub(super) fn uint(
        &self,
        node: &Node,
        what: &str,
        max: u64,
        example: &str,
    ) -> Result<u64, ConfigError> {
        match node.kind {
            Kind::Int(Some(n)) if n >= 0 && n <= i128::from(max) => {
                Ok(u64::try_from(n).unwrap_or(max))
            }
            Kind::Int(Some(n)) if n < 0 => Err(self.error(
                node.start,
                format!("{what} cannot be negative"),
                format!("for example: {example}"),
            )),
            Kind::Int(_) => Err(self.error(
                node.start,
                format!("{what} is too large; the limit is {max}"),
                format!("for example: {example}"),
            )),
            _ => Err(self.error(
                node.start,
                format!("{what} must be a whole number, found {}", node.describe()),
                format!("for example: {example}"),
            )),
        }
    }

    pub(super) fn duration(&self, node: &Node, what: &str) -> Result<Duration, ConfigError> {
        let example = format!("{what}: \"30d\"");
        let s = self.string(node, &format!("`{what}`"), &example)?;
        parse_duration(s).map_err(|e| {
            self.error(
                node.start,
                format!("invalid duration in `{what}`: {e}"),
                DURATION_HINT.to_owned(),
            )
        })
    }

    pub(super) fn size(&self, node: &Node, what: &str) -> Result<u64, ConfigError> {
        if let Kind::Int(_) = node.kind {
            return self.uint(node, &format!("`{what}`"), u64::MAX, "max_size: \"20GiB\"");
        }
        let s = self.string(node, &format!("`{what}`"), "max_size: \"20GiB\"")?;
        parse_size(s).map_err(|e| {
            self.error(
                node.start,
                format!("invalid size in `{what}`: {e}"),
                SIZE_HINT.to_owned(),
            )
        })
    }

    /// `{ "name": 3, .. }`, the version counters.
    pub(super) fn counters(
        &self,
        node: &Node,
        context: &str,
    ) -> Result<BTreeMap<String, u64>, ConfigError> {
        const EXAMPLE: &str = "versions: { \"alice\": 3, \"bob\": 1 }";
        let Kind::Map(entries) = &node.kind else {
            return Err(self.error(
                node.start,
                format!(
                    "`versions` {context} must be a map `{{\"name\": number}}`, found {}",
                    node.describe()
                ),
                format!("for example: {EXAMPLE}"),
            ));
        };
        let mut out = BTreeMap::new();
        let mut first_at = BTreeMap::new();
        for (key, value) in entries {
            let name = self.string(key, "a version counter's name", EXAMPLE)?;
            if name.is_empty() {
                return Err(self.error(
                    key.start,
                    "a version counter's name is empty".to_owned(),
                    format!("name counters after people or teams, for example: {EXAMPLE}"),
                ));
            }
            if let Some(&first) = first_at.get(name) {
                let (line, column) = crate::error::line_column(self.src, first);
                return Err(self.error(
                    key.start,
                    format!("version counter \"{name}\" is set twice {context}"),
                    format!("it is first set at {line}:{column}; remove one of them"),
                ));
            }
            first_at.insert(name, key.start);
            let n = self.uint(
                value,
                &format!("version counter \"{name}\""),
                u64::MAX,
                EXAMPLE,
            )?;
            out.insert(name.to_owned(), n);
        }
        Ok(out)
    }

    /// `store.variants`: how many stored builds a key keeps, at least 1.
    pub(super) fn variants(&self, node: &Node) -> Result<usize, ConfigError> {
        const EXAMPLE: &str = "store: (variants: 4)";
        let n = self.uint(node, "`variants`", MAX_VARIANTS, EXAMPLE)?;
        if n == 0 {
            return Err(self.error(
                node.start,
                "`variants` must be at least 1".to_owned(),
                format!(
                    "it is how many stored builds of one object are kept (one per branch you \
                     switch between); for example: {EXAMPLE}"
                ),
            ));
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
