//! Entry points for the fuzz targets in `fuzz/` (not a stable API).

use rusqlite::Connection;
use rusqlite::types::Value;

use crate::Record;
use crate::record::decode_row;

/// Decodes one index row whose 16 columns are carved out of `data`, exactly as
/// [`Store::variants`](crate::Store::variants) decodes the rows it reads: each column is a
/// tag byte (`0` NULL, `1` integer, `2` real, `3` text, `4` blob) followed, for the last
/// three kinds, by a one-byte length and that many bytes (missing bytes end the input;
/// missing columns are NULL). Text columns may hold invalid UTF-8, as a damaged file can.
///
/// Returns the record and `Some(reason)` when the decoder found it corrupt. Never panics.
pub fn decode_record(data: &[u8]) -> Option<(Record, Option<String>)> {
    let mut rest = data;
    let mut take = |n: usize| -> &[u8] {
        let n = n.min(rest.len());
        let (head, tail) = rest.split_at(n);
        rest = tail;
        head
    };
    let mut values: Vec<Value> = Vec::with_capacity(16);
    for _ in 0..16 {
        let tag = take(1).first().copied().unwrap_or(0);
        let value = match tag % 5 {
            0 => Value::Null,
            1 => {
                let mut b = [0u8; 8];
                let got = take(8);
                b[..got.len()].copy_from_slice(got);
                Value::Integer(i64::from_le_bytes(b))
            }
            2 => {
                let mut b = [0u8; 8];
                let got = take(8);
                b[..got.len()].copy_from_slice(got);
                Value::Real(f64::from_le_bytes(b))
            }
            _ => {
                // Text and blobs are both bound as bytes; text columns are cast to TEXT in
                // the query below, so invalid UTF-8 reaches the decoder as a damaged file
                // would hand it over.
                let len = usize::from(take(1).first().copied().unwrap_or(0));
                Value::Blob(take(len).to_vec())
            }
        };
        values.push(value);
    }
    // The row id must be an integer (SQLite guarantees it).
    values[0] = Value::Integer(1);
    let conn = Connection::open_in_memory().ok()?;
    let mut sql = String::from("SELECT ?1");
    for i in 2..=16 {
        sql.push_str(&format!(", ?{i}"));
    }
    // Text columns are cast so that decode_row sees SQLite's TEXT type with the raw bytes.
    let text_columns = text_columns(data);
    let sql = cast_text(&sql, &text_columns);
    let decoded = conn
        .query_row(&sql, rusqlite::params_from_iter(values.iter()), decode_row)
        .ok()?;
    Some((decoded.record, decoded.corrupt))
}

/// Which columns the input tags as text (tag 3).
fn text_columns(data: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut i = 0;
    for col in 1..=16 {
        let Some(&tag) = data.get(i) else { break };
        i += 1;
        match tag % 5 {
            0 => {}
            1 | 2 => i += 8,
            kind => {
                let len = usize::from(data.get(i).copied().unwrap_or(0));
                i += 1 + len;
                if kind == 3 && col > 1 {
                    out.push(col);
                }
            }
        }
    }
    out
}

fn cast_text(sql: &str, text_columns: &[usize]) -> String {
    let mut out = String::from("SELECT ");
    let parts: Vec<String> = sql
        .trim_start_matches("SELECT ")
        .split(", ")
        .enumerate()
        .map(|(i, p)| {
            if text_columns.contains(&(i + 1)) {
                format!("CAST({p} AS TEXT)")
            } else {
                p.to_owned()
            }
        })
        .collect();
    out.push_str(&parts.join(", "));
    out
}
