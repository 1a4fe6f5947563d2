/*
 * isobench-ctr: the small native half of isobench's container runtime.
 *
 * Python decides *what* a container is (names, cgroups, directories, limits); this helper does the
 * steps that must happen between fork and exec, where a big Python process would be slow (fork of a
 * process with pandas loaded costs milliseconds) or unsafe (no code may run in a half-built
 * namespace). It is spawned with posix_spawn/vfork, never forked from Python.
 *
 * Modes:
 *   run   clone into new namespaces, build the root (overlay + /proc /sys /dev + pivot_root),
 *         harden, exec argv as pid 1; the helper waits and exits with its status. (cold start)
 *   init  the same, but the container's pid 1 is this helper's tiny init that only reaps zombies,
 *         so exec can enter it later. The child re-executes the helper's image for it (mode pid1,
 *         below), so that all the init's memory is the container's (see exec_init).
 *   exec  join a running container (cgroups + setns into its namespaces), harden, run argv.
 *   netexec  join only the network namespace (through the pidfd) and exec a *host* binary (ip).
 *
 * Progress goes to --report-fd as lines, so the driver gets CLOCK_MONOTONIC phase stamps taken
 * inside the child (the clock is system-wide):
 *   P <phase> <start_ns> <end_ns>     a phase interval
 *   C <pid>                           host pid of the container's pid 1
 *   R                                 container init is ready
 *   E <message>                       setup failed (the exit status is then 125)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef __GLIBC__
/* musl (what the driver builds this with where it is installed: see helper.py) has no wrappers for
 * the new mount API. */
#include <linux/mount.h>
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
static int open_tree(int dfd, const char *path, unsigned int flags) {
    return (int)syscall(SYS_open_tree, dfd, path, flags);
}
static int move_mount(int from_dfd, const char *from, int to_dfd, const char *to, unsigned int flags) {
    return (int)syscall(SYS_move_mount, from_dfd, from, to_dfd, to, flags);
}
static int mount_setattr(int dfd, const char *path, unsigned int flags, struct mount_attr *attr, size_t size) {
    return (int)syscall(SYS_mount_setattr, dfd, path, flags, attr, size);
}
#endif

#define SETUP_FAILED 125
#define MAX_LIST 64
/* overlayfs stacks up to 500 lower layers; the layers workload goes deeper than MAX_LIST */
#define MAX_LOWERS 512

struct config {
    const char *mode;
    int report_fd;
    int ns_flags;        /* CLONE_NEW* chosen by the driver */
    int harden;
    int volatile_upper;  /* overlay "volatile": no syncs of an upper layer that is deleted after */
    const char *upper_tmpfs; /* tmpfs size: upper and work live in a tmpfs of the container's own */
    const char *lowers[MAX_LOWERS];
    int n_lowers;
    const char *upper, *work, *merged, *volume, *hostname, *cwd;
    const char *cgroup_procs[MAX_LIST];  /* parent writes the pid here */
    int n_cgroups;
    const char *cgroup_tasks[MAX_LIST];  /* the process writes "0" here itself (v1 fast path) */
    int n_tasks;
    const char *uid_map, *gid_map;
    const char *idmap_dir; /* subordinate ids: layers and volume are attached idmapped here */
    int target_pidfd;    /* exec/netexec: the container's pid 1, held by the driver (no pid-number race) */
    int go_fd;           /* run/init: one byte here when the driver has made the cgroups (EOF: it gave up) */
    pid_t runner_pid;    /* --ppid: the process that spawned us; we die with it */
    const char *rlimits[MAX_LIST]; /* NAME=SOFT:HARD, applied before exec */
    int n_rlimits;
    char **argv;
    char *args_start, *args_end; /* main's argv and environment strings: pid 1 scrubs them */
};

static struct config cfg = {.report_fd = -1, .target_pidfd = -1, .go_fd = -1};
static char report_buf[8192];
static size_t report_len;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Stamps are buffered and written in one go: one write per process keeps the cost off the clock. */
static void stamp(const char *phase, uint64_t start, uint64_t end) {
    if (cfg.report_fd < 0) return;
    int n = snprintf(report_buf + report_len, sizeof report_buf - report_len, "P %s %llu %llu\n", phase,
                     (unsigned long long)start, (unsigned long long)end);
    if (n > 0 && (size_t)n < sizeof report_buf - report_len) report_len += (size_t)n;
}

