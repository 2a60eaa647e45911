//! Depfiles: both forms, make's escapes as compilers write them, the files GCC really
//! writes, and a command recipe that tracks its headers through `$TROVE_DEPFILE`.

mod support;

use std::path::Path;
use std::process::Command;

use support::Project;
use trove::fuzzing::parse_depfile;
use trove::{CommandRecipe, Config, Engine, Reason};

/// Parses `depfile` and checks the inputs it names, in order.
fn check(depfile: &str, expect: &[&str]) {
    match parse_depfile(depfile.as_bytes()) {
        Ok(paths) => assert_eq!(paths, expect, "depfile:\n{depfile}"),
        Err(e) => panic!("refused: {e}\ndepfile:\n{depfile}"),
    }
}

/// Parses `depfile` and checks it is refused with a message holding every part of `expect`.
fn check_refused(depfile: &[u8], expect: &[&str]) {
    match parse_depfile(depfile) {
        Ok(paths) => panic!(
            "accepted as {paths:?}: {}",
            String::from_utf8_lossy(depfile)
        ),
        Err(message) => {
            for part in expect {
                assert!(message.contains(part), "`{message}` lacks `{part}`");
            }
        }
    }
}

// ---------------------------------------------------------------- one path a line

#[test]
fn one_path_a_line_keeps_each_line_as_written() {
    check(
        "a.txt\r\n\r\n\n b c.txt\nsub/d e.h\n",
        &["a.txt", " b c.txt", "sub/d e.h"],
    );
    check("C:/include/a.h\n/abs/b.h", &["C:/include/a.h", "/abs/b.h"]);
    check("a.h\nb.h\na.h\n", &["a.h", "b.h"]);
    check("", &[]);
    check("\n \r\n\t\n", &[]);
}

#[test]
fn only_the_first_line_with_a_name_chooses_the_form() {
    // No `:` then whitespace on the first line: every line is a path, colons and all.
    check("a.txt\nnotes: b.txt\n", &["a.txt", "notes: b.txt"]);
    // Blank lines and comments before the first rule do not count.
    check("\n\n# generated \\\n  by hand\nout.o: a.c\n", &["a.c"]);
}

// ---------------------------------------------------------------- make form

#[test]
fn a_rule_names_its_prerequisites_not_its_targets() {
    check("out.o: a.c b.h\n", &["a.c", "b.h"]);
    check("out.o : a.c\n", &["a.c"]);
    check("out.o:\n", &[]);
    check("a.o b.o: x y\n", &["x", "y"]);
    check("out.o:: a.c\n", &["a.c"]);
}

#[test]
fn backslash_newline_continues_a_rule_with_lf_or_crlf() {
    check("out.o: \\\n  a.c \\\n  b.h\n", &["a.c", "b.h"]);
    check("out.o: \\\r\n  a.c \\\r\n  b.h\r\n", &["a.c", "b.h"]);
    check("out.o: a.c\\\n b.h", &["a.c", "b.h"]);
    check(" \\\n  out: in\n", &["in"]);
    check("out.o \\\nmore.o: a.c\n", &["a.c"]);
}

#[test]
fn several_rules_give_their_prerequisites_once_in_first_seen_order() {
    check("foo: x y\nbar: y z\nfoo: x\n", &["x", "y", "z"]);
    check("foo: x\r\nfoo: y\r\nfoo \\\r\nfoo: z\r\n", &["x", "y", "z"]);
    check(" foo: x\n foo: y\n", &["x", "y"]);
}

#[test]
fn phony_rules_from_dash_mp_add_nothing() {
    check(
        "main.o: main.c inc/x.h my\\ header.h\ninc/x.h:\nmy\\ header.h:\n",
        &["main.c", "inc/x.h", "my header.h"],
    );
    // A target is not an input, even when no rule lists it as a prerequisite.
    check("out: a\nonly-a-target.h:\n", &["a"]);
}

#[test]
fn escaped_spaces_follow_the_two_n_plus_one_backslash_rule() {
    check("out: a\\ b.h c.h\n", &["a b.h", "c.h"]);
    // 2N+1 backslashes and a space: N backslashes and a space inside the name.
    check("out: x\\\\\\ y\n", &["x\\ y"]);
    check("out: x\\\\\\\\\\ y\n", &["x\\\\ y"]);
    // 2N backslashes and a space: kept, and the name ends.
    check("out: x\\\\ y\n", &["x\\\\", "y"]);
    // A tab is escaped like a space.
    check("out: a\\\tb.h\tc.h\n", &["a\tb.h", "c.h"]);
    check("a\\ bc\\ def:   a\\ b c d", &["a b", "c", "d"]);
}

