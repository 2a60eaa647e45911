//! A pipeline runner that embeds trove: parse CSV files, aggregate them into a large
//! table, derive a report from the table. Each step prints whether it was served or
//! built, and why.
//!
//! ```text
//! cargo run --release --example pipeline            # first run: builds everything
//! cargo run --release --example pipeline            # second run: served from disk
//! echo "ZZZ,1.0,1" >> pipeline-demo/data/prices-3.csv         # edit one data file
//! cargo run --release --example pipeline            # rebuilds only what depends on it
//! ```
//!
//! The demo data (8 CSV files of 50,000 rows) is generated into `pipeline-demo/` (or the
//! directory given as the first argument) when it is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use trove::{BuildError, Cx, Engine, Recipe};

/// One parsed CSV file: `symbol,price,volume` rows.
#[derive(Clone)]
struct ParseCsv;

#[derive(Serialize, Deserialize)]
struct Rows {
    rows: Vec<(String, f64, u64)>,
}

impl Recipe for ParseCsv {
    const NAME: &'static str = "parse-csv";
    const VERSION: u32 = 1;
    type Args = String; // path relative to the project
    type Output = Rows;

    fn build(&self, cx: &mut Cx, path: &String) -> Result<Rows, BuildError> {
        let text = cx.read_to_string(path)?;
        let mut rows = Vec::new();
        for (n, line) in text.lines().enumerate().skip(1) {
            let mut f = line.split(',');
            let (Some(sym), Some(price), Some(vol)) = (f.next(), f.next(), f.next()) else {
                return Err(BuildError::msg(format!(
                    "{path}:{}: expected 3 fields",
                    n + 1
                )));
            };
            let price: f64 = price
                .trim()
                .parse()
                .map_err(|e| BuildError::msg(format!("{path}:{}: price: {e}", n + 1)))?;
            let vol: u64 = vol
                .trim()
                .parse()
                .map_err(|e| BuildError::msg(format!("{path}:{}: volume: {e}", n + 1)))?;
            rows.push((sym.to_owned(), price, vol));
        }
        Ok(rows.into())
    }
}

impl From<Vec<(String, f64, u64)>> for Rows {
    fn from(rows: Vec<(String, f64, u64)>) -> Self {
        Rows { rows }
    }
}

/// Per-symbol aggregates over every CSV file under `data/`.
#[derive(Clone)]
struct Table;

#[derive(Serialize, Deserialize, PartialEq)]
struct Aggregates {
    by_symbol: BTreeMap<String, (f64, u64, u64)>, // (volume-weighted price sum, volume, rows)
}

impl Recipe for Table {
    const NAME: &'static str = "table";
    const VERSION: u32 = 1;
    type Args = ();
    type Output = Aggregates;

    fn build(&self, cx: &mut Cx, _: &()) -> Result<Aggregates, BuildError> {
        let mut by_symbol = BTreeMap::new();
        // The glob is tracked: adding or removing a CSV file rebuilds the table.
        for path in cx.glob("data/*.csv")? {
            let rel = relative(cx, &path);
            let rows = cx.get(&ParseCsv, &rel)?;
            for (sym, price, vol) in &rows.rows {
                let e = by_symbol.entry(sym.clone()).or_insert((0.0, 0, 0));
                e.0 += price * *vol as f64;
                e.1 += vol;
                e.2 += 1;
            }
        }
        Ok(Aggregates { by_symbol })
    }

    fn check(&self, t: &Aggregates) -> Result<(), String> {
        if t.by_symbol.is_empty() {
            return Err("rows > 0".into());
        }
        Ok(())
    }
}

/// The ten most traded symbols with their volume-weighted average price.
#[derive(Clone)]
struct Report;

impl Recipe for Report {
    const NAME: &'static str = "report";
    const VERSION: u32 = 1;
    type Args = usize; // how many symbols
    type Output = Vec<u8>; // text, stored raw

    fn build(&self, cx: &mut Cx, top: &usize) -> Result<Vec<u8>, BuildError> {
        let table = cx.get(&Table, &())?;
        let mut rows: Vec<_> = table.by_symbol.iter().collect();
        rows.sort_by(|a, b| b.1.1.cmp(&a.1.1).then(a.0.cmp(b.0)));
        let mut out = String::from("symbol  vwap      volume\n");
        for (sym, (wsum, vol, _)) in rows.into_iter().take(*top) {
            out.push_str(&format!("{sym:<6}  {:>8.3}  {vol}\n", wsum / *vol as f64));
        }
        Ok(out.into_bytes())
    }
}

fn relative(cx: &Cx, path: &Path) -> String {
    let root = cx.resolve("");
    path.strip_prefix(&root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Writes deterministic demo data when the directory has none.
fn ensure_demo_data(dir: &Path) -> std::io::Result<()> {
    let data = dir.join("data");
    if data.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(&data)?;
    let symbols = [
        "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "META", "TSLA", "ASML", "SAP", "NESN",
    ];
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for file in 0..8 {
        let mut text = String::from("symbol,price,volume\n");
        for _ in 0..50_000 {
            let sym = symbols[(next() % symbols.len() as u64) as usize];
            let price = 10.0 + (next() % 100_000) as f64 / 100.0;
            let vol = 1 + next() % 1_000;
            text.push_str(&format!("{sym},{price:.2},{vol}\n"));
        }
        std::fs::write(data.join(format!("prices-{file}.csv")), text)?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "pipeline-demo".into()),
    );
    ensure_demo_data(&dir)?;
    let engine = Engine::open_in(&dir)?;
    let started = Instant::now();

    let mut files: Vec<String> = std::fs::read_dir(dir.join("data"))?
        .filter_map(|e| e.ok())
        .map(|e| format!("data/{}", e.file_name().to_string_lossy()))
        .filter(|n| n.ends_with(".csv"))
        .collect();
    files.sort();
    for file in &files {
        let step = Instant::now();
        let served = engine.get_explained(&ParseCsv, file)?;
        println!(
            "parse {file:<22} {:>7} rows  {:>6.1} ms  {}",
            served.value.rows.len(),
            step.elapsed().as_secs_f64() * 1e3,
            served.reason
        );
    }
    let step = Instant::now();
    let table = engine.get_explained(&Table, &())?;
    println!(
        "table {:<22} {:>7} syms  {:>6.1} ms  {}",
        "",
        table.value.by_symbol.len(),
        step.elapsed().as_secs_f64() * 1e3,
        table.reason
    );
    let step = Instant::now();
    let report = engine.get_explained(&Report, &10)?;
    println!(
        "report {:<21} {:>7} bytes {:>6.1} ms  {}",
        "",
        report.value.len(),
        step.elapsed().as_secs_f64() * 1e3,
        report.reason
    );
    println!("total {:.1} ms\n", started.elapsed().as_secs_f64() * 1e3);
    print!("{}", String::from_utf8_lossy(&report.value));
    Ok(())
}