static void report_line(const char *fmt, ...) {
    if (cfg.report_fd < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(report_buf + report_len, sizeof report_buf - report_len, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof report_buf - report_len) report_len += (size_t)n;
}

static void flush_report(void) {
    size_t off = 0;
    while (cfg.report_fd >= 0 && off < report_len) {
        ssize_t w = write(cfg.report_fd, report_buf + off, report_len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    report_len = 0;
}

static void close_report(void) {
    flush_report();
    if (cfg.report_fd >= 0) close(cfg.report_fd);
    cfg.report_fd = -1;
}

__attribute__((noreturn, format(printf, 1, 2))) static void die(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cfg.report_fd >= 0) {
        report_line("E %s: %s\n", msg, strerror(errno));
        flush_report();
    } else {
        fprintf(stderr, "isobench-ctr: %s: %s\n", msg, strerror(errno));
    }
    _exit(SETUP_FAILED);
}

/* ---------------------------------------------------------------- argument parsing */

static int ns_flag(const char *name) {
    if (!strcmp(name, "pid")) return CLONE_NEWPID;
    if (!strcmp(name, "mount") || !strcmp(name, "mnt")) return CLONE_NEWNS;
    if (!strcmp(name, "uts")) return CLONE_NEWUTS;
    if (!strcmp(name, "ipc")) return CLONE_NEWIPC;
    if (!strcmp(name, "net")) return CLONE_NEWNET;
    if (!strcmp(name, "cgroup")) return CLONE_NEWCGROUP;
    if (!strcmp(name, "user")) return CLONE_NEWUSER;
    return -1;
}

static int parse_ns(char *list) {
    int flags = 0;
    if (!*list) return 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int f = ns_flag(tok);
        if (f < 0) {
            fprintf(stderr, "isobench-ctr: unknown namespace %s\n", tok);
            exit(2);
        }
        flags |= f;
    }
    return flags;
}

static void read_seccomp_filter(const char *path); /* hardening section */

static void parse_args(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: isobench-ctr run|init|exec|netexec [options] -- argv...\n");
        exit(2);
    }
    cfg.mode = argv[1];
    int i = 2;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (i + 1 >= argc && strcmp(a, "--harden") && strcmp(a, "--volatile")) {
            fprintf(stderr, "isobench-ctr: %s needs a value\n", a);
            exit(2);
        }
        if (!strcmp(a, "--harden")) cfg.harden = 1;
        else if (!strcmp(a, "--volatile")) cfg.volatile_upper = 1;
        else if (!strcmp(a, "--report-fd")) cfg.report_fd = atoi(argv[++i]);
        else if (!strcmp(a, "--ns")) cfg.ns_flags = parse_ns(argv[++i]);
        else if (!strcmp(a, "--lower") && cfg.n_lowers < MAX_LOWERS) cfg.lowers[cfg.n_lowers++] = argv[++i];
        else if (!strcmp(a, "--upper")) cfg.upper = argv[++i];
        else if (!strcmp(a, "--work")) cfg.work = argv[++i];
        else if (!strcmp(a, "--merged")) cfg.merged = argv[++i];
        else if (!strcmp(a, "--volume")) cfg.volume = argv[++i];
        else if (!strcmp(a, "--upper-tmpfs")) cfg.upper_tmpfs = argv[++i];
        else if (!strcmp(a, "--name")) i++; /* the container's host path: for gc's scan of cmdlines */
        else if (!strcmp(a, "--hostname")) cfg.hostname = argv[++i];
        else if (!strcmp(a, "--cwd")) cfg.cwd = argv[++i];
        else if (!strcmp(a, "--cgroup-procs") && cfg.n_cgroups < MAX_LIST)
            cfg.cgroup_procs[cfg.n_cgroups++] = argv[++i];
        else if (!strcmp(a, "--cgroup-tasks") && cfg.n_tasks < MAX_LIST)
            cfg.cgroup_tasks[cfg.n_tasks++] = argv[++i];
        else if (!strcmp(a, "--uid-map")) cfg.uid_map = argv[++i];
        else if (!strcmp(a, "--gid-map")) cfg.gid_map = argv[++i];
        else if (!strcmp(a, "--pidfd")) cfg.target_pidfd = atoi(argv[++i]);
        else if (!strcmp(a, "--go-fd")) cfg.go_fd = atoi(argv[++i]);
        else if (!strcmp(a, "--idmap-dir")) cfg.idmap_dir = argv[++i];
        else if (!strcmp(a, "--ppid")) cfg.runner_pid = (pid_t)atoi(argv[++i]);
        else if (!strcmp(a, "--rlimit") && cfg.n_rlimits < MAX_LIST) cfg.rlimits[cfg.n_rlimits++] = argv[++i];
        else if (!strcmp(a, "--seccomp")) read_seccomp_filter(argv[++i]);
        else {
            fprintf(stderr, "isobench-ctr: unknown option %s\n", a);
            exit(2);
        }
    }
    cfg.argv = argv + i;
    if (cfg.report_fd >= 0) fcntl(cfg.report_fd, F_SETFD, FD_CLOEXEC);
    if (cfg.go_fd >= 0) fcntl(cfg.go_fd, F_SETFD, FD_CLOEXEC);
}

/* ---------------------------------------------------------------- small helpers */

static void write_file(const char *path, const char *data) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) die("open %s", path);
    size_t len = strlen(data);
    if (write(fd, data, len) != (ssize_t)len) die("write %s to %s", data, path);
    close(fd);
}

static void attach_cgroups(pid_t pid) {
    char buf[32];
    snprintf(buf, sizeof buf, "%d", (int)pid);
    for (int i = 0; i < cfg.n_cgroups; i++) write_file(cfg.cgroup_procs[i], buf);
}

/* cgroup v1 moves the *calling* thread without the global threadgroup rwsem (whose write side
 * waits for an RCU grace period, ~3 ms per controller); any other pid pays it. */
static void attach_self_tasks(void) {
    for (int i = 0; i < cfg.n_tasks; i++) write_file(cfg.cgroup_tasks[i], "0");
}

static void xmount(const char *src, const char *dst, const char *type, unsigned long flags,
                   const char *data) {
    if (mount(src, dst, type, flags, data) < 0) die("mount %s on %s", type ? type : src, dst);
}

/* ---------------------------------------------------------------- runtime hardening */

/* Only stdio, the report pipe, the container's pidfd and the go pipe survive: the driver passes
 * the sealed helper image as an fd too, and nothing of the runner may reach the container's pid 1
 * (the child closes the go pipe first thing; report pipe and pidfd are close-on-exec). */
