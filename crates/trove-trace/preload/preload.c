/*
 * trove's preloaded library: the look-ups of a dynamically linked program, made without
 * a ptrace stop and logged for the tracer.
 *
 * A traced command runs under a seccomp filter that stops every system call naming a
 * file. Most of them are look-ups: gcc's cc1 calls readlink for every component of every
 * header it canonicalises (realpath), Python stats every directory of its import path.
 * Each stop costs two context switches. This library, loaded into every dynamically
 * linked process of a traced command through LD_PRELOAD, makes those calls itself from
 * one page mapped at a fixed address (PAGE), whose system calls the filter lets through,
 * and appends what each call found to a buffer right after that page (BUF): the use the
 * tracer would have recorded (read, absent, stat, symlink), whether the last component
 * was followed, and the absolute name. The tracer reads and empties the buffer whenever a
 * thread of the process stops anyway (a write, an exec, a fork, the exit), before it
 * handles that stop, so the log keeps each process's order (rr's "syscall buffering",
 * reduced to what a dependency tracer needs; ARCHITECTURE.md, "Look-ups without a stop").
 *
 * What it handles: open/openat that cannot write, the stat family with a name, access,
 * faccessat, readlink, readlinkat and realpath (whose component walk is glibc's, made
 * here so that its readlinks are buffered too). Everything else, and any call it cannot
 * log (no page, the buffer full, a name too long, a second thread, a signal handler
 * interrupting a call of its own), goes through libc's `syscall` and stops as before.
 * The buffer is the tracer's only source for what the library did, so the library never
 * makes a call it could not log.
 *
 * It links against nothing (-nostdlib): the few libc functions it uses (syscall, mmap,
 * strlen, memcpy, malloc, dlsym) are found in the process at run time, so it loads into
 * any dynamically linked program without adding a dependency. It runs only where trove's
 * tracer is (Linux, x86_64 or aarch64), in single-threaded processes: the first
 * pthread_create or thrd_create turns it off for the process, which the tracer then
 * stops as before.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Must match crates/trove-trace/src/preload.rs. */
#define PAGE 0x70000000UL
/* 64 KiB, the largest page size in use (aarch64 kernels with 64 KiB pages): the stub's
 * mprotect must never reach the buffer. */
#define PAGE_SIZE_ 0x10000UL
#define BUF (PAGE + PAGE_SIZE_)
#define BUF_SIZE (256UL * 1024)
#define MAGIC 0x3176756265766f72ULL /* "rovebuv1" */
#define NAME_MAX_ 4096

/* The uses, as in report.rs. */
enum { USE_READ = 1, USE_ABSENT = 2, USE_STAT = 3, USE_LINK = 4 };

struct header {
    uint64_t magic;
    uint64_t capacity; /* bytes of records after the header */
    uint64_t count;    /* bytes of records written; the tracer sets it to 0 */
    uint64_t generation; /* the tracer's: how many times it emptied the buffer */
};

#define EXPORT __attribute__((visibility("default")))

/* On when the page is mapped; threaded when a second thread may exist; busy while a call
 * of this library runs (a signal handler's call then takes the traced path). */
static int active;
static volatile int threaded;
static volatile int busy;
static char name_buf[NAME_MAX_ + 1];

typedef long (*stub_fn)(long, long, long, long, long, long, long);

/* The stub copied to PAGE: a system call with the number in the first argument. */
#if defined(__x86_64__)
__asm__(".pushsection .rodata\n"
        ".hidden trove_stub\n.hidden trove_stub_end\n"
        "trove_stub:\n"
        "  mov %rdi, %rax\n  mov %rsi, %rdi\n  mov %rdx, %rsi\n  mov %rcx, %rdx\n"
        "  mov %r8, %r10\n  mov %r9, %r8\n  mov 8(%rsp), %r9\n"
        "  syscall\n  ret\n"
        "trove_stub_end:\n"
        ".popsection\n");
