//! Every `.ron` file under the workspace's `config/` directory loads.

use std::path::{Path, PathBuf};

use trove_config::{Config, LOCAL_FILE_NAME};

fn ron_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            ron_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "ron") {
            out.push(path);
        }
    }
}

#[test]
fn every_file_in_config_loads() {
    let config_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut files = Vec::new();
    ron_files(&config_dir, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "no .ron files under {}",
        config_dir.display()
    );

    for file in &files {
        let name = file.file_name().unwrap().to_str().unwrap();
        if name == LOCAL_FILE_NAME {
            // Applied by loading the trove.ron beside it.
            continue;
        }
        if name.ends_with(".local.example.ron") {
            // An overlay example: apply it to the trove.ron beside it.
            let dir = tempfile::tempdir().unwrap();
            let main = dir.path().join("trove.ron");
            std::fs::copy(file.with_file_name("trove.ron"), &main).unwrap();
            std::fs::copy(file, dir.path().join(LOCAL_FILE_NAME)).unwrap();
            if let Err(e) = Config::load(&main) {
                panic!("{} as trove.local.ron:\n{e}", file.display());
            }
            continue;
        }
        if let Err(e) = Config::load(file) {
            panic!("{e}");
        }
    }
}

#[test]
fn the_reference_sets_every_key() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/trove.ron");
    let config = Config::load(&file).unwrap();
    assert!(config.store.max_size.is_some());
    assert_eq!(config.store.variants, 8);
    assert!(config.max_age.is_some());
    assert!(!config.versions.is_empty());
    let prices = config.recipe("prices").unwrap();
    assert!(prices.command.is_some() && prices.check.is_some() && prices.max_age.is_some());
    assert!(!prices.inputs.is_empty() && !prices.env.is_empty() && !prices.needs.is_empty());
    assert!(!prices.versions.is_empty());
    assert_eq!(prices.trace, Some(true));
    assert!(config.trace && config.trace_ignore == ["/var/cache/**"]);
    assert!(config.recipes.values().any(|r| r.command.is_none()));
}