static void close_stray_fds(void) {
    int keep[3] = {cfg.report_fd, cfg.target_pidfd, cfg.go_fd};
    for (int i = 1; i < 3; i++) /* sort three */
        for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
            int t = keep[j];
            keep[j] = keep[j - 1];
            keep[j - 1] = t;
        }
    unsigned int from = 3;
    for (int i = 0; i < 3; i++) {
        if (keep[i] < (int)from) continue;
        if ((unsigned int)keep[i] > from) syscall(SYS_close_range, from, (unsigned int)keep[i] - 1, 0);
        from = (unsigned int)keep[i] + 1;
    }
    syscall(SYS_close_range, from, ~0u, 0);
}

/* Die with the runner: a SIGKILLed runner must not leave containers behind. The getppid() check
 * closes the race of a runner that died before the prctl (we were then already reparented).
 *
 * A parent-death signal follows the *thread* that spawned us, though, and an init's helper
 * outlives the call that made it (the density workload creates sandboxes from a thread pool that
 * is shut down afterwards). So that helper watches the runner *process* through a pidfd in its
 * wait loop instead (wait_container); the helpers of run, exec and netexec live only inside a
 * call and take the signal. */
static int runner_pidfd = -1;

static void guard_runner(void) {
    if (!strcmp(cfg.mode, "init") && cfg.runner_pid > 0) {
        runner_pidfd = (int)syscall(SYS_pidfd_open, cfg.runner_pid, 0);
        if (runner_pidfd < 0) die("pidfd_open of the runner %d", (int)cfg.runner_pid);
    } else if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) {
        die("parent-death signal");
    }
    if (cfg.runner_pid > 0 && getppid() != cfg.runner_pid) _exit(SETUP_FAILED);
}

/* Wait for the container's pid 1; SIGKILL it first if the runner dies (init mode). */
static void wait_container(pid_t pid, int *status) {
    int child_pidfd = runner_pidfd >= 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    struct pollfd fds[2] = {{.fd = child_pidfd, .events = POLLIN}, {.fd = runner_pidfd, .events = POLLIN}};
    while (child_pidfd >= 0) {
        /* The timeout is a fallback: here (6.18) the death of a multi-threaded runner did not
         * always wake a poll on its pidfd, so the runner is also checked for as our parent. */
        int n = poll(fds, 2, 1000);
        if (n < 0 && errno != EINTR) die("wait for container");
        if (n == 0 && fds[1].fd >= 0 && getppid() != cfg.runner_pid) fds[1].revents = POLLIN;
        if (fds[1].revents) {
            kill(pid, SIGKILL);
            fds[1].fd = -1;
        }
        if (fds[0].revents) break;
    }
    while (waitpid(pid, status, 0) < 0) {
        if (errno != EINTR) die("wait for container");
    }
}

/* The same for a process the helper started inside the container. In a new pid namespace
 * getppid() says 0 whoever the parent is, so the race check polls a pidfd of the helper instead
 * (readable once it exited). Called after any credential change, which clears the signal. */
static void guard_helper(int helper_pidfd) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("parent-death signal");
    struct pollfd pfd = {.fd = helper_pidfd, .events = POLLIN};
    if (helper_pidfd >= 0 && poll(&pfd, 1, 0) != 0) _exit(SETUP_FAILED);
    if (helper_pidfd >= 0) close(helper_pidfd);
    /* Until its execve, this process is the helper: a tenant may not open its /proc files
     * (exe, environ, mem), ptrace it or signal it through them. execve makes a command dumpable
     * again; the init, a fresh image of the helper, makes itself undumpable first thing. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die("make undumpable");
}

static int self_pidfd(void) {
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (fd < 0) die("pidfd_open of the helper");
    return fd;
}

static const struct {
    const char *name;
    int resource;
} rlimit_names[] = {
    {"as", RLIMIT_AS},           {"core", RLIMIT_CORE},       {"cpu", RLIMIT_CPU},
    {"data", RLIMIT_DATA},       {"fsize", RLIMIT_FSIZE},     {"locks", RLIMIT_LOCKS},
    {"memlock", RLIMIT_MEMLOCK}, {"msgqueue", RLIMIT_MSGQUEUE}, {"nice", RLIMIT_NICE},
    {"nofile", RLIMIT_NOFILE},   {"nproc", RLIMIT_NPROC},     {"rss", RLIMIT_RSS},
    {"rtprio", RLIMIT_RTPRIO},   {"rttime", RLIMIT_RTTIME},   {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK},
};

static rlim_t parse_rlim(const char *s, const char *spec) {
    if (!strncmp(s, "inf", 3) && (s[3] == '\0' || s[3] == ':')) return RLIM_INFINITY;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || (*end && *end != ':')) {
        errno = EINVAL;
        die("rlimit %s", spec);
    }
    return (rlim_t)v;
}

/* Explicit limits from the spec (NAME=SOFT:HARD), never the runner's: set while the process still
 * has CAP_SYS_RESOURCE, so a hard limit above the runner's can be granted. */
static void apply_rlimits(void) {
    for (int i = 0; i < cfg.n_rlimits; i++) {
        const char *spec = cfg.rlimits[i];
        const char *eq = strchr(spec, '=');
        const char *colon = eq ? strchr(eq, ':') : NULL;
        int resource = -1;
        for (size_t k = 0; eq && k < sizeof rlimit_names / sizeof rlimit_names[0]; k++)
            if (strlen(rlimit_names[k].name) == (size_t)(eq - spec) &&
                !strncmp(rlimit_names[k].name, spec, (size_t)(eq - spec)))
                resource = rlimit_names[k].resource;
        if (resource < 0 || !colon) {
            errno = EINVAL;
            die("rlimit %s", spec);
        }
        struct rlimit rl = {parse_rlim(eq + 1, spec), parse_rlim(colon + 1, spec)};
        if (setrlimit(resource, &rl) < 0) die("setrlimit %s", spec);
    }
}

