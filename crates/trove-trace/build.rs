//! Sets `cfg(tracer)` where the syscall tracer is built: Linux with glibc on x86_64 or
//! aarch64 (the architectures whose system call tables `src/syscalls.rs` knows, and the
//! C library whose `libc` bindings carry `ptrace_syscall_info`). There it also compiles
//! the library the tracer preloads into dynamically linked commands
//! (`preload/preload.c`, see `src/preload.rs`) with the C compiler the build already
//! needs (`$CC`, else `cc`), into `$OUT_DIR/libtrove-preload.so`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tracer)");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let arch = var("CARGO_CFG_TARGET_ARCH");
    if var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && (arch == "x86_64" || arch == "aarch64")
    {
        println!("cargo::rustc-cfg=tracer");
        preload();
    }
}

fn preload() {
    println!("cargo::rerun-if-changed=preload/preload.c");
    println!("cargo::rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let library = out.join("libtrove-preload.so");
    // `CC` may carry a wrapper or flags ("ccache gcc", "gcc -m64"), as make allows.
    let compiler = std::env::var("CC")
        .ok()
        .filter(|cc| !cc.trim().is_empty())
        .unwrap_or_else(|| "cc".to_string());
    let mut words = compiler.split_whitespace();
    let program = words.next().unwrap_or("cc");
    // -nostdlib: no DT_NEEDED entry, so the library loads into any dynamically linked
    // program; the libc functions it calls are the process's own. libgcc for the
    // instruction-cache flush aarch64 needs after writing the stub.
    let status = Command::new(program)
        .args(words)
        .args([
            "-shared",
            "-fPIC",
            "-O2",
            "-nostdlib",
            "-fvisibility=hidden",
            "-fno-stack-protector",
            "-U_FORTIFY_SOURCE",
            "-Wall",
            "-Wextra",
            "-Wl,-z,now",
            "-o",
        ])
        .arg(&library)
        .arg("preload/preload.c")
        .arg("-lgcc")
        .status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{compiler} could not compile preload/preload.c ({status})"),
        Err(e) => panic!(
            "the C compiler `{compiler}` (set CC to choose another) could not run: {e}; \
             trove needs one to build (README, Prerequisites)"
        ),
    }
}