#elif defined(__aarch64__)
__asm__(".pushsection .rodata\n"
        ".hidden trove_stub\n.hidden trove_stub_end\n"
        ".balign 4\n"
        "trove_stub:\n"
        "  mov x8, x0\n  mov x0, x1\n  mov x1, x2\n  mov x2, x3\n"
        "  mov x3, x4\n  mov x4, x5\n  mov x5, x6\n"
        "  svc #0\n  ret\n"
        "trove_stub_end:\n"
        ".popsection\n");
#else
#error "trove's preload supports x86_64 and aarch64"
#endif
extern const char trove_stub[], trove_stub_end[];

__attribute__((constructor)) static void start(void)
{
    /* MAP_FIXED_NOREPLACE: never over a mapping of the program's. Older kernels take the
     * address as a hint, hence the check. */
    void *at = mmap((void *)PAGE, PAGE_SIZE_ + BUF_SIZE, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_NORESERVE, -1, 0);
    if (at == MAP_FAILED)
        return;
    if (at != (void *)PAGE) {
        munmap(at, PAGE_SIZE_ + BUF_SIZE);
        return;
    }
    memcpy(at, trove_stub, (size_t)(trove_stub_end - trove_stub));
    __builtin___clear_cache((char *)at, (char *)at + PAGE_SIZE_);
    if (mprotect(at, PAGE_SIZE_, PROT_READ | PROT_EXEC) != 0) {
        munmap(at, PAGE_SIZE_ + BUF_SIZE);
        return;
    }
    struct header *h = (struct header *)BUF;
    h->capacity = BUF_SIZE - sizeof(struct header);
    h->count = 0;
    h->magic = MAGIC;
    active = 1;
}

/* A system call through libc: it stops for the tracer. Returns -errno on failure. */
static long traced(long nr, long a, long b, long c, long d, long e)
{
    long r = syscall(nr, a, b, c, d, e);
    return r == -1 ? -(long)errno : r;
}

/* A system call from the page: no stop. Returns -errno on failure. */
static long untraced(long nr, long a, long b, long c, long d, long e)
{
    return ((stub_fn)PAGE)(nr, a, b, c, d, e, 0);
}

/* Whether a call may be made from the page now; sets busy if so. */
static int enter(void)
{
    if (!active || threaded || busy)
        return 0;
    busy = 1;
    return 1;
}

static void leave(void) { busy = 0; }