/* The container's pid 1 shows nothing of the host: no host paths or cgroup files in its
 * cmdline, no environment, stdio on the container's /dev/null, its own name. */
static void become_quiet_init(void) {
    char *start = cfg.args_start;
    memset(start, 0, (size_t)(cfg.args_end - start));
    snprintf(start, (size_t)(cfg.args_end - start), "isobench-init");
    prctl(PR_SET_NAME, "isobench-init", 0, 0, 0);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0) die("open /dev/null in the container");
    for (int fd = 0; fd < 3; fd++)
        if (dup2(null, fd) < 0) die("stdio on /dev/null");
    close(null);
}

/* Mount targets are resolved as the container will see them: symlinks in the image are followed,
 * but never out of its root (openat2 RESOLVE_IN_ROOT), so an image's `/proc -> /etc` means the
 * image's /etc, not the host's. ``out`` gets the result as a path relative to the root, which is
 * the working directory while the root is built: it holds no symlink (so nothing can redirect it;
 * no tenant process exists yet), and it works for a subordinate-id root that may not walk the
 * host path above its directory. Returns -1 with errno set when it does not exist. */
static int root_fd = -1;
static char root_path[4096]; /* the root's resolved host path */

static int in_root(const char *rel, char *out, size_t n) {
    struct open_how how = {.flags = O_PATH | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
    if (fd < 0) return -1;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, out, n - 1);
    int saved = errno;
    close(fd);
    if (len < 0 || (size_t)len >= n - 1) {
        errno = len < 0 ? saved : ENAMETOOLONG;
        die("resolve %s in the root", rel);
    }
    out[len] = '\0';
    size_t root_len = strlen(root_path);
    if (strncmp(out, root_path, root_len) || (out[root_len] != '/' && out[root_len] != '\0')) {
        errno = EXDEV;
        die("%s resolved outside the root", rel);
    }
    memmove(out + 1, out + root_len, (size_t)len - root_len + 1);
    out[0] = '.';
    return 0;
}

/* A top-level directory of the root (proc, sys, dev, data), made if the image lacks it. */
static void root_dir(const char *name, mode_t mode, char *out, size_t n) {
    if (mkdirat(root_fd, name, mode) < 0 && errno != EEXIST) die("mkdir /%s in the root", name);
    if (in_root(name, out, n) < 0) die("resolve /%s in the root", name);
}

/* Overlay options grow with the layers; the kernel reads one page of them. */
struct optbuf {
    char s[4096];
    size_t len;
};

__attribute__((format(printf, 2, 3))) static void opt_append(struct optbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->s + b->len, sizeof b->s - b->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof b->s - b->len) {
        errno = E2BIG;
        die("overlay options longer than %zu bytes (too many or too long layer paths)", sizeof b->s - 1);
    }
    b->len += (size_t)n;
}

/* ---------------------------------------------------------------- root filesystem */

static const char *const masked_paths[] = {
    "/proc/acpi",        "/proc/asound",      "/proc/interrupts",  "/proc/kcore",
    "/proc/keys",        "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi",
    "/proc/timer_list",  "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
    NULL};
static const char *const readonly_paths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                             "/proc/sysrq-trigger", NULL};
static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};

/* ``dev`` is the resolved /dev of the root; everything below it is on the tmpfs mounted here. */
static void setup_dev(const char *dev) {
    char p[4096], host[64];
    xmount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
    /* Bind the host's nodes instead of mknod: works the same with and without a user namespace. */
    for (int i = 0; dev_nodes[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", dev, dev_nodes[i]);
        int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0) die("create %s", p);
        close(fd);
        snprintf(host, sizeof host, "/dev/%s", dev_nodes[i]);
        xmount(host, p, NULL, MS_BIND, NULL);
    }
    snprintf(p, sizeof p, "%s/pts", dev);
    mkdir(p, 0755);
    xmount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    snprintf(p, sizeof p, "%s/shm", dev);
    mkdir(p, 01777);
    xmount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
    static const char *const links[][2] = {{"pts/ptmx", "ptmx"},       {"/proc/self/fd", "fd"},
                                           {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
                                           {"/proc/self/fd/2", "stderr"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dev, links[i][1]);
        if (symlink(links[i][0], p) < 0) die("symlink %s", p);
    }
}

static void mask_paths(void) {
    char p[4096];
    struct stat st;
    for (int i = 0; masked_paths[i]; i++) {
        /* absent on this kernel: nothing to hide */
        if (in_root(masked_paths[i], p, sizeof p) < 0 || stat(p, &st) < 0) continue;
        if (S_ISDIR(st.st_mode))
            xmount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        else
            xmount("/dev/null", p, NULL, MS_BIND, NULL);
    }
    for (int i = 0; readonly_paths[i]; i++) {
        if (in_root(readonly_paths[i], p, sizeof p) < 0) continue;
        xmount(p, p, NULL, MS_BIND | MS_REC, NULL);
        xmount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    }
}

/* A cold run's upper layer is thrown away when its command exits: it lives in a tmpfs (0700)
 * mounted over an empty directory (the parent of --upper, shared by every container) in the
 * container's own mount namespace, made private first, so the host never sees it. No host
 * filesystem journal is touched to make or remove it,
 * it goes away with the namespace on every path (a SIGKILLed runner included), and what the
 * container writes there is memory charged to its own cgroup (it is already attached). */
static void mount_upper_tmpfs(void) {
    char data[64], dir[4096];
    size_t n = strlen(cfg.upper);
    const char *slash = strrchr(cfg.upper, '/');
    if (!slash || slash == cfg.upper || (size_t)(slash - cfg.upper) >= sizeof dir || n >= sizeof dir) {
        errno = EINVAL;
        die("--upper-tmpfs needs --upper in a directory, got %s", cfg.upper);
    }
    memcpy(dir, cfg.upper, (size_t)(slash - cfg.upper));
    dir[slash - cfg.upper] = '\0';
    snprintf(data, sizeof data, "mode=700,size=%s", cfg.upper_tmpfs);
    xmount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, data);
    if (mkdir(cfg.upper, 0755) < 0) die("mkdir %s", cfg.upper);
    if (mkdir(cfg.work, 0700) < 0) die("mkdir %s", cfg.work);
}

