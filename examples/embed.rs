//! README's "Embedding the engine", as a program CI builds. Run it in the example
//! project: `cd config/example && cargo run --example embed`.

use std::sync::Arc;

use trove::{BuildError, Config, Cx, Engine, GcOptions, Recipe};

/// USD per unit of each currency, from `data/fx.csv`.
#[derive(Clone)]
struct Rates;

impl Recipe for Rates {
    const NAME: &'static str = "rates";
    const VERSION: u32 = 1;
    type Args = ();
    type Output = Vec<(String, f64)>;
    fn build(&self, cx: &mut Cx, _: &()) -> Result<Self::Output, BuildError> {
        let csv = cx.read_to_string("data/fx.csv")?; // tracked file read
        let mut rates = Vec::new();
        for (currency, rate) in csv.lines().skip(1).filter_map(|l| l.split_once(',')) {
            rates.push((currency.to_owned(), rate.parse().map_err(BuildError::msg)?));
        }
        Ok(rates)
    }
}

/// Prices in USD of the symbols quoted in one currency.
#[derive(Clone)]
struct Table;

impl Recipe for Table {
    const NAME: &'static str = "table";
    const VERSION: u32 = 3; // bump when the code changes meaning
    type Args = String; // canonically encoded into the key
    type Output = Vec<(String, f64)>; // serde; a Vec<u8> output is stored raw
    fn build(&self, cx: &mut Cx, currency: &String) -> Result<Self::Output, BuildError> {
        let csv = cx.read_to_string("data/prices.csv")?; // tracked file read
        let scale = cx.env("SCALE").and_then(|s| s.parse().ok()).unwrap_or(1.0); // tracked env var
        let rates = cx.get(&Rates, &())?; // tracked object (early cutoff)
        let usd = rates
            .iter()
            .find(|(c, _)| c == currency)
            .map_or(1.0, |(_, r)| *r);
        let mut table = Vec::new();
        for line in csv.lines().skip(1) {
            // date,symbol,currency,price
            if let [_, symbol, quoted, price] = line.split(',').collect::<Vec<_>>()[..]
                && quoted == currency
            {
                let price: f64 = price.parse().map_err(BuildError::msg)?;
                table.push((symbol.to_owned(), price * usd * scale));
            }
        }
        Ok(table)
    }
    fn check(&self, t: &Self::Output) -> Result<(), String> {
        // invariants, checked before an object is served from disk
        if t.is_empty() {
            Err("rows > 0".into())
        } else {
            Ok(())
        }
    }
}

fn main() -> Result<(), trove::Error> {
    let engine = Engine::open(Config::load("trove.ron".as_ref())?)?; // or Engine::open_in(dir)
    engine.register(Rates); // lets a stored table's dependency on rates be verified
    let eur = "EUR".to_owned();
    let table: Arc<Vec<(String, f64)>> = engine.get(&Table, &eur)?;
    let served = engine.get_explained(&Table, &eur)?; // served.reason: "hit memory"
    println!("{} prices ({})", table.len(), served.reason);
    println!("{}", engine.explain(&Table, &eur)?); // what get would do, building nothing
    println!("{}", engine.residency(&Table, &eur)?); // absent, on disk, in memory, stale: why
    let _watch = engine.watch()?; // during development: memory hits with no system call
    println!("{:?}", engine.stats()); // memory/watched/disk hits, builds, files checked
    let gc = engine.gc(GcOptions {
        dry_run: true,
        ..GcOptions::default()
    })?; // what can never be served again
    println!(
        "gc would remove {} items and keep {} variants",
        gc.removals.len(),
        gc.kept
    );
    Ok(())
}