static long fail(long r)
{
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

/* Room for a record of a name of len bytes. */
static size_t record_size(size_t len) { return (4 + len + 7) & ~(size_t)7; }

static int fits(size_t len)
{
    struct header *h = (struct header *)BUF;
    return len <= NAME_MAX_ && h->count + record_size(len) <= h->capacity;
}

static void note(int use, int follow, const char *name, size_t len)
{
    struct header *h = (struct header *)BUF;
    char *at = (char *)BUF + sizeof(struct header) + h->count;
    uint32_t word = (uint32_t)use | (uint32_t)(follow ? 1 : 0) << 8 | (uint32_t)len << 16;
    memcpy(at, &word, 4);
    memcpy(at + 4, name, len);
    __atomic_store_n(&h->count, h->count + record_size(len), __ATOMIC_RELEASE);
}

/* What a look-up's result means for the tracer (0: nothing to record). */
static int use_of_lookup(long r)
{
    if (r >= 0)
        return USE_STAT;
    switch (-r) {
    case ENOENT:
    case ENOTDIR:
        return USE_ABSENT;
    case EACCES: /* refused for its permissions: it exists, and its mode decided */
        return USE_STAT;
    default:
        return 0;
    }
}

static int use_of_access(long r)
{
    if (r < 0 && (-r == EROFS || -r == ETXTBSY))
        return USE_STAT; /* it exists; the mode asked for is refused */
    return use_of_lookup(r);
}

static int use_of_readlink(long r)
{
    if (r >= 0)
        return USE_LINK;
    if (-r == EINVAL)
        return USE_STAT; /* there, and not a symlink */
    return use_of_lookup(r);
}

static size_t decimal(char *out, unsigned v)
{
    char tmp[12];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* The absolute name of `path` relative to `dirfd`, as the tracer would have made it from
 * /proc (the directory joined to the name, nothing resolved); its length, or 0 when it
 * cannot be made here. */
static size_t absolute(int dirfd, const char *path, const char **out)
{
    size_t len = strlen(path), base;
    if (path[0] == '/') {
        *out = path;
        return len;
    }
    if (dirfd == AT_FDCWD) {
        long n = untraced(SYS_getcwd, (long)name_buf, sizeof name_buf, 0, 0, 0);
        if (n <= 1 || name_buf[0] != '/')
            return 0;
        base = (size_t)n - 1;
    } else {
        char link[32] = "/proc/self/fd/";
        if (dirfd < 0)
            return 0;
        link[14 + decimal(link + 14, (unsigned)dirfd)] = 0;
        long n = untraced(SYS_readlinkat, AT_FDCWD, (long)link, (long)name_buf,
                          sizeof name_buf - 1, 0);
        if (n <= 0 || name_buf[0] != '/')
            return 0;
        base = (size_t)n;
        static const char deleted[] = " (deleted)";
        if (base >= sizeof deleted - 1 &&
            memcmp(name_buf + base - (sizeof deleted - 1), deleted, sizeof deleted - 1) == 0)
            return 0;
    }
    if (base > 1)
        name_buf[base++] = '/';
    if (base + len > NAME_MAX_)
        return 0;
    memcpy(name_buf + base, path, len);
    *out = name_buf;
    return base + len;
}

/* Makes a look-up from the page and logs it, when its name can be logged; otherwise
 * through libc. Call between enter() and leave(). */
static long lookup(int dirfd, const char *path, int follow, int (*use)(long), long nr, long a,
                   long b, long c, long d, long e)
{
    const char *name;
    size_t len;
    if (path == NULL || path[0] == 0 || (len = absolute(dirfd, path, &name)) == 0 ||
        !fits(len))
        return traced(nr, a, b, c, d, e);
    long r = untraced(nr, a, b, c, d, e);
    int what = use(r);
    if (what)
        note(what, follow, name, len);
    else if (r < 0 && nr != SYS_openat)
        /* A failure that says nothing about the name (ELOOP, EFAULT, a policy's EPERM):
         * a look-up has no side effect, so it is made again where the tracer sees it
         * and judges the name by its own look-up, as it always has. (A read-only open's
         * such failure is recorded by nobody, with or without the library.) */
        return traced(nr, a, b, c, d, e);
    return r;
}

/* ---- opens ---- */

static int reads_only(int flags)
{
    return (flags & O_ACCMODE) == O_RDONLY && !(flags & (O_CREAT | O_TRUNC)) &&
           (flags & O_TMPFILE) != O_TMPFILE;
}

static int use_of_open(long r) { return r >= 0 ? USE_READ : use_of_lookup(r); }

static int open_at(int dirfd, const char *path, int flags, mode_t mode)
{
    long r;
    if (reads_only(flags) && enter()) {
        int follow = !(flags & O_NOFOLLOW);
        r = lookup(dirfd, path, follow, (flags & O_PATH) ? use_of_lookup : use_of_open,
                   SYS_openat, dirfd, (long)path, flags, mode, 0);
        leave();
    } else {
        r = traced(SYS_openat, dirfd, (long)path, flags, mode, 0);
    }
    return (int)fail(r);
}

static mode_t mode_arg(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
}

/* open, open64, openat, openat64: the mode is read only when the flags take one. */
#define OPEN_BODY(dirfd)                                                                    \
    {                                                                                       \
        va_list ap;                                                                         \
        va_start(ap, flags);                                                                \
        mode_t mode = mode_arg(flags, ap);                                                  \
        va_end(ap);                                                                         \
        return open_at(dirfd, path, flags, mode);                                           \
    }

EXPORT int open(const char *path, int flags, ...) OPEN_BODY(AT_FDCWD)
EXPORT int open64(const char *path, int flags, ...) OPEN_BODY(AT_FDCWD)
EXPORT int openat(int dirfd, const char *path, int flags, ...) OPEN_BODY(dirfd)
EXPORT int openat64(int dirfd, const char *path, int flags, ...) OPEN_BODY(dirfd)

/* The _FORTIFY_SOURCE forms, called without a mode: one that may create is libc's to
 * refuse (glibc aborts), so it goes there. */
static void *libc_function(const char *name) { return dlsym(RTLD_NEXT, name); }

static int open_2(const char *which, int dirfd, const char *path, int flags)
{
    if (reads_only(flags))
        return open_at(dirfd, path, flags, 0);
    if (dirfd == AT_FDCWD) {
        int (*real)(const char *, int) = (int (*)(const char *, int))libc_function(which);
        if (real)
            return real(path, flags);
    } else {
        int (*real)(int, const char *, int) =
            (int (*)(int, const char *, int))libc_function(which);
        if (real)
            return real(dirfd, path, flags);
    }
    return open_at(dirfd, path, flags, 0);
}

EXPORT int __open_2(const char *path, int flags)
{
    return open_2("__open_2", AT_FDCWD, path, flags);
}
EXPORT int __open64_2(const char *path, int flags)
{
    return open_2("__open64_2", AT_FDCWD, path, flags);
}
EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
    return open_2("__openat_2", dirfd, path, flags);
}
EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
    return open_2("__openat64_2", dirfd, path, flags);
}