static void build_root(void) {
    char p[4096];
    static struct optbuf opts;
    uint64_t t0 = now_ns();
    /* Nothing we mount may propagate back to the host's mount table. */
    xmount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    /* Subordinate ids: the working directory is the container's directory (see child_main), and
     * every path is relative to it: its root uid may not walk the host path above it. */
    const char *merged = cfg.idmap_dir ? "merged" : cfg.merged;
    if (cfg.upper_tmpfs) mount_upper_tmpfs();
    opt_append(&opts, "lowerdir=");
    for (int i = 0; i < cfg.n_lowers; i++) {
        if (cfg.idmap_dir) opt_append(&opts, "%sidmap/%d", i ? ":" : "", i);
        else opt_append(&opts, "%s%s", i ? ":" : "", cfg.lowers[i]);
    }
    opt_append(&opts, ",upperdir=%s,workdir=%s%s%s", cfg.idmap_dir ? "upper" : cfg.upper,
               cfg.idmap_dir ? "work" : cfg.work, (cfg.ns_flags & CLONE_NEWUSER) ? ",userxattr" : "",
               cfg.volatile_upper ? ",volatile" : "");
    /* Hardened: no set-id binary or device node of the image or of the upper layer works. */
    xmount("overlay", merged, "overlay", cfg.harden ? MS_NOSUID | MS_NODEV : 0, opts.s);
    root_fd = open(merged, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) die("open %s", merged);
    snprintf(p, sizeof p, "/proc/self/fd/%d", root_fd);
    ssize_t len = readlink(p, root_path, sizeof root_path - 1);
    if (len < 0 || (size_t)len >= sizeof root_path - 1) die("resolve %s", merged);
    root_path[len] = '\0';
    if (fchdir(root_fd) < 0) die("chdir into the root");
    uint64_t t1 = now_ns();
    stamp("overlay", t0, t1);

    if (cfg.volume) {
        root_dir("data", 0755, p, sizeof p);
        /* ".." of the root (the working directory) is the container's directory */
        xmount(cfg.idmap_dir ? "../idmap/volume" : cfg.volume, p, NULL, MS_BIND | MS_REC, NULL);
        if (cfg.harden) xmount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV, NULL);
    }
    root_dir("proc", 0555, p, sizeof p);
    xmount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    root_dir("sys", 0555, p, sizeof p);
    if (mount("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        /* sysfs refuses a fresh mount in a user ns without its own net ns: bind the host's, read-only */
        xmount("/sys", p, NULL, MS_BIND | MS_REC, NULL);
        xmount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    }
    root_dir("dev", 0755, p, sizeof p);
    setup_dev(p);
    uint64_t t2 = now_ns();
    stamp("mounts", t1, t2);
    if (cfg.harden) {
        mask_paths();
        stamp("masks", t2, now_ns());
    }

    uint64_t t3 = now_ns();
    /* pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it,
     * so no directory for the old root is needed inside the image (runc does the same). */
    if (fchdir(root_fd) < 0) die("chdir into the root");
    if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root into %s", cfg.merged);
    close(root_fd);
    if (umount2(".", MNT_DETACH) < 0) die("unmount old root");
    if (chdir("/") < 0) die("chdir /");
    stamp("pivot_root", t3, now_ns());
}

/* ---------------------------------------------------------------- hardening */

/* The OCI runtime-spec default (what `runc spec` writes): everything else is dropped. */
static const int kept_caps[] = {CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE};

static void drop_caps(void) {
    uint64_t keep = 0;
    for (size_t i = 0; i < sizeof kept_caps / sizeof kept_caps[0]; i++) keep |= 1ull << kept_caps[i];
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (1ull << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL) die("drop capability %d", cap);
    }
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    for (int w = 0; w < 2; w++) {
        uint32_t bits = (uint32_t)(keep >> (32 * w));
        data[w].effective = data[w].permitted = bits; /* inheritable stays empty: nothing to pass on */
    }
    if (syscall(SYS_capset, &hdr, data) < 0) die("capset");
}

/* The seccomp filter is compiled by the driver from Docker's profile (drivers/container/seccomp/)
 * and cached as raw BPF; it is read before any namespace change (its path is a host path) and only
 * loaded here, so a start pays neither profile parsing nor libseccomp. */
static struct sock_filter seccomp_prog[BPF_MAXINSNS];
static unsigned short seccomp_len;

