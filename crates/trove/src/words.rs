//! Wording shared by explanations and status: arguments and environment values for people.

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