/* ---- the stat family (on 64-bit targets struct stat64 is struct stat, the kernel's) ---- */

_Static_assert(sizeof(struct stat) == sizeof(struct stat64), "64-bit stat");

static int stat_at(int dirfd, const char *path, struct stat *buf, int flags)
{
    long r;
    /* AT_EMPTY_PATH is fstat in disguise: the filter lets it through too. */
    if (!(flags & AT_EMPTY_PATH) && enter()) {
        r = lookup(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), use_of_lookup, SYS_newfstatat,
                   dirfd, (long)path, (long)buf, flags, 0);
        leave();
    } else {
        r = traced(SYS_newfstatat, dirfd, (long)path, (long)buf, flags, 0);
    }
    return (int)fail(r);
}

EXPORT int stat(const char *path, struct stat *buf) { return stat_at(AT_FDCWD, path, buf, 0); }
EXPORT int stat64(const char *path, struct stat64 *buf)
{
    return stat_at(AT_FDCWD, path, (struct stat *)buf, 0);
}
EXPORT int lstat(const char *path, struct stat *buf)
{
    return stat_at(AT_FDCWD, path, buf, AT_SYMLINK_NOFOLLOW);
}
EXPORT int lstat64(const char *path, struct stat64 *buf)
{
    return stat_at(AT_FDCWD, path, (struct stat *)buf, AT_SYMLINK_NOFOLLOW);
}
EXPORT int fstatat(int dirfd, const char *path, struct stat *buf, int flags)
{
    return stat_at(dirfd, path, buf, flags);
}
EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *buf, int flags)
{
    return stat_at(dirfd, path, (struct stat *)buf, flags);
}

EXPORT int statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *buf)
{
    long r;
    if (!(flags & AT_EMPTY_PATH) && enter()) {
        r = lookup(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), use_of_lookup, SYS_statx,
                   dirfd, (long)path, flags, mask, (long)buf);
        leave();
    } else {
        r = traced(SYS_statx, dirfd, (long)path, flags, mask, (long)buf);
    }
    return (int)fail(r);
}

/* ---- access ---- */