static void read_seccomp_filter(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open seccomp filter %s", path);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, (char *)seccomp_prog + got, sizeof seccomp_prog - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read seccomp filter %s", path);
        if (n == 0) break;
        got += (size_t)n;
        if (got == sizeof seccomp_prog) break;
    }
    close(fd);
    if (got == 0 || got % sizeof(struct sock_filter)) {
        errno = EINVAL;
        die("seccomp filter %s is not whole BPF instructions (%zu bytes)", path, got);
    }
    seccomp_len = (unsigned short)(got / sizeof(struct sock_filter));
}

static void load_seccomp(void) {
    if (!seccomp_len) {
        errno = EINVAL;
        die("hardening needs a seccomp filter (--seccomp FILE)");
    }
    struct sock_fprog prog = {.len = seccomp_len, .filter = seccomp_prog};
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) die("load seccomp filter");
}

static void harden(void) {
    uint64_t t0 = now_ns();
    drop_caps();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
    load_seccomp();
    stamp("hardening", t0, now_ns());
}

/* ---------------------------------------------------------------- container child */

static void loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) die("socket for loopback");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("get lo flags");
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("bring lo up");
    close(s);
}

__attribute__((noreturn)) static void init_loop(void) {
    /* Only SIGCHLD is taken (blocked, waited for). Every other signal keeps its default action,
     * and the kernel drops a default-action signal sent to pid 1 from inside its own namespace:
     * a tenant cannot kill or stop its init (kill -9 1 included). Teardown is a SIGKILL from the
     * host, an ancestor namespace, which always lands. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    become_quiet_init();
    report_line("R\n");
    close_report();
    for (;;) {
        if (sigwaitinfo(&set, NULL) == SIGCHLD) {
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
        }
    }
}

/* The container's pid 1 in init mode is a fresh image of the helper, not the child itself. The
 * child was cloned from the helper, which stays on the host as its monitor: every page the helper
 * had written (its stack, report buffer, seccomp filter) is shared copy-on-write, and the pages
 * the child copied before its cgroup attach were charged to the runner's cgroup. So the init's
 * own memory was mostly outside the container's memory cgroup: an idle init held 44 KiB of
 * anonymous memory, its cgroup was charged 16 KiB. After an exec every page the init touches is
 * charged to the container, as runc's and docker's are (their init execs the command). The image
 * is the sealed memfd the helper runs from, opened before the root was switched. */
__attribute__((noreturn)) static void exec_init(int self_exe) {
    char fd_arg[16], since_arg[24];
    snprintf(fd_arg, sizeof fd_arg, "%d", cfg.report_fd);
    snprintf(since_arg, sizeof since_arg, "%llu", (unsigned long long)now_ns());
    char *argv[] = {"isobench-init", "pid1", fd_arg, since_arg, NULL};
    char *envp[] = {NULL};
    flush_report(); /* this image's stamps; the new one reports its own */
    if (cfg.report_fd >= 0 && fcntl(cfg.report_fd, F_SETFD, 0) < 0) die("keep the report open for the init");
    syscall(SYS_execveat, self_exe, "", argv, envp, AT_EMPTY_PATH);
    die("exec the container's init");
}

/* Mode pid1: what exec_init started, with argv {name, "pid1", report fd, exec start}. */
__attribute__((noreturn)) static void pid1_main(char **argv) {
    /* Undumpable again before anything else (execve made it dumpable; no tenant process exists
     * yet), and the parent-death signal set once more in case the exec cleared it. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) die("make undumpable");
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0) die("parent-death signal");
    cfg.mode = "init";
    cfg.report_fd = atoi(argv[2]);
    if (cfg.report_fd >= 0) fcntl(cfg.report_fd, F_SETFD, FD_CLOEXEC);
    close_stray_fds();
    stamp("init_exec", strtoull(argv[3], NULL, 10), now_ns());
    init_loop();
}

static int child_main(int sync_fd, int helper_pidfd) {
    char c;
    if (runner_pidfd >= 0) close(runner_pidfd); /* the container holds nothing of the runner */
    if (cfg.go_fd >= 0) close(cfg.go_fd);
    /* Wait until the parent has put us in our cgroups (v2) or written our id maps (user ns). */
    if (sync_fd >= 0) {
        if (read(sync_fd, &c, 1) != 1) die("parent vanished before setup");
        close(sync_fd);
    }
    uint64_t t0 = now_ns();
    attach_self_tasks();
    /* The init's image, opened while /proc is still the host's (see exec_init). */
    int self_exe = -1;
    if (!strcmp(cfg.mode, "init") && (self_exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC)) < 0)
        die("open the helper's image for the init");
    /* Still the host's root uid: the last moment the host path to the container's directory can
     * be walked (see build_root). */
    if (cfg.idmap_dir && (chdir(cfg.idmap_dir) < 0 || chdir("..") < 0)) die("chdir %s/..", cfg.idmap_dir);
    if (cfg.ns_flags & CLONE_NEWUSER) {
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("become root in user namespace");
    }
    guard_helper(helper_pidfd); /* after the credential change, which would clear it */
    if (cfg.ns_flags & CLONE_NEWCGROUP) {
        /* After the attach, so the namespace root is the container's own cgroup. */
        if (unshare(CLONE_NEWCGROUP) < 0) die("unshare cgroup namespace");
    }
    stamp("cgroup_join", t0, now_ns());
    build_root();
    uint64_t t1 = now_ns();
    if ((cfg.ns_flags & CLONE_NEWUTS) && cfg.hostname)
        if (sethostname(cfg.hostname, strlen(cfg.hostname)) < 0) die("sethostname");
    if (cfg.ns_flags & CLONE_NEWNET) loopback_up();
    stamp("identity", t1, now_ns());
    if (cfg.cwd && chdir(cfg.cwd) < 0) die("chdir %s", cfg.cwd);
    uint64_t t3 = now_ns();
    apply_rlimits();
    stamp("rlimits", t3, now_ns());
    if (cfg.harden) harden();
    if (!strcmp(cfg.mode, "init")) exec_init(self_exe);
    uint64_t t2 = now_ns();
    report_line("X %llu\n", (unsigned long long)t2);
    flush_report();
    execvp(cfg.argv[0], cfg.argv);
    die("exec %s", cfg.argv[0]);
}

