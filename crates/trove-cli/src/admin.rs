//! Looking after the store and the configuration: `status`, `graph`, `verify`, `gc`,
//! `config check`.

use std::io::Write;
use std::path::Path;

use trove::{GcOptions, GcReport, Residency};

use crate::cli::{GcArgs, GraphFormat};
use crate::failure::{Diagnostic, Failure};
use crate::human::{self, Spinner};
use crate::output;
use crate::project::{self, Project};

/// Lists every stored variant (none when there is no store).
pub(crate) fn status(project: Option<Project>, json: bool) -> Result<u8, Failure> {
    let entries = match &project {
        Some(project) => project.engine.status()?,
        None => Vec::new(),
    };
    if json {
        let rows: Vec<output::Status> = entries
            .iter()
            .map(|e| output::Status {
                recipe: &e.recipe,
                args: human::args_value(&e.args),
                key: e.key.hex(),
                variant: e.variant,
                residency: residency_word(&e.residency),
                stale_because: match &e.residency {
                    Residency::Stale(why) => Some(why.to_string()),
                    _ => None,
                },
                size: e.size,
                age_secs: e.age.as_secs(),
                hits: e.hits,
                reason: &e.reason,
            })
            .collect();
        output::emit_json(&rows)?;
        return Ok(0);
    }
    if entries.is_empty() {
        if let Some(project) = &project {
            eprintln!(
                "the store {} is empty",
                human::in_project(&project.config.store.path, &project.config.dir)
            );
        }
        return Ok(0);
    }
    let header = [
        "OBJECT",
        "RESIDENCY",
        "SIZE",
        "AGE",
        "HITS",
        "BUILT BECAUSE",
    ];
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|e| {
            [
                trove::object_label(&e.recipe, &e.args),
                e.residency.to_string(),
                trove::format_size(e.size),
                human::age(e.age),
                e.hits.to_string(),
                e.reason.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: &[&str]| -> String {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(&header))?;
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
    }
    out.flush()?;
    Ok(0)
}

/// One word for a residency, for scripts (a residency this binary does not know by name
/// is spelled as it displays).
fn residency_word(r: &Residency) -> String {
    match r {
        Residency::Absent => "absent".to_owned(),
        Residency::OnDisk => "disk".to_owned(),
        Residency::InMemory => "memory".to_owned(),
        Residency::Stale(_) => "stale".to_owned(),
        other => other.to_string(),
    }
}

/// Prints the dependency graph (an empty one when there is no store).
pub(crate) fn graph(project: Option<Project>, format: GraphFormat) -> Result<u8, Failure> {
    let graph = match &project {
        Some(project) => project.engine.graph_for_display()?,
        None => trove::Graph::new(),
    };
    let text = match format {
        GraphFormat::Dot => graph.to_dot(),
        GraphFormat::Json => graph.to_json().to_string(),
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(0)
}

/// Verifies the store; exit code 1 when anything was corrupt.
pub(crate) fn verify(project: Option<Project>, json: bool) -> Result<u8, Failure> {
    let spinner = Spinner::start("verifying the store");
    let report = match &project {
        Some(project) => project.engine.verify(),
        None => Ok(trove::VerifyReport::default()),
    };
    drop(spinner);
    let report = report?;
    if json {
        output::emit_json(&output::Verify {
            clean: report.is_clean(),
            records: report.records,
            blobs: report.blobs,
            bytes: report.bytes,
            quarantined_records: report.quarantined_records,
            quarantined_blobs: report.quarantined_blobs,
            corrupt: &report.corrupt,
        })?;
    } else {
        let mut out = std::io::stdout().lock();
        for problem in &report.corrupt {
            writeln!(out, "corrupt: {problem}")?;
        }
        writeln!(
            out,
            "checked {} records and {} blobs ({})",
            report.records,
            report.blobs,
            trove::format_size(report.bytes)
        )?;
        if report.is_clean() {
            writeln!(out, "ok: nothing corrupt")?;
        } else {
            writeln!(
                out,
                "quarantined {} records and {} blobs; they are rebuilt when next asked for",
                report.quarantined_records, report.quarantined_blobs
            )?;
        }
        out.flush()?;
    }
    Ok(if report.is_clean() { 0 } else { 1 })
}

/// `gc`'s `--max-size`, parsed (for the local store and the shared tier alike).
pub(crate) fn max_size(args: &GcArgs) -> Result<Option<u64>, Failure> {
    args.max_size
        .as_deref()
        .map(|text| {
            trove::parse_size(text).map_err(|e| {
                Failure::usage(
                    Diagnostic::error(format!("--max-size {text}: {e}"))
                        .hint("sizes look like 500MiB, 20GiB or 1000000"),
                )
            })
        })
        .transpose()
}

/// Collects garbage (or lists it, with `--dry-run`); with no store there is none.
pub(crate) fn gc(config_flag: Option<&Path>, args: &GcArgs) -> Result<u8, Failure> {
    // The size is checked before the store is looked for: a typo is an error anywhere.
    let max_size = max_size(args)?;
    let Some(project) = project::open_existing(config_flag)? else {
        return print_gc(
            &GcReport {
                dry_run: args.dry_run,
                ..GcReport::default()
            },
            &[],
            args.json,
        );
    };
    let spinner = Spinner::start(if args.dry_run {
        "looking for garbage"
    } else {
        "collecting garbage"
    });
    let report = project.engine.gc(GcOptions {
        dry_run: args.dry_run,
        max_size,
        stale: args.stale,
    });
    drop(spinner);
    let store = project.config.store.path.as_path();
    print_gc(&report?, &[store, project.config.dir.as_path()], args.json)
}

/// Prints what gc removed, paths relative to the first of `bases` they are under.
fn print_gc(report: &GcReport, bases: &[&Path], json: bool) -> Result<u8, Failure> {
    if json {
        output::emit_json(&output::Gc {
            dry_run: report.dry_run,
            bytes: report.bytes,
            removals: report
                .removals
                .iter()
                .map(|r| output::Removal {
                    what: human::relative(Path::new(&r.what), bases),
                    reason: &r.reason,
                    bytes: r.bytes,
                })
                .collect(),
            kept: report.kept,
        })?;
        return Ok(0);
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut out = std::io::stdout().lock();
    for r in &report.removals {
        writeln!(
            out,
            "{verb}  {}  ({})  {}",
            human::relative(Path::new(&r.what), bases),
            r.reason,
            trove::format_size(r.bytes)
        )?;
    }
    let total_verb = if report.dry_run {
        "would free"
    } else {
        "freed"
    };
    writeln!(
        out,
        "total: {} items, {total_verb} {}; {} variant{} kept",
        report.removals.len(),
        trove::format_size(report.bytes),
        report.kept,
        if report.kept == 1 { "" } else { "s" }
    )?;
    out.flush()?;
    Ok(0)
}

/// Parses and validates the configuration; prints what it resolved, paths relative to the
/// project (absolute only outside it).
pub(crate) fn config_check(flag: Option<&Path>) -> Result<u8, Failure> {
    let config = project::load_config(flag)?;
    for (name, rc) in &config.recipes {
        for need in &rc.needs {
            if config.recipe(&need.recipe).is_none() {
                return Err(Failure::usage(Diagnostic::error(format!(
                    "{}: recipe `{name}` needs `{need}`, which is not configured",
                    project::config_label(&config)
                ))));
            }
        }
    }
    let n = config.recipes.len();
    let relative = |path: &Path| human::in_project(path, &config.dir);
    let mut lines = vec![format!(
        "ok: {} ({n} recipe{})",
        project::config_label(&config),
        if n == 1 { "" } else { "s" }
    )];
    if let Some(local) = &config.local_file {
        lines.push(format!("local: {}", relative(local)));
    }
    lines.push(format!("store: {}", relative(&config.store.path)));
    let roots: Vec<String> = config.watch.roots.iter().map(|r| relative(r)).collect();
    lines.push(format!("watch: {}", roots.join(", ")));
    if let Some(shared) = &config.shared {
        let mut line = format!("shared: {}", shared.url);
        if shared.read_only {
            line.push_str(" (read-only)");
        }
        if let Some(lease) = &shared.lease {
            line.push_str(&format!(", leases at {}", lease.url));
        }
        let secret = if std::env::var_os(&shared.secret_env).is_some_and(|v| !v.is_empty()) {
            "set"
        } else {
            "NOT SET"
        };
        line.push_str(&format!(", secret from ${} ({secret})", shared.secret_env));
        lines.push(line);
    }
    human::emit(&lines.join("\n"))?;
    Ok(0)
}
