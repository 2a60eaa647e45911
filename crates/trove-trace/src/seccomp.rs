//! The seccomp-bpf program that decides which system calls stop the tracee.
//!
//! It is a short classic-BPF program: a native-architecture call whose number is in
//! [`TRACED`] returns `SECCOMP_RET_TRACE` (the tracer gets a `PTRACE_EVENT_SECCOMP`
//! stop), `newfstatat`/`statx` do too unless their flags hold `AT_EMPTY_PATH` (an
//! `fstat` in disguise, made thousands of times by Python), and everything else returns
//! `SECCOMP_RET_ALLOW` and runs at full speed. A call of another architecture (a 32-bit
//! program, or an x32 call on x86_64) is traced too, so the tracer can say that it could
//! not decode it: a filter builder that kills such processes, or lets them through
//! unseen, would break the build or hide its inputs. A native call made from the page
//! of the preloaded library's stub (`preload.rs`) is let through: that library logs its
//! calls itself.

use libc::sock_filter;

use crate::preload::{PAGE, PAGE_SIZE};
use crate::syscalls::{EMPTY_PATH_STATS, NATIVE_ARCH, TRACED};

/// Offsets into `struct seccomp_data` (`nr`, `arch`, then the six 64-bit arguments).
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
/// The low and high 32 bits of `instruction_pointer`.
const IP_LOW_OFFSET: u32 = 8;
const IP_HIGH_OFFSET: u32 = 12;
/// The low 32 bits of argument `i` (little-endian targets only: x86_64 and aarch64).
const fn arg_low_offset(i: u32) -> u32 {
    16 + 8 * i
}

const LOAD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Where a conditional jump goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    Next,
    Allow,
    Trace,
    /// The `AT_EMPTY_PATH` check of `EMPTY_PATH_STATS[i]`.
    EmptyPathCheck(usize),
    /// The instruction at this index.
    At(usize),
}

struct Insn {
    code: u16,
    k: u32,
    jt: To,
    jf: To,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        k,
        jt: To::Next,
        jf: To::Next,
    }
}

fn jump(code: u16, k: u32, jt: To, jf: To) -> Insn {
    Insn { code, k, jt, jf }
}

