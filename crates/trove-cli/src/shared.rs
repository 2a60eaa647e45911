//! `trove status --shared` and `trove gc --shared`: the team's shared tier.

use std::io::Write;
use std::path::Path;

use trove::{Error, SharedGcOptions, SharedHealth};

use crate::cli::GcArgs;
use crate::failure::{Diagnostic, Failure};
use crate::human;
use crate::output::{
    self, SharedGc, SharedHealthJson, SharedOrphanJson, SharedRemovalJson, SharedStatusJson,
};
use crate::project::{self, Project};

/// The project, with a usage error when no shared tier is configured.
fn open(flag: Option<&Path>, command: &str) -> Result<Project, Failure> {
    let project = project::open_configured(flag, command)?;
    if project.config.shared.is_none() {
        return Err(Failure::usage(
            Diagnostic::error(format!(
                "`trove {command}` needs a shared tier, and {} configures none",
                project::config_label(&project.config)
            ))
            .hint("add `shared: (url: \"s3://bucket/trove?endpoint=...\", secret_env: \"TROVE_SHARED_SECRET\")` to trove.ron"),
        ));
    }
    Ok(project)
}

fn failed(e: Error) -> Failure {
    match e {
        Error::SharedTier(message) => Failure::other(
            Diagnostic::error(format!("shared tier: {message}"))
                .hint("check `shared.url` in trove.ron and that the store answers"),
        ),
        e => Failure::from(e),
    }
}

fn health_json(h: &SharedHealth) -> SharedHealthJson<'_> {
    SharedHealthJson {
        url: &h.url,
        read_only: h.read_only,
        leases: h.leases,
        calls: h.calls,
        failures: h.failures,
        timeouts: h.timeouts,
        skipped: h.skipped,
        retry_in_ms: h.retry_in.map(|d| d.as_millis() as u64),
        last_error: h.last_error.as_deref(),
        records_verified: h.records_verified,
        records_refused: h.records_refused,
        blobs_fetched: h.blobs_fetched,
        blobs_corrupt: h.blobs_corrupt,
        published: h.published,
    }
}

/// One line for people: where the tier is and how it has answered.
fn health_line(h: &SharedHealth) -> String {
    let mut line = format!(
        "shared: {} ({}{}): {} calls, {} failures, {} timeouts, {} skipped; \
         {} records verified, {} refused; {} blobs fetched, {} corrupt",
        h.url,
        if h.read_only {
            "read-only"
        } else {
            "read-write"
        },
        if h.leases { ", leases" } else { "" },
        h.calls,
        h.failures,
        h.timeouts,
        h.skipped,
        h.records_verified,
        h.records_refused,
        h.blobs_fetched,
        h.blobs_corrupt,
    );
    if let Some(e) = &h.last_error {
        line.push_str(&format!("; last error: {e}"));
    }
    line
}

