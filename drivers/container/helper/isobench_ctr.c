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
 *         so exec can enter it later.
 *   exec  join a running container (cgroups + setns into its namespaces), harden, run argv.
 *   netexec  join only the network namespace of a pid and exec a *host* binary (ip, for veths).
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
#include <net/if.h>
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SETUP_FAILED 125
#define MAX_LIST 64

struct config {
    const char *mode;
    int report_fd;
    int ns_flags;        /* CLONE_NEW* chosen by the driver */
    int harden;
    const char *lowers[MAX_LIST];
    int n_lowers;
    const char *upper, *work, *merged, *volume, *hostname, *cwd;
    const char *cgroup_procs[MAX_LIST];  /* parent writes the pid here */
    int n_cgroups;
    const char *cgroup_tasks[MAX_LIST];  /* the process writes "0" here itself (v1 fast path) */
    int n_tasks;
    const char *uid_map, *gid_map;
    pid_t target_pid;    /* exec/netexec */
    char **argv;
};

static struct config cfg = {.report_fd = -1};
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
        if (i + 1 >= argc && strcmp(a, "--harden")) {
            fprintf(stderr, "isobench-ctr: %s needs a value\n", a);
            exit(2);
        }
        if (!strcmp(a, "--harden")) cfg.harden = 1;
        else if (!strcmp(a, "--report-fd")) cfg.report_fd = atoi(argv[++i]);
        else if (!strcmp(a, "--ns")) cfg.ns_flags = parse_ns(argv[++i]);
        else if (!strcmp(a, "--lower") && cfg.n_lowers < MAX_LIST) cfg.lowers[cfg.n_lowers++] = argv[++i];
        else if (!strcmp(a, "--upper")) cfg.upper = argv[++i];
        else if (!strcmp(a, "--work")) cfg.work = argv[++i];
        else if (!strcmp(a, "--merged")) cfg.merged = argv[++i];
        else if (!strcmp(a, "--volume")) cfg.volume = argv[++i];
        else if (!strcmp(a, "--hostname")) cfg.hostname = argv[++i];
        else if (!strcmp(a, "--cwd")) cfg.cwd = argv[++i];
        else if (!strcmp(a, "--cgroup-procs") && cfg.n_cgroups < MAX_LIST)
            cfg.cgroup_procs[cfg.n_cgroups++] = argv[++i];
        else if (!strcmp(a, "--cgroup-tasks") && cfg.n_tasks < MAX_LIST)
            cfg.cgroup_tasks[cfg.n_tasks++] = argv[++i];
        else if (!strcmp(a, "--uid-map")) cfg.uid_map = argv[++i];
        else if (!strcmp(a, "--gid-map")) cfg.gid_map = argv[++i];
        else if (!strcmp(a, "--pid")) cfg.target_pid = (pid_t)atoi(argv[++i]);
        else if (!strcmp(a, "--seccomp")) read_seccomp_filter(argv[++i]);
        else {
            fprintf(stderr, "isobench-ctr: unknown option %s\n", a);
            exit(2);
        }
    }
    cfg.argv = argv + i;
    if (cfg.report_fd >= 0) fcntl(cfg.report_fd, F_SETFD, FD_CLOEXEC);
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

static void path_join(char *out, size_t n, const char *a, const char *b) { snprintf(out, n, "%s%s", a, b); }

/* ---------------------------------------------------------------- root filesystem */

static const char *const masked_paths[] = {
    "/proc/acpi",        "/proc/asound",      "/proc/interrupts",  "/proc/kcore",
    "/proc/keys",        "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi",
    "/proc/timer_list",  "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware",
    NULL};
static const char *const readonly_paths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                             "/proc/sysrq-trigger", NULL};
static const char *const dev_nodes[] = {"null", "zero", "full", "random", "urandom", "tty", NULL};