static int access_at(int dirfd, const char *path, int mode, int flags)
{
    long r;
    /* faccessat2 carries the flags; the old call has none. */
    long nr = flags ? SYS_faccessat2 : SYS_faccessat;
    if (enter()) {
        r = lookup(dirfd, path, !(flags & AT_SYMLINK_NOFOLLOW), use_of_access, nr, dirfd,
                   (long)path, mode, flags, 0);
        leave();
    } else {
        r = traced(nr, dirfd, (long)path, mode, flags, 0);
    }
    return (int)fail(r);
}

EXPORT int access(const char *path, int mode) { return access_at(AT_FDCWD, path, mode, 0); }
EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
    return access_at(dirfd, path, mode, flags);
}

/* ---- readlink ---- */

static ssize_t readlink_at(int dirfd, const char *path, char *buf, size_t size)
{
    long r;
    if (enter()) {
        r = lookup(dirfd, path, 0, use_of_readlink, SYS_readlinkat, dirfd, (long)path,
                   (long)buf, (long)size, 0);
        leave();
    } else {
        r = traced(SYS_readlinkat, dirfd, (long)path, (long)buf, (long)size, 0);
    }
    return fail(r);
}

EXPORT ssize_t readlink(const char *path, char *buf, size_t size)
{
    return readlink_at(AT_FDCWD, path, buf, size);
}
EXPORT ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
{
    return readlink_at(dirfd, path, buf, size);
}

/* ---- realpath: glibc's component walk (stdlib/canonicalize.c), its look-ups logged ---- */

static char walk_name[NAME_MAX_ + 2];
static char walk_rest[2 * NAME_MAX_ + 2];
static char walk_link[NAME_MAX_ + 1];

/* A "/", "/." or "/.." still to come needs the name so far to be a searchable
 * directory, which the walk would not otherwise check. */
static int suffix_requires_dir_check(const char *end)
{
    while (*end == '/') {
        do
            end++;
        while (*end == '/');
        switch (*end++) {
        default:
            return 0;
        case '\0':
            return 1;
        case '.':
            break;
        }
        if (!*end || (*end == '.' && (!end[1] || end[1] == '/')))
            return 1;
    }
    return 0;
}

/* The walk; returns the length of the resolved name in walk_name, or -errno. A name
 * longer than the fixed buffers returns -ENAMETOOLONG through `too_long` so the caller
 * can hand the call to libc. */
