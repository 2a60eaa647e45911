//! `needs`: entries with or without arguments, and the checks that need every recipe
//! (each names a configured recipe, no two share a variable, no cycle).

use std::collections::BTreeMap;

use super::{NeedsAt, Reader, list, suggest};
use crate::config::{Config, Need};
use crate::error::ConfigError;
use crate::syntax::{Kind, Node};

use super::need_var;

impl Reader<'_> {
    /// `needs: ["calendar", ("fx", ["EUR"])]`: recipe names, or a recipe and its
    /// arguments; each with the byte offset of its recipe name.
    pub(super) fn needs(&self, node: &Node) -> Result<Vec<(Need, usize)>, ConfigError> {
        const EXAMPLE: &str = "needs: [\"calendar\", (\"fx\", [\"EUR\"])]";
        let Kind::List(items) = &node.kind else {
            return Err(self.error(
                node.start,
                format!("`needs` must be a list, found {}", node.describe()),
                format!("for example: {EXAMPLE}"),
            ));
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match &item.kind {
                Kind::Str(name) => out.push((Need::new(name), item.start)),
                Kind::Tuple(parts) if parts.len() == 2 => {
                    let Kind::Str(name) = &parts[0].kind else {
                        return Err(self.error(
                            parts[0].start,
                            format!(
                                "a `needs` entry starts with the recipe's name, found {}",
                                parts[0].describe()
                            ),
                            format!("for example: {EXAMPLE}"),
                        ));
                    };
                    let args =
                        self.strings(&parts[1], "the arguments of a `needs` entry", EXAMPLE)?;
                    out.push((
                        Need {
                            recipe: name.clone(),
                            args: args.into_iter().map(|(a, _)| a.to_owned()).collect(),
                        },
                        parts[0].start,
                    ));
                }
                _ => {
                    return Err(self.error(
                        item.start,
                        format!(
                            "a `needs` entry is a recipe name or (name, [arguments]), found {}",
                            item.describe()
                        ),
                        format!("for example: {EXAMPLE}"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Every `needs` entry names a recipe, and following them never loops.
    pub(super) fn check_needs(
        &self,
        config: &Config,
        needs: &[NeedsAt],
    ) -> Result<(), ConfigError> {
        for entry in needs {
            for (need, at) in &entry.entries {
                if !config.recipes.contains_key(need) {
                    let hint = match suggest(need, config.recipes.keys().map(String::as_str)) {
                        Some(close) => format!("did you mean \"{close}\"?"),
                        None if config.recipes.is_empty() => {
                            "no recipes are defined in `recipes`".to_owned()
                        }
                        None => format!(
                            "defined recipes: {}; a recipe built by Rust code needs an entry too, \
                             such as \"{need}\": ()",
                            list(config.recipes.keys())
                        ),
                    };
                    return Err(self.error(
                        *at,
                        format!(
                            "recipe \"{}\" needs unknown recipe \"{need}\"",
                            entry.recipe
                        ),
                        hint,
                    ));
                }
            }
        }
        // Each need reaches its command as $TROVE_NEED_<NAME>, upper-cased with every
        // other character as `_`: two needs of one recipe must not share a variable.
        for entry in needs {
            let mut seen: BTreeMap<String, &str> = BTreeMap::new();
            for (need, at) in &entry.entries {
                let var = need_var(need);
                if let Some(first) = seen.insert(var.clone(), need) {
                    if first == need {
                        return Err(self.error(
                            *at,
                            format!(
                                "recipe \"{}\" needs \"{need}\" twice, which would share ${var}",
                                entry.recipe
                            ),
                            "a command receives one object per needed recipe; \
                             to use several objects of one recipe, add a recipe per object"
                                .to_owned(),
                        ));
                    }
                    return Err(self.error(
                        *at,
                        format!(
                            "recipe \"{}\" needs \"{first}\" and \"{need}\", which would share ${var}",
                            entry.recipe
                        ),
                        "rename one of the two recipes so their names differ in more than punctuation or case"
                            .to_owned(),
                    ));
                }
            }
        }
        // Depth-first search in the order recipes are written, so the cycle
        // reported is the first one a reader meets.
        let at: BTreeMap<(&str, &str), usize> = needs
            .iter()
            .flat_map(|e| {
                e.entries
                    .iter()
                    .map(|(n, at)| ((e.recipe.as_str(), n.as_str()), *at))
            })
            .collect();
        let mut state: BTreeMap<&str, Visit> = BTreeMap::new();
        for entry in needs {
            let Some((name, _)) = config.recipes.get_key_value(&entry.recipe) else {
                continue;
            };
            let mut stack = Vec::new();
            if let Some(cycle) = find_cycle(config, name, &mut state, &mut stack) {
                let last = &cycle[cycle.len() - 2..];
                let offset = at
                    .get(&(last[0].as_str(), last[1].as_str()))
                    .copied()
                    .unwrap_or(0);
                return Err(self.error(
                    offset,
                    format!("recipes need each other in a cycle: {}", cycle.join(" -> ")),
                    "a recipe cannot need itself, directly or through others; remove one of these `needs`"
                        .to_owned(),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Visit {
    InProgress,
    Done,
}

/// Returns the first cycle reachable from `name`, as `a -> b -> a` names.
fn find_cycle<'c>(
    config: &'c Config,
    name: &'c str,
    state: &mut BTreeMap<&'c str, Visit>,
    stack: &mut Vec<&'c str>,
) -> Option<Vec<String>> {
    match state.get(name) {
        Some(Visit::Done) => return None,
        Some(Visit::InProgress) => {
            let from = stack.iter().position(|&n| n == name).unwrap_or(0);
            let mut cycle: Vec<String> = stack[from..].iter().map(|&n| n.to_owned()).collect();
            cycle.push(name.to_owned());
            return Some(cycle);
        }
        None => {}
    }
    state.insert(name, Visit::InProgress);
    stack.push(name);
    if let Some(recipe) = config.recipes.get(name) {
        for need in &recipe.needs {
            if let Some(cycle) = find_cycle(config, &need.recipe, state, stack) {
                return Some(cycle);
            }
        }
    }
    stack.pop();
    state.insert(name, Visit::Done);
    None
}