static void write_id_maps(pid_t pid) {
    char p[64];
    if (cfg.uid_map) {
        snprintf(p, sizeof p, "/proc/%d/uid_map", (int)pid);
        write_file(p, cfg.uid_map);
    }
    if (cfg.gid_map) {
        snprintf(p, sizeof p, "/proc/%d/setgroups", (int)pid);
        write_file(p, "deny");
        snprintf(p, sizeof p, "/proc/%d/gid_map", (int)pid);
        write_file(p, cfg.gid_map);
    }
}

/* Subordinate ids: the image layers and the volume are attached idmapped to the container's user
 * namespace (on-disk uid 0 is its root), inside its mount namespace, so their root-owned files stay
 * root-owned inside without a chowned copy. Setting an idmap needs host privilege, so the helper
 * does it for its child, after writing the id maps and before releasing it. The child's mount
 * namespace is made private first: nothing attached there may propagate to the host. */
static void idmap_attach(int tree, int userns, const char *src, const char *target) {
    struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)userns};
    if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0) die("idmap %s", src);
    if (move_mount(tree, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) < 0) die("attach %s at %s", src, target);
    close(tree);
}

static void idmap_layers(pid_t pid) {
    char p[4096];
    snprintf(p, sizeof p, "/proc/%d/ns/user", (int)pid);
    int userns = open(p, O_RDONLY | O_CLOEXEC);
    snprintf(p, sizeof p, "/proc/%d/ns/mnt", (int)pid);
    int child_mnt = open(p, O_RDONLY | O_CLOEXEC);
    int own_mnt = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (userns < 0 || child_mnt < 0 || own_mnt < 0) die("open the namespaces of pid %d", (int)pid);
    int trees[MAX_LOWERS + 1];
    int n = 0;
    for (; n < cfg.n_lowers; n++) {
        trees[n] = open_tree(AT_FDCWD, cfg.lowers[n], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (trees[n] < 0) die("clone the mount of %s", cfg.lowers[n]);
    }
    if (cfg.volume) {
        trees[n] = open_tree(AT_FDCWD, cfg.volume, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
        if (trees[n] < 0) die("clone the mount of %s", cfg.volume);
    }
    if (setns(child_mnt, CLONE_NEWNS) < 0) die("enter the mount namespace of pid %d", (int)pid);
    xmount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    for (int i = 0; i < cfg.n_lowers; i++) {
        snprintf(p, sizeof p, "%s/%d", cfg.idmap_dir, i);
        idmap_attach(trees[i], userns, cfg.lowers[i], p);
    }
    if (cfg.volume) {
        snprintf(p, sizeof p, "%s/volume", cfg.idmap_dir);
        idmap_attach(trees[n], userns, cfg.volume, p);
    }
    if (setns(own_mnt, CLONE_NEWNS) < 0) die("return to the helper's mount namespace");
    close(userns);
    close(child_mnt);
    close(own_mnt);
}

/* The helper's child lives in the container's pid namespace but the helper does not. If both died
 * together, the child's zombie would be handed to the *host's* init, and the container's pid 1
 * could not finish exiting until that init got round to reaping it (seconds on some hosts). So a
 * stop request (SIGTERM/SIGINT/SIGHUP) kills the child first and the helper reaps it itself. */
static volatile sig_atomic_t forward_pid;

static void forward_kill(int sig) {
    (void)sig;
    if (forward_pid > 0) kill((pid_t)forward_pid, SIGKILL);
}

static void block_stop_signals(sigset_t *old) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, old);
}

static void forward_stop_signals(pid_t child, const sigset_t *old) {
    forward_pid = child;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_kill;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigprocmask(SIG_SETMASK, old, NULL);
}

static int status_code(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
}

/* The driver makes the container's cgroups while this helper starts and clones (they overlap on
 * another CPU), then sends one byte: only then may the child be attached. EOF means the driver
 * could not make them: the child goes, and so does the helper, with the reason. */
static void await_go(pid_t child) {
    if (cfg.go_fd < 0) return;
    char g;
    ssize_t n;
    do n = read(cfg.go_fd, &g, 1);
    while (n < 0 && errno == EINTR);
    int err = errno;
    close(cfg.go_fd);
    cfg.go_fd = -1;
    if (n == 1) return;
    kill(child, SIGKILL);
    int status;
    while (waitpid(child, &status, __WALL) < 0 && errno == EINTR) {
    }
    errno = n < 0 ? err : ECANCELED;
    die("the driver did not make the container's cgroups");
}

