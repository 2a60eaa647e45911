//! Durations (`"1h30m"`) and sizes (`"20GiB"`) as people write them.

use std::time::Duration;

/// Duration units, longest first so that `ms` is tried before `m`.
const DURATION_UNITS: &[(&str, u128)] = &[
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
    ("w", 7 * 86_400 * NANOS_PER_SEC),
    ("d", 86_400 * NANOS_PER_SEC),
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
];

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// The largest duration `parse_duration` accepts, so that adding one to a
/// timestamp cannot overflow `SystemTime` in practice.
const MAX_DURATION_NANOS: u128 = (u64::MAX as u128) * NANOS_PER_SEC;

/// Parses a duration such as `"30d"`, `"1h30m"`, `"500ms"` or `"1w"`.
///
/// A duration is one or more `<number><unit>` groups, largest unit first,
/// each unit at most once. Units: `w`, `d`, `h`, `m`, `s`, `ms`, `us`, `ns`.
/// A bare number (`"30"`) is refused because the unit would be a guess.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(trove_config::parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
/// assert!(trove_config::parse_duration("30").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.is_empty() {
        return Err("the duration is empty".to_owned());
    }
    if s.starts_with('-') {
        return Err(format!("`{s}` is negative; a duration cannot be"));
    }
    let mut rest = s;
    let mut total: u128 = 0;
    // Index into DURATION_UNITS by size: units must come largest first.
    let mut last_unit_nanos = u128::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            let c = rest.chars().next().unwrap_or(' ');
            return Err(if c.is_ascii_alphabetic() {
                format!("expected a number before `{rest}` in `{s}`")
            } else {
                format!("unexpected `{c}` in `{s}`")
            });
        }
        let (number, after) = rest.split_at(digits);
        let number: u128 = number.parse().map_err(|_| format!("`{s}` is too large"))?;
        if after.is_empty() {
            return Err(if digits == s.len() {
                format!("`{s}` has no unit; say which: `{s}s`, `{s}m`, `{s}d`..")
            } else {
                format!("`{s}` has no unit after `{number}`")
            });
        }
        if after.starts_with('.') {
            return Err(format!(
                "`{s}` has a fraction; write it with smaller units (`1h30m`, not `1.5h`)"
            ));
        }
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &after[..unit_len];
        let Some(&(_, nanos)) = DURATION_UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(if unit.is_empty() {
                format!("`{s}` has no unit after `{number}`")
            } else {
                format!("unknown unit `{unit}` in `{s}`")
            });
        };
        if nanos >= last_unit_nanos {
            return Err(format!(
                "units in `{s}` must each appear once, largest first (`1h30m`)"
            ));
        }
        last_unit_nanos = nanos;
        total = number
            .checked_mul(nanos)
            .and_then(|n| n.checked_add(total))
            .filter(|&n| n <= MAX_DURATION_NANOS)
            .ok_or_else(|| format!("`{s}` is too large"))?;
        rest = &after[unit_len..];
    }
    // Both parts fit: total <= u64::MAX seconds.
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| format!("`{s}` is too large"))?;
    let nanos = u32::try_from(total % NANOS_PER_SEC).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration the way `parse_duration` reads it: `"1d"`, `"1h30m"`,
/// `"500ms"`; zero is `"0s"`. Weeks are written as days (`"30d"`), which is
/// how people tend to state expiry periods.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(trove_config::format_duration(Duration::from_secs(5400)), "1h30m");
/// ```
pub fn format_duration(d: Duration) -> String {
    const UNITS: &[(&str, u128)] = &[
        ("d", 86_400 * NANOS_PER_SEC),
        ("h", 3_600 * NANOS_PER_SEC),
        ("m", 60 * NANOS_PER_SEC),
        ("s", NANOS_PER_SEC),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    let mut rest = d.as_nanos();
    if rest == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for &(name, nanos) in UNITS {
        let n = rest / nanos;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(name);
            rest %= nanos;
        }
    }
    out
}

/// Size units, matched case-insensitively. Binary (`KiB`) and decimal (`KB`).
const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
    ("pib", 1 << 50),
    ("eib", 1 << 60),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("pb", 1_000_000_000_000_000),
    ("eb", 1_000_000_000_000_000_000),
];

/// Parses a size in bytes such as `"20GiB"`, `"512MiB"`, `"10GB"` (decimal)
/// or `"123"` (bytes). Units are case-insensitive and may follow a space.
///
/// ```
/// assert_eq!(trove_config::parse_size("1KiB"), Ok(1024));
/// assert_eq!(trove_config::parse_size("10GB"), Ok(10_000_000_000));
/// ```
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the size is empty".to_owned());
    }
    if t.starts_with('-') {
        return Err(format!("`{s}` is negative; a size cannot be"));
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("`{s}` does not start with a number"));
    }
    let (number, unit) = t.split_at(digits);
    if unit.starts_with('.') {
        return Err(format!(
            "`{s}` has a fraction; write it with a smaller unit (`1536MiB`, not `1.5GiB`)"
        ));
    }
    let unit = unit.trim_start();
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, m)| m)
            .ok_or_else(|| format!("unknown unit `{unit}` in `{s}`"))?
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("`{s}` is too large; the limit is 16EiB"))
}

/// A byte count for people, in the units [`parse_size`] reads: a whole number of the
/// largest unit that divides it (`4 MiB`), else one decimal (`1.5 KiB`), or bytes below
/// 1 KiB (`12 B`). The one size formatter of trove and its command line.
///
/// ```
/// use trove_config::format_size;
/// assert_eq!(format_size(12), "12 B");
/// assert_eq!(format_size(1536), "1.5 KiB");
/// assert_eq!(format_size(4 << 20), "4 MiB");
/// ```
pub fn format_size(n: u64) -> String {
    const UNITS: &[(&str, u64)] = &[
        ("EiB", 1 << 60),
        ("PiB", 1 << 50),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for &(name, unit) in UNITS {
        if n >= unit {
            return if n.is_multiple_of(unit) {
                format!("{} {name}", n / unit)
            } else {
                // Precision loss is harmless: this is for reading.
                #[allow(clippy::cast_precision_loss)]
                let value = n as f64 / unit as f64;
                format!("{value:.1} {name}")
            };
        }
    }
    format!("{n} B")
}