#[test]
fn hash_is_escaped_with_a_backslash_and_otherwise_starts_a_comment() {
    check("out: odd\\#1.h\n", &["odd#1.h"]);
    check("out: x\\\\#1.h\n", &["x\\#1.h"]);
    check("out: a.h # generated: b.h\nout: c.h\n", &["a.h", "c.h"]);
    check("# comment: not a rule\nout: a.h\n", &["a.h"]);
}

#[test]
fn dollar_dollar_is_a_dollar() {
    check("out: odd$$name.h a$b.h\n", &["odd$name.h", "a$b.h"]);
}

#[test]
fn colons_inside_names_are_escaped_or_not_followed_by_whitespace() {
    check(
        "c\\:\\gcc\\x86_64\\stddef.o: \\\n c:\\gcc\\x86_64\\stddef.h \n",
        &["c:\\gcc\\x86_64\\stddef.h"],
    );
    check("foo.o: //?/c:/bar.h\n", &["//?/c:/bar.h"]);
    check("out: a\\:b.h\n", &["a:b.h"]);
    // A backslash before the separating `:` stays in the target's name.
    check("foo1\\: x\nfoo1\\:\n", &["x"]);
}

#[test]
fn other_backslashes_and_special_characters_are_kept_as_written() {
    check(
        "Project\\Dir\\Foo.res : \\\n  Dir\\Library\\Foo.rc \\\n  \\\\share\\info\\x.h \\\n",
        &["Dir\\Library\\Foo.rc", "\\\\share\\info\\x.h"],
    );
    check(
        "C:/Program\\ Files\\ (x86)/crtdefs.h: \\\n en@quot.header~ t+t-x!=1 \\\n \
         cn={0}core.ldif Fu\u{df}ball.h a[1]b@2%c a;b*c.h 'q\"&.h\n",
        &[
            "en@quot.header~",
            "t+t-x!=1",
            "cn={0}core.ldif",
            "Fu\u{df}ball.h",
            "a[1]b@2%c",
            "a;b*c.h",
            "'q\"&.h",
        ],
    );
}

#[test]
fn an_order_only_bar_is_dropped_and_what_follows_it_is_still_an_input() {
    check("out: a.h | b.h\n", &["a.h", "b.h"]);
    check("out: a|b.h\n", &["a|b.h"]);
}

// ---------------------------------------------------------------- refusals

#[test]
fn a_make_rule_without_a_separator_is_refused_with_its_line() {
    check_refused(b"out: a\nb c\n", &["line 2", "no `:`"]);
    // Lines are counted physically, continuations included.
    check_refused(b"out: a \\\n b\n\nc d\n", &["line 4"]);
    check_refused(b"out.o: a.c\r\nheader.h\r\n", &["line 2"]);
}

#[test]
fn a_second_separator_in_a_rule_is_refused_with_its_line() {
    check_refused(b"out: a \\\n  b: c\n", &["line 2", "`b:`"]);
}

#[test]
fn nul_bytes_non_utf8_and_oversized_depfiles_are_refused_with_where() {
    check_refused(b"out: a\n\0\n", &["line 2", "NUL"]);
    check_refused(b"a.txt\nb\0.txt\n", &["line 2", "NUL"]);
    check_refused(b"out: a\n\xff.h\n", &["line 2", "byte 7", "UTF-8"]);
    check_refused(&vec![b'a'; (64 << 20) + 1], &["limit"]);
}

// ---------------------------------------------------------------- the real compiler

/// A C project: `a.c` includes a header from a subdirectory (which includes its
/// neighbour), one found through `-I`, one with a space and one with `$` and `#` in its
/// name.
fn c_project() -> Project {
    let p = Project::new();
    p.write(
        "a.c",
        "#include \"inc/x.h\"\n#include \"my header.h\"\n#include <lib/z.h>\n\
         #include \"odd$name#1.h\"\nint main(void) { return X + Y + Z + W; }\n",
    );
    p.write("inc/x.h", "#include \"y.h\"\n#define X 1\n");
    p.write("inc/y.h", "#define Y 2\n");
    p.write("my header.h", "/* a space in the name */\n");
    p.write("include/lib/z.h", "#define Z 3\n#define W 4\n");
    p.write("odd$name#1.h", "");
    p.write("unused.h", "#define UNUSED 0\n");
    p
}

/// Runs gcc in `dir` with `flags` and the usual `-MD -MF deps.d -c a.c -o a.o`, and
/// returns the depfile it wrote.
fn gcc_depfile(dir: &Path, flags: &[&str]) -> Vec<u8> {
    let status = Command::new("gcc")
        .current_dir(dir)
        // No system headers (stdc-predef.h): the set below is then exact.
        .args(["-nostdinc", "-Iinclude"])
        .args(flags)
        .args(["-MD", "-MF", "deps.d", "-c", "a.c", "-o", "a.o"])
        .status()
        .expect("gcc is needed for the depfile tests");
    assert!(status.success(), "gcc failed");
    std::fs::read(dir.join("deps.d")).unwrap()
}