/// `trove status --shared`.
pub(crate) fn status(flag: Option<&Path>, json: bool) -> Result<u8, Failure> {
    let project = open(flag, "status --shared")?;
    let status = project.engine.shared_status().map_err(failed)?;
    if json {
        output::emit_json(&SharedStatusJson {
            entries: status
                .entries
                .iter()
                .map(|e| output::SharedEntryJson {
                    recipe: &e.recipe,
                    args: human::args_value(&e.args),
                    key: e.key.hex(),
                    variants: e.variants,
                    size: e.size,
                    age_secs: e.age.as_secs(),
                })
                .collect(),
            refused: status
                .refused
                .iter()
                .map(|(path, reason)| output::SharedRefusedJson { path, reason })
                .collect(),
            health: health_json(&status.health),
        })?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    if status.entries.is_empty() {
        writeln!(out, "the shared tier holds nothing")?;
    } else {
        let rows: Vec<[String; 5]> = status
            .entries
            .iter()
            .map(|e| {
                [
                    trove::object_label(&e.recipe, &e.args),
                    e.key.hex()[..12].to_owned(),
                    e.variants.to_string(),
                    trove::format_size(e.size),
                    human::age(e.age),
                ]
            })
            .collect();
        let header = ["OBJECT", "KEY", "VARIANTS", "SIZE", "AGE"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; 5]| {
            let mut s = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i == 4 {
                    s.push_str(cell);
                } else {
                    s.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            s
        };
        writeln!(out, "{}", line(header))?;
        for row in &rows {
            writeln!(out, "{}", line(row.each_ref().map(String::as_str)))?;
        }
    }
    for (path, reason) in &status.refused {
        writeln!(out, "refused: {path}: {reason}")?;
    }
    writeln!(out, "{}", health_line(&status.health))?;
    out.flush()?;
    Ok(0)
}

/// `trove gc --shared`.
pub(crate) fn gc(flag: Option<&Path>, args: &GcArgs) -> Result<u8, Failure> {
    let max_size = crate::admin::max_size(args)?;
    let max_age = match &args.max_age {
        None => None,
        Some(text) => Some(trove::parse_duration(text).map_err(|e| {
            Failure::usage(
                Diagnostic::error(format!("--max-age {text}: {e}"))
                    .hint("durations look like 30d, 12h or 90m"),
            )
        })?),
    };
    if max_size.is_none() && max_age.is_none() {
        return Err(Failure::usage(
            Diagnostic::error("`trove gc --shared` needs --max-age, --max-size or both")
                .hint("for example: trove gc --shared --max-age 30d --dry-run"),
        ));
    }
    let project = open(flag, "gc --shared")?;
    let report = project
        .engine
        .shared_gc(&SharedGcOptions {
            dry_run: args.dry_run,
            max_size,
            max_age,
            orphan_grace: None,
        })
        .map_err(failed)?;
    if args.json {
        output::emit_json(&SharedGc {
            dry_run: args.dry_run,
            bytes: report.freed,
            removals: report
                .removed
                .iter()
                .map(|r| SharedRemovalJson {
                    recipe: &r.recipe,
                    args: human::args_value(&r.args),
                    key: r.key.hex(),
                    reason: &r.reason,
                    bytes: r.size,
                    age_secs: r.age.as_secs(),
                })
                .collect(),
            kept: report.kept,
            orphans: report
                .orphans
                .iter()
                .map(|o| SharedOrphanJson {
                    blob: o.blob.hex(),
                    bytes: o.size,
                    unnamed_secs: o.unnamed_for.as_secs(),
                })
                .collect(),
            orphans_waiting: report.orphans_waiting,
            orphans_skipped: report.orphans_skipped.clone(),
        })?;
        return Ok(0);
    }
    let (verb, total_verb) = if args.dry_run {
        ("would remove", "would free")
    } else {
        ("removed", "freed")
    };
    let mut out = std::io::stdout().lock();
    for r in &report.removed {
        writeln!(
            out,
            "{verb}  {} {}  ({})  {}",
            trove::object_label(&r.recipe, &r.args),
            &r.key.hex()[..12],
            r.reason,
            trove::format_size(r.size)
        )?;
    }
    for o in &report.orphans {
        writeln!(
            out,
            "{verb}  orphan blob {}  (no record has named it for {})  {}",
            &o.blob.hex()[..12],
            trove::format_duration(o.unnamed_for),
            o.size
                .map_or_else(|| "size unknown".to_string(), trove::format_size)
        )?;
    }
    if report.orphans_waiting > 0 {
        writeln!(
            out,
            "kept {} blob{} no record names: a publish may be between its blob and its \
             record; gc removes such a blob once collections at least ten minutes apart \
             have found it unnamed",
            report.orphans_waiting,
            if report.orphans_waiting == 1 { "" } else { "s" },
        )?;
    }
    if let Some(why) = &report.orphans_skipped {
        writeln!(out, "orphan blobs not looked for: {why}")?;
    }
    writeln!(
        out,
        "total: {} variant{}, {total_verb} {}; {} variant{} kept in the shared tier",
        report.removed.len(),
        if report.removed.len() == 1 { "" } else { "s" },
        trove::format_size(report.freed),
        report.kept,
        if report.kept == 1 { "" } else { "s" }
    )?;
    out.flush()?;
    Ok(0)
}
