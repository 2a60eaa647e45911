//! The reader on small inputs: positions, kinds, and what it refuses.

use super::*;

fn kinds(src: &str) -> String {
    format!("{:?}", parse(src).map(|n| n.kind))
}

#[test]
fn reads_the_subset_a_configuration_uses() {
    let src = r##"
        #![enable(implicit_some)]
        Config( // a comment
            /* nested /* block */ comment */
            a: [1, -2, 0x1f, 1_000,],
            b: { "k": "v\n\u{e9}", r#"raw"#: true },
            c: Some(None),
            d: (),
            e: (1, 2.5),
            r#f: 'c',
        )
    "##;
    let node = parse(src).unwrap();
    let Kind::Struct(fields) = node.kind else {
        panic!("not a struct")
    };
    let keys: Vec<_> = fields.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c", "d", "e", "f"]);
    let Kind::List(items) = &fields[0].value.kind else {
        panic!("not a list")
    };
    let values: Vec<_> = items
        .iter()
        .map(|n| (format!("{:?}", n.kind), &src[n.start..n.start + 2]))
        .collect();
    assert_eq!(
        values,
        [
            ("Int(Some(1))".to_owned(), "1,"),
            ("Int(Some(-2))".to_owned(), "-2"),
            ("Int(Some(31))".to_owned(), "0x"),
            ("Int(Some(1000))".to_owned(), "1_"),
        ]
    );
    assert!(format!("{:?}", fields[1].value.kind).contains("Str(\"v\\né\")"));
    assert!(format!("{:?}", fields[1].value.kind).contains("Str(\"raw\")"));
    assert_eq!(&src[fields[2].key_start..fields[2].key_start + 1], "c");
}

#[test]
fn keeps_integers_too_large_for_i128() {
    assert_eq!(
        kinds("999999999999999999999999999999999999999999"),
        "Ok(Int(None))"
    );
}