static void setup_dev(const char *root) {
    char dev[4096], p[4096], host[64];
    path_join(dev, sizeof dev, root, "/dev");
    mkdir(dev, 0755);
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

static void mask_paths(const char *root) {
    char p[4096];
    struct stat st;
    for (int i = 0; masked_paths[i]; i++) {
        path_join(p, sizeof p, root, masked_paths[i]);
        if (stat(p, &st) < 0) continue; /* absent on this kernel: nothing to hide */
        if (S_ISDIR(st.st_mode))
            xmount("tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
        else
            xmount("/dev/null", p, NULL, MS_BIND, NULL);
    }
    for (int i = 0; readonly_paths[i]; i++) {
        path_join(p, sizeof p, root, readonly_paths[i]);
        if (stat(p, &st) < 0) continue;
        xmount(p, p, NULL, MS_BIND | MS_REC, NULL);
        xmount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    }
}

static void build_root(void) {
    char opts[8192], p[4096];
    uint64_t t0 = now_ns();
    /* Nothing we mount may propagate back to the host's mount table. */
    xmount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    size_t off = (size_t)snprintf(opts, sizeof opts, "lowerdir=");
    for (int i = 0; i < cfg.n_lowers; i++)
        off += (size_t)snprintf(opts + off, sizeof opts - off, "%s%s", i ? ":" : "", cfg.lowers[i]);
    snprintf(opts + off, sizeof opts - off, ",upperdir=%s,workdir=%s%s", cfg.upper, cfg.work,
             (cfg.ns_flags & CLONE_NEWUSER) ? ",userxattr" : "");
    xmount("overlay", cfg.merged, "overlay", 0, opts);
    uint64_t t1 = now_ns();
    stamp("overlay", t0, t1);

    if (cfg.volume) {
        path_join(p, sizeof p, cfg.merged, "/data");
        mkdir(p, 0755);
        xmount(cfg.volume, p, NULL, MS_BIND | MS_REC, NULL);
    }
    path_join(p, sizeof p, cfg.merged, "/proc");
    mkdir(p, 0555);
    xmount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    path_join(p, sizeof p, cfg.merged, "/sys");
    mkdir(p, 0555);
    if (mount("sysfs", p, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
        /* sysfs refuses a fresh mount in a user ns without its own net ns: bind the host's, read-only */
        xmount("/sys", p, NULL, MS_BIND | MS_REC, NULL);
        xmount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    }
    setup_dev(cfg.merged);
    uint64_t t2 = now_ns();
    stamp("mounts", t1, t2);
    if (cfg.harden) {
        mask_paths(cfg.merged);
        stamp("masks", t2, now_ns());
    }

    uint64_t t3 = now_ns();
    /* pivot_root(".", ".") stacks the old root under the new one; detaching "." then drops it,
     * so no directory for the old root is needed inside the image (runc does the same). */
    if (chdir(cfg.merged) < 0) die("chdir %s", cfg.merged);
    if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root into %s", cfg.merged);
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
        data[w].effective = data[w].permitted = data[w].inheritable = bits;
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

static void noop_handler(int sig) { (void)sig; }

__attribute__((noreturn)) static void init_loop(void) {
    /* pid 1 of a pid namespace only gets signals it has a handler for, so install no-op handlers,
     * block them and take them synchronously. */
    sigset_t set;
    sigemptyset(&set);
    int sigs[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        signal(sigs[i], noop_handler);
        sigaddset(&set, sigs[i]);
    }
    sigprocmask(SIG_BLOCK, &set, NULL);
    report_line("R\n");
    close_report();
    for (;;) {
        int sig = sigwaitinfo(&set, NULL);
        if (sig == SIGCHLD) {
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
        } else if (sig > 0) {
            _exit(0); /* leaving pid 1 makes the kernel kill everything else in the namespace */
        }
    }
}

static int child_main(int sync_fd) {
    char c;
    /* Wait until the parent has put us in our cgroups (v2) or written our id maps (user ns). */
    if (sync_fd >= 0) {
        if (read(sync_fd, &c, 1) != 1) die("parent vanished before setup");
        close(sync_fd);
    }
    uint64_t t0 = now_ns();
    attach_self_tasks();
    if (cfg.ns_flags & CLONE_NEWUSER) {
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0) die("become root in user namespace");
    }
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
    if (cfg.harden) harden();
    if (!strcmp(cfg.mode, "init")) init_loop();
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

static int start_container(void) {
    if (!cfg.merged || !cfg.upper || !cfg.work || cfg.n_lowers == 0) {
        fprintf(stderr, "isobench-ctr: --lower, --upper, --work and --merged are required\n");
        return 2;
    }
    if (!strcmp(cfg.mode, "run") && !cfg.argv[0]) {
        fprintf(stderr, "isobench-ctr: run needs a command after --\n");
        return 2;
    }
    /* A hand-off to the child costs a wake-up; only pay it when the parent has work to do first. */
    int need_sync = (cfg.ns_flags & CLONE_NEWUSER) || cfg.n_cgroups > 0;
    int sync[2] = {-1, -1};
    if (need_sync && pipe2(sync, O_CLOEXEC) < 0) die("pipe");
    /* The cgroup namespace is entered by the child after its cgroup attach, not at clone time. */
    int flags = (cfg.ns_flags & ~CLONE_NEWCGROUP) | SIGCHLD;
    sigset_t old_mask;
    block_stop_signals(&old_mask);
    uint64_t t0 = now_ns();
    pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, 0);
    if (pid < 0) die("clone with namespaces 0x%x", cfg.ns_flags);
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        if (need_sync) close(sync[1]);
        /* The child's own stamps are its report; the parent's buffered lines are not repeated. */
        report_len = 0;
        _exit(child_main(sync[0]));
    }
    uint64_t t1 = now_ns();
    forward_stop_signals(pid, &old_mask);
    if (need_sync) close(sync[0]);
    stamp("clone", t0, t1);
    report_line("C %d\n", (int)pid);
    if (cfg.ns_flags & CLONE_NEWUSER) write_id_maps(pid);
    attach_cgroups(pid);
    stamp("cgroup_attach", t1, now_ns());
    flush_report();
    if (need_sync) {
        if (write(sync[1], "x", 1) != 1) die("release child");
        close(sync[1]);
    }
    if (!strcmp(cfg.mode, "init")) close_report(); /* the report's EOF tells the driver "ready" */
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) die("wait for container");
    }
    uint64_t t2 = now_ns();
    report_line("W %llu\n", (unsigned long long)t2);
    close_report();
    return status_code(status);
}

