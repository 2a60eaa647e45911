//! Sets `cfg(tracer)` where the syscall tracer is built: Linux with glibc on x86_64 or
//! aarch64 (the architectures whose system call tables `src/syscalls.rs` knows, and the
//! C library whose `libc` bindings carry `ptrace_syscall_info`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tracer)");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let arch = var("CARGO_CFG_TARGET_ARCH");
    if var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && (arch == "x86_64" || arch == "aarch64")
    {
        println!("cargo::rustc-cfg=tracer");
    }
}
