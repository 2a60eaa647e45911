//! Shared libraries mapped into the process, so a build that loads one (directly or
//! through a library it calls) gets it in its trace without declaring it.

use std::collections::BTreeMap;

/// The shared libraries mapped now, each with the inode that is mapped (Linux:
/// `/proc/self/maps`; elsewhere none). The inode tells whether the file at the path is
/// still the code the process runs.
pub(crate) fn mapped_libraries() -> BTreeMap<String, u64> {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return BTreeMap::new();
    };
    maps.lines()
        .filter_map(|line| {
            // address perms offset dev inode pathname
            let mut fields = line.split_whitespace();
            let inode = fields.nth(4)?.parse::<u64>().ok()?;
            let path = fields.next()?;
            let name = path.rsplit('/').next()?;
            (path.starts_with('/') && (name.ends_with(".so") || name.contains(".so.")))
                .then(|| (path.to_owned(), inode))
        })
        .collect()
}
