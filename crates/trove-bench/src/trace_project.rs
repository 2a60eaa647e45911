//! The generated project the `trace` case measures: a C file with a dozen headers, a
//! python script importing 30 modules, and a `trove.ron` naming each traced and not.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::cases_process::{exe_dir, run_ok};

/// Headers the C file includes, half in each `-I` directory.
pub(crate) const HEADERS: usize = 12;
/// Modules the python3 script imports.
pub(crate) const MODULES: usize = 30;

/// Set, the generated project is kept (and named on stderr), to profile its commands.
pub(crate) const KEEP_VAR: &str = "TROVE_BENCH_KEEP";

/// The compile: optimised, to an object on stdout (the blob file trove hands the command).
pub(crate) const GCC: &[&str] = &[
    "gcc",
    "-O2",
    "-Iinc1",
    "-Iinc2",
    "-c",
    "main.c",
    "-o",
    "/dev/stdout",
];

/// The system header each generated header includes, in turn: what real headers do, and
/// what makes gcc search both `-I` directories before the system ones.
pub(crate) const SYSTEM_HEADERS: &[&str] = &[
    "stdint.h", "string.h", "stdlib.h", "math.h", "ctype.h", "limits.h",
];

/// The standard-library module each generated module imports, in turn.
pub(crate) const STDLIB_MODULES: &[&str] =
    &["os", "re", "json", "collections", "functools", "itertools"];

/// The generated project: its directory, the trove binary, and the python3 interpreter.
pub(crate) struct Project {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) root: PathBuf,
    pub(crate) trove: PathBuf,
    pub(crate) python: String,
}

impl Project {
    pub(crate) fn make() -> Result<Project> {
        let trove = exe_dir()?.join("trove");
        if !trove.is_file() {
            bail!(
                "{} not found: build it first with `cargo build --release -p trove-cli`",
                trove.display()
            );
        }
        // The interpreter itself, not a version manager's shim (pyenv's `python3` is a
        // shell script running `pyenv exec`): the row is about python3's imports.
        let out = run_ok(Command::new("python3").args(["-c", "import sys; print(sys.executable)"]))
            .context("python3 is needed for the python row")?;
        let python = String::from_utf8(out.stdout)?.trim().to_owned();
        ensure!(!python.is_empty(), "python3 did not name its executable");
        let mut dir = tempfile::tempdir()?;
        if std::env::var_os(KEEP_VAR).is_some() {
            dir.disable_cleanup(true);
            eprintln!(
                "   {KEEP_VAR}: the project stays in {}",
                dir.path().display()
            );
        }
        let root = dir.path().canonicalize()?;
        write_c(&root)?;
        write_python(&root)?;
        std::fs::write(root.join("trove.ron"), config(&python, &[]))?;
        Ok(Project {
            _dir: dir,
            root,
            trove,
            python,
        })
    }

    /// `trove run [--force] RECIPE` in the project, stdout and stderr captured.
    pub(crate) fn trove_run(&self, recipe: &str, force: bool) -> Command {
        let mut c = Command::new(&self.trove);
        c.arg("run");
        if force {
            c.arg("--force");
        }
        c.arg(recipe)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        command_env(&mut c);
        c
    }

    /// The bare command, stdout into a file (the assembler seeks in its output).
    pub(crate) fn bare(&self, argv: &[String], out: &Path) -> Result<Command> {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..])
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(File::create(out)?);
        command_env(&mut c);
        Ok(c)
    }
}

/// Python as installed behaves: it caches the modules' bytecode in `__pycache__` (an
/// environment may turn that off with `PYTHONDONTWRITEBYTECODE`; this machine's does).
pub(crate) fn command_env(c: &mut Command) {
    c.env_remove("PYTHONDONTWRITEBYTECODE");
}

pub(crate) fn header_name(i: usize) -> String {
    format!("h{:02}.h", i + 1)
}