/* ---------------------------------------------------------------- exec / netexec */

static const char *const ns_order[] = {"user", "cgroup", "ipc", "uts", "net", "pid", "mnt", NULL};
static const int ns_order_flags[] = {CLONE_NEWUSER, CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWUTS,
                                     CLONE_NEWNET,  CLONE_NEWPID,    CLONE_NEWNS};

static int exec_into(void) {
    if (cfg.target_pid <= 0 || !cfg.argv[0]) {
        fprintf(stderr, "isobench-ctr: exec needs --pid and a command\n");
        return 2;
    }
    int fds[8];
    char p[64];
    /* Open every namespace first: after joining the mount namespace /proc is the container's. */
    for (int i = 0; ns_order[i]; i++) {
        fds[i] = -1;
        if (!(cfg.ns_flags & ns_order_flags[i])) continue;
        snprintf(p, sizeof p, "/proc/%d/ns/%s", (int)cfg.target_pid, ns_order[i]);
        fds[i] = open(p, O_RDONLY | O_CLOEXEC);
        if (fds[i] < 0) die("open %s", p);
    }
    attach_cgroups(getpid());
    attach_self_tasks();
    for (int i = 0; ns_order[i]; i++) {
        if (fds[i] < 0) continue;
        if (setns(fds[i], ns_order_flags[i]) < 0) die("setns %s of pid %d", ns_order[i], (int)cfg.target_pid);
        close(fds[i]);
    }
    if (!strcmp(cfg.mode, "netexec")) {
        execvp(cfg.argv[0], cfg.argv);
        die("exec %s", cfg.argv[0]);
    }
    /* Joining a pid namespace applies to children only. */
    sigset_t old_mask;
    block_stop_signals(&old_mask);
    pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old_mask, NULL);
        if (chdir(cfg.cwd ? cfg.cwd : "/") < 0) die("chdir %s", cfg.cwd ? cfg.cwd : "/");
        if (cfg.harden) harden();
        report_len = 0; /* stamps of the exec path are not reported */
        execvp(cfg.argv[0], cfg.argv);
        die("exec %s", cfg.argv[0]);
    }
    forward_stop_signals(pid, &old_mask);
    close_report();
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return 255;
    }
    return status_code(status);
}

int main(int argc, char **argv) {
    uint64_t t0 = now_ns();
    parse_args(argc, argv);
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