/// The filter program, ready for `seccomp(SECCOMP_SET_MODE_FILTER)`.
pub(crate) fn program() -> Vec<sock_filter> {
    let mut body = vec![
        stmt(LOAD, ARCH_OFFSET),
        jump(JEQ, NATIVE_ARCH, To::Next, To::Trace),
        stmt(LOAD, NR_OFFSET),
    ];
    #[cfg(target_arch = "x86_64")]
    body.push(jump(JGE, crate::syscalls::X32_BIT, To::Trace, To::Next));
    // From the stub page: let through. The page is below 4 GiB, so the high half is 0.
    let (page, end) = (PAGE as u32, (PAGE + PAGE_SIZE) as u32);
    let by_number = body.len() + 5;
    body.extend([
        stmt(LOAD, IP_HIGH_OFFSET),
        jump(JEQ, 0, To::Next, To::At(by_number)),
        stmt(LOAD, IP_LOW_OFFSET),
        jump(JGE, page, To::Next, To::At(by_number)),
        jump(JGE, end, To::At(by_number), To::Allow),
        stmt(LOAD, NR_OFFSET),
    ]);
    for (i, &(nr, _)) in EMPTY_PATH_STATS.iter().enumerate() {
        body.push(jump(JEQ, nr as u32, To::EmptyPathCheck(i), To::Next));
    }
    for &nr in TRACED {
        body.push(jump(JEQ, nr as u32, To::Trace, To::Next));
    }
    body.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
    let mut checks = Vec::new();
    for &(_, flags_arg) in &EMPTY_PATH_STATS {
        checks.push(body.len());
        body.push(stmt(LOAD, arg_low_offset(flags_arg)));
        body.push(jump(JSET, libc::AT_EMPTY_PATH as u32, To::Allow, To::Trace));
    }
    let allow = body.len();
    body.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
    let trace = body.len();
    body.push(stmt(RET, libc::SECCOMP_RET_TRACE));

    let offset = |at: usize, to: To| -> u8 {
        let target = match to {
            To::Next => at + 1,
            To::Allow => allow,
            To::Trace => trace,
            To::EmptyPathCheck(i) => checks[i],
            To::At(i) => i,
        };
        // BPF jumps are forward and relative to the next instruction; the program is a
        // few dozen instructions, far below the 255 a jump can span.
        u8::try_from(target - (at + 1)).unwrap_or(u8::MAX)
    };
    body.iter()
        .enumerate()
        .map(|(at, insn)| sock_filter {
            code: insn.code,
            jt: offset(at, insn.jt),
            jf: offset(at, insn.jf),
            k: insn.k,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program over one `seccomp_data`, the way the kernel would.
    fn verdict(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        verdict_from(program, 0x5555_5555_1234, arch, nr, args)
    }

    /// The same, for a call made at instruction address `ip`.
    fn verdict_from(program: &[sock_filter], ip: u64, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[8..16].copy_from_slice(&ip.to_le_bytes());
        for (i, arg) in args.iter().enumerate() {
            data[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_le_bytes());
        }
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let insn = &program[pc];
            let next = pc + 1;
            match insn.code {
                LOAD => {
                    let at = insn.k as usize;
                    acc = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                    pc = next;
                }
                RET => return insn.k,
                code => {
                    let taken = match code {
                        JEQ => acc == insn.k,
                        JSET => acc & insn.k != 0,
                        _ => acc >= insn.k,
                    };
                    pc = next + usize::from(if taken { insn.jt } else { insn.jf });
                }
            }
        }
    }

    #[test]
    fn only_the_listed_calls_of_the_native_abi_stop() {
        let program = program();
        let trace = libc::SECCOMP_RET_TRACE;
        let allow = libc::SECCOMP_RET_ALLOW;
        let openat = libc::SYS_openat as u32;
        assert_eq!(verdict(&program, NATIVE_ARCH, openat, [0; 6]), trace);
        assert_eq!(
            verdict(&program, NATIVE_ARCH, libc::SYS_read as u32, [0; 6]),
            allow
        );
        assert_eq!(
            verdict(&program, NATIVE_ARCH, libc::SYS_connect as u32, [0; 6]),
            trace
        );
        // Another architecture's calls are traced so the tracer can report them.
        assert_eq!(
            verdict(&program, 0x4000_0003, libc::SYS_read as u32, [0; 6]),
            trace
        );
    }

    #[test]
    fn fstat_in_disguise_runs_free_and_a_named_stat_stops() {
        let program = program();
        let nr = libc::SYS_newfstatat as u32;
        let empty = [3, 0, 0, libc::AT_EMPTY_PATH as u64, 0, 0];
        let named = [libc::AT_FDCWD as u64, 0x1000, 0, 0, 0, 0];
        assert_eq!(
            verdict(&program, NATIVE_ARCH, nr, empty),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            verdict(&program, NATIVE_ARCH, nr, named),
            libc::SECCOMP_RET_TRACE
        );
        let statx = libc::SYS_statx as u32;
        let empty = [3, 0, libc::AT_EMPTY_PATH as u64, 0, 0, 0];
        assert_eq!(
            verdict(&program, NATIVE_ARCH, statx, empty),
            libc::SECCOMP_RET_ALLOW
        );
    }

    #[test]
    fn calls_from_the_stub_page_run_free_and_from_anywhere_else_stop() {
        let program = program();
        let openat = libc::SYS_openat as u32;
        let (trace, allow) = (libc::SECCOMP_RET_TRACE, libc::SECCOMP_RET_ALLOW);
        for (ip, want) in [
            (PAGE, allow),
            (PAGE + 2, allow),
            (PAGE + PAGE_SIZE - 1, allow),
            (PAGE - 1, trace),
            (PAGE + PAGE_SIZE, trace),
            (PAGE + (1 << 32), trace),
            (0x7fff_7000_0010, trace),
        ] {
            assert_eq!(
                verdict_from(&program, ip, NATIVE_ARCH, openat, [0; 6]),
                want,
                "{ip:#x}"
            );
        }
        // Another ABI's call stops even from the page: the tracer must report it.
        assert_eq!(
            verdict_from(&program, PAGE, 0x4000_0003, openat, [0; 6]),
            trace
        );
        // Calls the filter never stops still run free from elsewhere.
        assert_eq!(
            verdict_from(
                &program,
                PAGE + PAGE_SIZE,
                NATIVE_ARCH,
                libc::SYS_read as u32,
                [0; 6]
            ),
            allow
        );
    }
}