const GCC_INPUTS: [&str; 6] = [
    "a.c",
    "inc/x.h",
    "inc/y.h",
    "my header.h",
    "include/lib/z.h",
    "odd$name#1.h",
];

#[test]
fn the_depfile_gcc_writes_names_exactly_the_source_and_the_headers_it_included() {
    let p = c_project();
    let written = gcc_depfile(p.root(), &[]);
    let paths = parse_depfile(&written).unwrap();
    assert_eq!(paths, GCC_INPUTS, "{}", String::from_utf8_lossy(&written));
    assert!(paths.iter().all(|path| p.path(path).is_file()));
}

#[test]
fn the_phony_rules_of_gcc_dash_mp_add_no_inputs() {
    let p = c_project();
    let written = gcc_depfile(p.root(), &["-MP"]);
    assert!(
        String::from_utf8_lossy(&written).contains("\ninc/x.h:"),
        "gcc -MP wrote phony rules: {}",
        String::from_utf8_lossy(&written)
    );
    assert_eq!(parse_depfile(&written).unwrap(), GCC_INPUTS);
}

// ---------------------------------------------------------------- through the engine

/// A project whose recipe `pre` preprocesses `main.c` with gcc, which writes the headers
/// it read to `$TROVE_DEPFILE`; each build appends a line to `builds.log`.
fn preprocessor_project() -> (Project, Config) {
    let p = Project::new();
    p.write(
        "main.c",
        "#include \"inc/used.h\"\nint main(void) { return USED; }\n",
    );
    p.write("inc/used.h", "#include \"nested.h\"\n#define USED NESTED\n");
    p.write("inc/nested.h", "#define NESTED 1\n");
    p.write("inc/unused.h", "#define UNUSED 0\n");
    let source = r#"(recipes: {
        "pre": (command: ["sh", "-c", "echo build >> builds.log; gcc -nostdinc -P -E -MD -MF \"$TROVE_DEPFILE\" main.c"]),
    })"#;
    let config = Config::parse(source, &p.path("trove.ron")).unwrap();
    // A depfile's headers are fingerprinted after gcc exits: one stamped in the tick the
    // build starts in might have been saved while gcc ran, and the object would not be
    // stored. Users save a header a moment before they ask; the test waits that moment.
    p.settle();
    (p, config)
}

/// Asks a new engine (so the answer comes from disk or a build) for `pre`.
fn get_pre(config: &Config) -> (String, Reason) {
    let engine = Engine::open(config.clone()).unwrap();
    let recipe = CommandRecipe::new("pre", config.recipes["pre"].clone());
    let served = engine.get_explained(&recipe, &vec![]).unwrap();
    (
        String::from_utf8(served.value.to_vec().unwrap()).unwrap(),
        served.reason,
    )
}

fn builds(p: &Project) -> usize {
    std::fs::read_to_string(p.path("builds.log"))
        .unwrap()
        .lines()
        .count()
}

#[test]
fn a_command_recipe_rebuilds_when_a_header_gcc_reported_changes_and_only_then() {
    let (p, config) = preprocessor_project();
    let (out, reason) = get_pre(&config);
    assert!(matches!(reason, Reason::Built(_)), "{reason}");
    assert!(out.contains("return 1;"), "{out}");

    assert_eq!(get_pre(&config).1, Reason::HitDisk);

    // A header nobody includes is not an input.
    p.write("inc/unused.h", "#define UNUSED 1\n");
    assert_eq!(get_pre(&config).1, Reason::HitDisk);
    assert_eq!(builds(&p), 1);

    // A header included through another one is.
    p.write("inc/nested.h", "#define NESTED 2\n");
    p.settle();
    let (out, reason) = get_pre(&config);
    let reason = reason.to_string();
    assert!(
        reason.starts_with("built: inc/nested.h changed"),
        "{reason}"
    );
    assert!(out.contains("return 2;"), "{out}");
    assert_eq!(get_pre(&config).1, Reason::HitDisk);
    assert_eq!(builds(&p), 2);
}

#[test]
fn a_depfile_that_cannot_be_parsed_fails_the_build_naming_the_depfile_and_the_line() {
    let p = Project::new();
    let source = r#"(recipes: {
        "bad": (command: ["sh", "-c", "printf 'out: a.h\nb.h\n' > \"$TROVE_DEPFILE\"; echo x"]),
    })"#;
    let config = Config::parse(source, &p.path("trove.ron")).unwrap();
    let engine = Engine::open(config.clone()).unwrap();
    let recipe = CommandRecipe::new("bad", config.recipes["bad"].clone());
    let error = engine.get(&recipe, &vec![]).unwrap_err().to_string();
    assert!(
        error.contains("/depfile") && error.contains("line 2"),
        "{error}"
    );
}