static int start_container(void) {
    if (!cfg.merged || !cfg.upper || !cfg.work || cfg.n_lowers == 0) {
        fprintf(stderr, "isobench-ctr: --lower, --upper, --work and --merged are required\n");
        return 2;
    }
    if (cfg.upper_tmpfs && cfg.idmap_dir) {
        fprintf(stderr, "isobench-ctr: --upper-tmpfs does not go with --idmap-dir\n");
        return 2;
    }
    if (!strcmp(cfg.mode, "run") && !cfg.argv[0]) {
        fprintf(stderr, "isobench-ctr: run needs a command after --\n");
        return 2;
    }
    /* A hand-off to the child costs a wake-up; only pay it when the parent has work to do first
     * (write id maps, attach the child, or wait until the driver has made the cgroups). */
    int need_sync = (cfg.ns_flags & CLONE_NEWUSER) || cfg.n_cgroups > 0 || cfg.go_fd >= 0;
    int sync[2] = {-1, -1};
    if (need_sync && pipe2(sync, O_CLOEXEC) < 0) die("pipe");
    /* The cgroup namespace is entered by the child after its cgroup attach, not at clone time. */
    int flags = (cfg.ns_flags & ~CLONE_NEWCGROUP) | SIGCHLD;
    sigset_t old_mask;
    block_stop_signals(&old_mask);
    int helper_pidfd = self_pidfd();
    uint64_t t0 = now_ns();
    pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, 0);
    if (pid < 0) die("clone with namespaces 0x%x", cfg.ns_flags);
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        if (need_sync) close(sync[1]);
        /* The child's own stamps are its report; the parent's buffered lines are not repeated. */
        report_len = 0;
        _exit(child_main(sync[0], helper_pidfd));
    }
    uint64_t t1 = now_ns();
    close(helper_pidfd);
    forward_stop_signals(pid, &old_mask);
    if (need_sync) close(sync[0]);
    stamp("clone", t0, t1);
    report_line("C %d\n", (int)pid);
    if (cfg.ns_flags & CLONE_NEWUSER) write_id_maps(pid);
    if (cfg.idmap_dir) idmap_layers(pid);
    uint64_t ta = t1;
    if (cfg.go_fd >= 0) {
        uint64_t tw = now_ns();
        await_go(pid);
        ta = now_ns();
        stamp("cgroup_wait", tw, ta);
    }
    attach_cgroups(pid);
    stamp("cgroup_attach", ta, now_ns());
    flush_report();
    if (need_sync) {
        if (write(sync[1], "x", 1) != 1) die("release child");
        close(sync[1]);
    }
    if (!strcmp(cfg.mode, "init")) close_report(); /* the report's EOF tells the driver "ready" */
    int status;
    wait_container(pid, &status);
    uint64_t t2 = now_ns();
    report_line("W %llu\n", (unsigned long long)t2);
    close_report();
    return status_code(status);
}

/* ---------------------------------------------------------------- exec / netexec */

/* Join every namespace of the container in one setns on the pidfd the driver holds: no pid number
 * that could have been recycled is looked up, and the joins are atomic. */
static void join_by_pidfd(void) {
    attach_cgroups(getpid());
    attach_self_tasks();
    if (setns(cfg.target_pidfd, cfg.ns_flags) < 0) die("setns into the container through its pidfd");
    close(cfg.target_pidfd);
}

static int exec_into(void) {
    if (cfg.target_pidfd < 0 || !cfg.argv[0]) {
        fprintf(stderr, "isobench-ctr: %s needs --pidfd and a command\n", cfg.mode);
        return 2;
    }
    join_by_pidfd();
    if (!strcmp(cfg.mode, "netexec")) {
        execvp(cfg.argv[0], cfg.argv);
        die("exec %s", cfg.argv[0]);
    }
    /* Joining a pid namespace applies to children only. */
    sigset_t old_mask;
    block_stop_signals(&old_mask);
    int helper_pidfd = self_pidfd();
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        /* setns into a user namespace keeps the host uid, which a subordinate-id map leaves
         * unmapped: become the container's root as its pid 1 did. */
        if ((cfg.ns_flags & CLONE_NEWUSER) && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
            die("become root in the user namespace");
        guard_helper(helper_pidfd);
        if (chdir(cfg.cwd ? cfg.cwd : "/") < 0) die("chdir %s", cfg.cwd ? cfg.cwd : "/");
        apply_rlimits();
        if (cfg.harden) harden();
        report_len = 0; /* stamps of the exec path are not reported */
        execvp(cfg.argv[0], cfg.argv);
        die("exec %s", cfg.argv[0]);
    }
    close(helper_pidfd);
    forward_stop_signals(pid, &old_mask);
    close_report();
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return 255;
    }
    return status_code(status);
}

int main(int argc, char **argv, char **envp) {
    uint64_t t0 = now_ns();
    /* The kernel lays argv and then the environment out as one run of strings (what /proc shows
     * as cmdline and environ); measured before parsing, which cuts --ns lists up in place. */
    cfg.args_start = cfg.args_end = argv[0];
    for (int i = 0; i < argc && argv[i] == cfg.args_end; i++) cfg.args_end += strlen(argv[i]) + 1;
    for (char **e = envp; *e && *e == cfg.args_end; e++) cfg.args_end += strlen(*e) + 1;
    if (argc == 4 && !strcmp(argv[1], "pid1")) pid1_main(argv);
    parse_args(argc, argv);
    close_stray_fds();
    guard_runner();
    report_line("S %llu\n", (unsigned long long)t0);
    if (!strcmp(cfg.mode, "run") || !strcmp(cfg.mode, "init")) return start_container();
    if (!strcmp(cfg.mode, "exec")) return exec_into();
    if (!strcmp(cfg.mode, "netexec")) {
        cfg.ns_flags = CLONE_NEWNET;
        return exec_into();
    }
    fprintf(stderr, "isobench-ctr: unknown mode %s\n", cfg.mode);
    return 2;
}