/// `main.c` and twelve headers, six in `inc1/` and six in `inc2/`; each header declares a
/// struct and a few inline functions the main file calls.
pub(crate) fn write_c(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root.join("inc1"))?;
    std::fs::create_dir_all(root.join("inc2"))?;
    let mut main = String::from("#include <stdio.h>\n");
    for i in 0..HEADERS {
        let n = i + 1;
        let guard = format!("H{n:02}_H");
        let sys = SYSTEM_HEADERS[i % SYSTEM_HEADERS.len()];
        let mut h = format!("#ifndef {guard}\n#define {guard}\n#include <{sys}>\n\n");
        let _ = writeln!(
            h,
            "struct rec{n:02} {{ unsigned long key; double weight; int tags[{}]; }};\n",
            8 + n
        );
        let _ = writeln!(
            h,
            "static inline unsigned long mix{n:02}(unsigned long x) {{\n    \
                 unsigned long h = 1469598103934665603ul ^ {n}ul;\n    \
                 for (int i = 0; i < 64; i++) {{ h ^= x + (unsigned long)i; h *= 1099511628211ul; }}\n    \
                 return h;\n}}\n"
        );
        let _ = writeln!(
            h,
            "static inline double score{n:02}(const struct rec{n:02} *r, int len) {{\n    \
                 double s = 0.0;\n    \
                 for (int i = 0; i < len; i++) {{\n        \
                     s += r[i].weight * (double)(r[i].tags[i % {t}] + {n});\n        \
                     s -= (double)(mix{n:02}(r[i].key) & 0xff) / 256.0;\n    \
                 }}\n    \
                 return s;\n}}\n",
            t = 8 + n
        );
        let _ = writeln!(
            h,
            "static inline void fill{n:02}(struct rec{n:02} *r, int len, unsigned long seed) {{\n    \
                 for (int i = 0; i < len; i++) {{\n        \
                     r[i].key = mix{n:02}(seed + (unsigned long)i);\n        \
                     r[i].weight = (double)(r[i].key % 1000u) / 1000.0;\n        \
                     for (int j = 0; j < {t}; j++) r[i].tags[j] = (int)((r[i].key >> (j % 48)) & 0x7f);\n    \
                 }}\n}}\n\n#endif\n",
            t = 8 + n
        );
        let dir = if i < HEADERS / 2 { "inc1" } else { "inc2" };
        std::fs::write(root.join(dir).join(header_name(i)), h)?;
        let _ = writeln!(main, "#include \"{}\"", header_name(i));
    }
    main.push_str(
        "\nint main(int argc, char **argv) {\n    double total = 0.0;\n    (void)argv;\n",
    );
    for i in 0..HEADERS {
        let n = i + 1;
        let _ = writeln!(
            main,
            "    {{\n        struct rec{n:02} r[32];\n        \
                 fill{n:02}(r, 32, (unsigned long)argc * {n}ul);\n        \
                 total += score{n:02}(r, 32);\n    }}"
        );
    }
    main.push_str("    printf(\"%f\\n\", total);\n    return 0;\n}\n");
    std::fs::write(root.join("main.c"), main)?;
    Ok(())
}

pub(crate) fn module_name(i: usize) -> String {
    format!("m{i:02}")
}

/// `py/main.py` importing thirty modules `py/m00.py` .. `py/m29.py`; each module imports
/// one standard-library module and defines a class and two functions.
pub(crate) fn write_python(root: &Path) -> Result<()> {
    let py = root.join("py");
    std::fs::create_dir_all(&py)?;
    let mut main =
        String::from("\"\"\"Imports thirty modules and prints what they compute.\"\"\"\n\n");
    for i in 0..MODULES {
        let _ = writeln!(main, "import {}", module_name(i));
        let lib = STDLIB_MODULES[i % STDLIB_MODULES.len()];
        let module = format!(
            "\"\"\"Generated module {i}.\"\"\"\n\nimport {lib}\n\nSCALE = {i}\n\n\n\
             class Rec{i}:\n    def __init__(self, key):\n        self.key = key\n\n    \
             def weight(self):\n        return (self.key * SCALE + {i}) % 97\n\n\n\
             def score(n):\n    return sum(Rec{i}(k).weight() for k in range(n))\n\n\n\
             def name():\n    return {lib}.__name__\n"
        );
        std::fs::write(py.join(format!("{}.py", module_name(i))), module)?;
    }
    main.push_str("\ntotal = 0\n");
    for i in 0..MODULES {
        let _ = writeln!(main, "total += {}.score(10)", module_name(i));
    }
    main.push_str("print(total)\n");
    std::fs::write(py.join("main.py"), main)?;
    Ok(())
}

/// Four recipes: the compile and the script, each traced and untraced with the project
/// files declared; and, when `cc_same` names files, `cc-declared`: the compile untraced
/// with exactly those files declared (the files the traced compile read).
pub(crate) fn config(python: &str, cc_same: &[String]) -> String {
    let words = |argv: &[String]| {
        argv.iter()
            .map(|w| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let gcc: Vec<String> = GCC.iter().map(|w| (*w).to_owned()).collect();
    let mut c_inputs = vec!["main.c".to_owned()];
    for i in 0..HEADERS {
        let dir = if i < HEADERS / 2 { "inc1" } else { "inc2" };
        c_inputs.push(format!("{dir}/{}", header_name(i)));
    }
    let py = vec![python.to_owned(), "py/main.py".to_owned()];
    let mut py_inputs = vec!["py/main.py".to_owned()];
    for i in 0..MODULES {
        py_inputs.push(format!("py/{}.py", module_name(i)));
    }
    format!(
        "(recipes: {{\n  \
           \"cc-traced\": (command: [{gcc}], trace: true),\n  \
           \"cc-untraced\": (command: [{gcc}], trace: false, inputs: [{c_inputs}]),\n  \
           \"py-traced\": (command: [{py}], trace: true),\n  \
           \"py-untraced\": (command: [{py}], trace: false, inputs: [{py_inputs}]),\n\
           {same}\
         }})\n",
        same = if cc_same.is_empty() {
            String::new()
        } else {
            format!(
                "\"cc-declared\": (command: [{}], trace: false, inputs: [{}]),\n",
                words(&gcc),
                words(cc_same)
            )
        },
        gcc = words(&gcc),
        c_inputs = words(&c_inputs),
        py = words(&py),
        py_inputs = words(&py_inputs),
    )
}