static long walk(const char *name, int *too_long)
{
    size_t dest, len = strlen(name);
    int links = 0;
    *too_long = 0;
    if (len > NAME_MAX_) {
        *too_long = 1;
        return -ENAMETOOLONG;
    }
    memcpy(walk_rest, name, len + 1);
    const char *start = walk_rest, *end;
    if (name[0] != '/') {
        long n = untraced(SYS_getcwd, (long)walk_name, NAME_MAX_, 0, 0, 0);
        if (n <= 1 || walk_name[0] != '/') {
            *too_long = 1; /* an unreachable or missing directory: libc says what */
            return -ENOENT;
        }
        dest = (size_t)n - 1;
    } else {
        walk_name[0] = '/';
        dest = 1;
    }
    walk_name[dest] = 0;
    for (; *start; start = end) {
        while (*start == '/')
            start++;
        for (end = start; *end && *end != '/'; end++)
            ;
        size_t part = (size_t)(end - start);
        if (part == 0)
            break;
        if (part == 1 && start[0] == '.')
            continue;
        if (part == 2 && start[0] == '.' && start[1] == '.') {
            if (dest > 1)
                for (--dest; dest > 0 && walk_name[dest - 1] != '/'; --dest)
                    ;
            walk_name[dest] = 0;
            continue;
        }
        if (walk_name[dest - 1] != '/')
            walk_name[dest++] = '/';
        if (dest + part + 1 > NAME_MAX_) {
            *too_long = 1;
            return -ENAMETOOLONG;
        }
        memcpy(walk_name + dest, start, part);
        dest += part;
        walk_name[dest] = 0;
        long n = lookup(AT_FDCWD, walk_name, 0, use_of_readlink, SYS_readlinkat, AT_FDCWD,
                        (long)walk_name, (long)walk_link, sizeof walk_link - 1, 0);
        /* errno as glibc's walk leaves it: set by each call that failed, on success too */
        if (n < 0)
            errno = (int)-n;
        if (n >= 0) {
            if ((size_t)n >= sizeof walk_link - 1) {
                *too_long = 1;
                return -ENAMETOOLONG;
            }
            if (++links > 40)
                return -ELOOP;
            walk_link[n] = 0;
            size_t rest = strlen(end);
            if ((size_t)n + rest + 1 > sizeof walk_rest) {
                *too_long = 1;
                return -ENAMETOOLONG;
            }
            /* The link's target, then what was left of the name. */
            memmove(walk_rest + n, end, rest + 1);
            memcpy(walk_rest, walk_link, (size_t)n);
            end = walk_rest;
            if (walk_link[0] == '/') {
                dest = 1;
            } else if (dest > 1) {
                for (--dest; dest > 0 && walk_name[dest - 1] != '/'; --dest)
                    ;
            }
            walk_name[dest] = 0;
        } else if (suffix_requires_dir_check(end)) {
            /* glibc's dir_check: faccessat(name "/", F_OK, AT_EACCESS) */
            walk_name[dest] = '/';
            walk_name[dest + 1] = 0;
            long r = lookup(AT_FDCWD, walk_name, 1, use_of_access, SYS_faccessat2, AT_FDCWD,
                            (long)walk_name, F_OK, AT_EACCESS, 0);
            walk_name[dest] = 0;
            if (r < 0) {
                errno = (int)-r;
                return r;
            }
        } else if (-n != EINVAL) {
            return n;
        }
    }
    if (dest > 1 && walk_name[dest - 1] == '/')
        --dest;
    walk_name[dest] = 0;
    return (long)dest;
}

static char *libc_realpath(const char *name, char *resolved)
{
    static char *(*real)(const char *, char *);
    if (!real)
        real = (char *(*)(const char *, char *))libc_function("realpath");
    if (!real) {
        errno = ENOSYS;
        return NULL;
    }
    return real(name, resolved);
}

EXPORT char *realpath(const char *name, char *resolved)
{
    if (name == NULL || name[0] == 0 || !enter())
        return libc_realpath(name, resolved);
    int too_long;
    long n = walk(name, &too_long);
    leave();
    if (too_long)
        return libc_realpath(name, resolved);
    if (n < 0) {
        /* glibc leaves the name resolved so far in a caller's buffer. */
        if (resolved)
            memcpy(resolved, walk_name, strlen(walk_name) + 1);
        errno = (int)-n;
        return NULL;
    }
    char *out = resolved ? resolved : malloc((size_t)n + 1);
    if (!out) {
        errno = ENOMEM;
        return NULL;
    }
    memcpy(out, walk_name, (size_t)n + 1);
    return out;
}

EXPORT char *canonicalize_file_name(const char *name) { return realpath(name, NULL); }

/* ---- threads turn it off ---- */

EXPORT int pthread_create(void *thread, const void *attr, void *(*fn)(void *), void *arg)
{
    static int (*real)(void *, const void *, void *(*)(void *), void *);
    threaded = 1;
    if (!real)
        real = (int (*)(void *, const void *, void *(*)(void *), void *))libc_function(
            "pthread_create");
    return real ? real(thread, attr, fn, arg) : ENOSYS;
}

EXPORT int thrd_create(void *thread, int (*fn)(void *), void *arg)
{
    static int (*real)(void *, int (*)(void *), void *);
    threaded = 1;
    if (!real)
        real = (int (*)(void *, int (*)(void *), void *))libc_function("thrd_create");
    return real ? real(thread, fn, arg) : 2 /* thrd_error */;
}
