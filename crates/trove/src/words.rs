//! Wording shared by explanations and status: objects, arguments and environment values
//! for people. A leaf: it knows no other module.

pub(crate) fn describe_env(v: &Option<String>) -> String {
    match v {
        Some(v) if v.len() > 40 => format!("{:?}..", &v[..v.floor_char_boundary(40)]),
        Some(v) => format!("{v:?}"),
        None => "unset".into(),
    }
}

/// The arguments as stored: JSON, shown to people, and decoded again (checked against the
/// key) by `StaleEvent::args_for`.
pub(crate) fn describe_args<A: serde::Serialize>(args: &A) -> String {
    serde_json::to_string(args).unwrap_or_else(|_| "(args)".into())
}

/// Arguments (as stored, JSON) for people: the words of a command recipe joined by
/// spaces, nothing for `()` or no words, the JSON otherwise.
pub(crate) fn args_for_people(json: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Null) => String::new(),
        Ok(serde_json::Value::Array(items)) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(|i| i.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => json.to_owned(),
    }
}

/// A stored object named for people, from its recipe and its stored (JSON) arguments:
/// a command recipe's words joined by spaces, no arguments left out.
///
/// ```
/// assert_eq!(trove::object_label("prices", r#"["eu","2024"]"#), "prices eu 2024");
/// assert_eq!(trove::object_label("table", "null"), "table");
/// ```
pub fn object_label(recipe: &str, args_json: &str) -> String {
    match args_for_people(args_json) {
        a if a.is_empty() => recipe.to_owned(),
        a => format!("{recipe} {a}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_arguments_are_shown_space_separated() {
        assert_eq!(super::object_label("prices", "[]"), "prices");
        assert_eq!(
            super::object_label("prices", r#"["eu","2024"]"#),
            "prices eu 2024"
        );
        assert_eq!(
            super::object_label("table", r#"{"x":1}"#),
            r#"table {"x":1}"#
        );
        assert_eq!(super::object_label("table", "null"), "table");
    }
}
