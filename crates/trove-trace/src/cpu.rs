//! One CPU for the tracer and a sequential command.
//!
//! Every stop of a traced call is a round trip between the stopped thread and the tracer.
//! When the two run on different CPUs each leg is a cross-CPU wake-up, which on a virtual
//! machine is an inter-processor interrupt (a VM exit) each way: a traced gcc build here
//! spent 0.11-0.25 s of system time with the tracer and the compiler on different CPUs,
//! against 0.05-0.09 s on one (wall 0.34-0.51 s against 0.22-0.29 s; untraced 0.16-0.25 s;
//! BENCHMARKS.md, "Tracing command recipes").
//!
//! So while the command is sequential, the tracer and the command share the CPU the tracer
//! runs on. Sequential means at most two processes and no second thread: a driver waiting
//! for the program it started (gcc and cc1, then as; `sh -c` and its command; an
//! interpreter). The first sign that the command may run in parallel (a third process, a
//! thread) gives the tracer and every tracee the CPUs the tracer had, for the rest of the
//! run: a parallel build is never held to one CPU for longer than it takes to start its
//! third process. Nothing here changes what is traced.

use std::mem::MaybeUninit;

/// Whether the tracer and its tracees are held on one CPU.
pub(crate) struct Sharing {
    /// The CPUs the tracer could run on when the trace began; `None` once they are
    /// given back (or when there was nothing to share).
    original: Option<libc::cpu_set_t>,
}

/// Most processes a command may have while it is held to one CPU.
const SEQUENTIAL_PROCESSES: usize = 2;

impl Sharing {
    /// Holds the tracer thread and `leader` (seized before its `execve`: what it starts
    /// inherits the mask) on the CPU the tracer runs on, if it could run on several.
    pub(crate) fn start(leader: i32) -> Sharing {
        let none = Sharing { original: None };
        let Some(original) = affinity(0) else {
            return none;
        };
        // SAFETY: `original` is an initialised set; CPU_COUNT only reads it.
        if unsafe { libc::CPU_COUNT(&original) } < 2 {
            return none;
        }
        // SAFETY: sched_getcpu has no preconditions.
        let Ok(cpu) = usize::try_from(unsafe { libc::sched_getcpu() }) else {
            return none;
        };
        // SAFETY: CPU_ISSET only reads the set; `cpu` is bounds-checked by the macro.
        if cpu >= libc::CPU_SETSIZE as usize || !unsafe { libc::CPU_ISSET(cpu, &original) } {
            return none;
        }
        let mut one = empty_set();
        // SAFETY: `cpu` < CPU_SETSIZE, checked above.
        unsafe { libc::CPU_SET(cpu, &mut one) };
        if !set_affinity(0, &one) {
            return none;
        }
        if !set_affinity(leader, &one) {
            set_affinity(0, &original);
            return none;
        }
        Sharing {
            original: Some(original),
        }
    }

    /// A tracee appeared (`thread`: a thread of its parent, or a clone that may share
    /// its memory); `live` are the tracees attached now, the new one included. The
    /// first tracee that makes the command possibly parallel gives the CPUs back.
    pub(crate) fn appeared<'a>(
        &mut self,
        thread: bool,
        live: impl ExactSizeIterator<Item = &'a i32>,
    ) {
        let Some(original) = self.original else {
            return;
        };
        if !thread && live.len() <= SEQUENTIAL_PROCESSES {
            return;
        }
        self.original = None;
        set_affinity(0, &original);
        for &tid in live {
            // A tracee that is already gone has nothing to give back.
            set_affinity(tid, &original);
        }
    }
}

impl Drop for Sharing {
    /// The tracer thread gets its CPUs back when the trace ends while the command was
    /// still held (its tracees are gone by then).
    fn drop(&mut self) {
        if let Some(original) = self.original.take() {
            set_affinity(0, &original);
        }
    }
}

fn empty_set() -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array: all zeroes is the empty set.
    unsafe { MaybeUninit::<libc::cpu_set_t>::zeroed().assume_init() }
}

/// The CPUs thread `tid` may run on (0: the calling thread).
fn affinity(tid: i32) -> Option<libc::cpu_set_t> {
    let mut set = empty_set();
    // SAFETY: the kernel writes at most `size_of::<cpu_set_t>()` bytes into `set`.
    let r = unsafe { libc::sched_getaffinity(tid, size_of::<libc::cpu_set_t>(), &mut set) };
    (r == 0).then_some(set)
}

fn set_affinity(tid: i32, set: &libc::cpu_set_t) -> bool {
    // SAFETY: the kernel reads `size_of::<cpu_set_t>()` bytes from `set`.
    unsafe { libc::sched_setaffinity(tid, size_of::<libc::cpu_set_t>(), set) == 0 }
}
