/*
 * isobench escape battery: tries each known container-escape primitive from inside a sandbox and
 * prints what happened as JSON lines. It never walks through a door it finds open:
 *
 *   - files whose write would act on the host (core_pattern, sysrq-trigger, release_agent, a
 *     running binary) are opened for writing and closed again without a single byte written;
 *   - the kernel module is an image of zeros, which the kernel rejects after the permission check;
 *   - ptrace seizes only a process whose name is the host's canary token, and lets go at once;
 *   - everything it reads (a raw block, a file by handle, a file through a symlink or a leaked
 *     directory) is a canary the host planted, found by the token inside.
 *
 * Facts only: the host decides what they mean (isobench.escape.verdicts).
 *
 *   probe locate PATH        (host side) the handle and the physical block of a planted file
 *   probe run key=value ...  (inside) the battery
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK 4096

static int g_argc;
static char **g_argv;

static const char *arg(const char *key) {
    size_t n = strlen(key);
    for (int i = 2; i < g_argc; i++)
        if (strncmp(g_argv[i], key, n) == 0 && g_argv[i][n] == '=') return g_argv[i] + n + 1;
    return "";
}

static const char *en(int e) {
    if (e == 0) return "";
    const char *name = strerrorname_np(e);
    static char buf[16];
    if (name) return name;
    snprintf(buf, sizeof buf, "E%d", e);
    return buf;
}

static void jstr(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static void kv_str(const char *k, const char *v, int comma) {
    printf("%s\"%s\":", comma ? "," : "", k);
    jstr(v);
}

static void kv_bool(const char *k, int v) { printf(",\"%s\":%s", k, v ? "true" : "false"); }

/* Whether the token is in what fd gives at offset (one block). */
static int has_token(int fd, off_t offset, const char *token, int *err) {
    void *buf;
    *err = 0;
    if (!*token || posix_memalign(&buf, BLOCK, BLOCK) != 0) {
        *err = EINVAL;
        return 0;
    }
    ssize_t n = pread(fd, buf, BLOCK, offset);
    int found = 0;
    if (n < 0)
        *err = errno;
    else
        found = memmem(buf, (size_t)n, token, strlen(token)) != NULL;
    free(buf);
    return found;
}

static void read_first_line(const char *path, char *out, size_t size) {
    out[0] = 0;
    FILE *f = fopen(path, "re");
    if (!f) return;
    if (fgets(out, (int)size, f)) out[strcspn(out, "\n")] = 0;
    fclose(f);
}

/* ------------------------------------------------------------------ host side: locate */

static int locate(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("{\"error\":\"open %s\"}\n", en(errno));
        return 1;
    }
    struct stat st;
    fstat(fd, &st);
    struct {
        struct file_handle fh;
        unsigned char data[MAX_HANDLE_SZ];
    } h;
    h.fh.handle_bytes = MAX_HANDLE_SZ;
    int mount_id, herr = 0;
    if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0) herr = errno;
    struct {
        struct fiemap fm;
        struct fiemap_extent ext[1];
    } m;
    memset(&m, 0, sizeof m);
    m.fm.fm_length = BLOCK;
    m.fm.fm_flags = FIEMAP_FLAG_SYNC;
    m.fm.fm_extent_count = 1;
    int merr = ioctl(fd, FS_IOC_FIEMAP, &m) < 0 ? errno : 0;
    if (!merr && m.fm.fm_mapped_extents < 1) merr = ENODATA;
    printf("{\"dev\":\"%u:%u\",\"ino\":%llu", major(st.st_dev), minor(st.st_dev),
           (unsigned long long)st.st_ino);
    kv_str("handle_errno", en(herr), 1);
    if (!herr) {
        printf(",\"handle_type\":%d,\"handle\":\"", h.fh.handle_type);
        const unsigned char *bytes = (const unsigned char *)(&h.fh + 1); /* f_handle[] */
        for (unsigned i = 0; i < h.fh.handle_bytes; i++) printf("%02x", bytes[i]);
        putchar('"');
    }
    kv_str("fiemap_errno", en(merr), 1);
    if (!merr)
        printf(",\"physical\":%llu,\"extent_flags\":%u", (unsigned long long)m.ext[0].fe_physical,
               m.ext[0].fe_flags);
    printf("}\n");
    close(fd);
    return 0;
}

/* ------------------------------------------------------------------ inside: the battery */

static int g_own_kernel;

static void env_line(void) {
    char boot[64], uidmap[128], line[256], capeff[32] = "";
    read_first_line("/proc/sys/kernel/random/boot_id", boot, sizeof boot);
    read_first_line("/proc/self/uid_map", uidmap, sizeof uidmap);
    FILE *f = fopen("/proc/self/status", "re");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %31s", capeff) == 1) break;
    if (f) fclose(f);
    g_own_kernel = *arg("boot_id") && strcmp(boot, arg("boot_id")) != 0;
    printf("{\"p\":\"_env\"");
    kv_str("boot_id", boot, 1);
    kv_bool("own_kernel", g_own_kernel);
    kv_str("uid_map", uidmap, 1);
    kv_str("cap_eff", capeff, 1);
    printf(",\"uid\":%u,\"pid\":%d,\"ppid\":%d}\n", getuid(), getpid(), getppid());
}

/* The pid whose comm is the token, or 0. */
static pid_t find_canary(void) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    char path[300], comm[64];
    pid_t found = 0;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/comm", e->d_name);
        read_first_line(path, comm, sizeof comm);
        if (*arg("token") && strcmp(comm, arg("token")) == 0) {
            found = atoi(e->d_name);
            break;
        }
    }
    if (d) closedir(d);
    return found;
}

/* CVE-2019-5736: a handle on a host binary (the runtime) that only ETXTBSY keeps from a write. */
static void runtime_exe(pid_t canary) {
    char who[4][16];
    int n = 0;
    snprintf(who[n++], 16, "self");
    snprintf(who[n++], 16, "1");
    if (getppid() > 1) snprintf(who[n++], 16, "%d", getppid());
    if (canary > 0) snprintf(who[n++], 16, "%d", canary);
    printf("{\"p\":\"runtime_exe\",\"targets\":[");
    for (int i = 0; i < n; i++) {
        char path[64], link[512] = "", self[64];
        snprintf(path, sizeof path, "/proc/%s/exe", who[i]);
        ssize_t len = readlink(path, link, sizeof link - 1);
        if (len >= 0) link[len] = 0;
        int fd = open(path, O_PATH | O_CLOEXEC);
        int perr = fd < 0 ? errno : 0, werr = EBADF;
        struct stat st = {0};
        if (fd >= 0) {
            fstat(fd, &st);
            snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
            int w = open(self, O_WRONLY | O_CLOEXEC); /* never written: closed at once */
            werr = w < 0 ? errno : 0;
            if (w >= 0) close(w);
            close(fd);
        }
        printf("%s{", i ? "," : "");
        kv_str("who", who[i], 0);
        kv_str("link", link, 1);
        kv_str("path_errno", en(perr), 1);
        if (!perr) {
            printf(",\"dev\":\"%u:%u\",\"ino\":%llu,\"size\":%lld,\"mtime_ns\":%lld", major(st.st_dev),
                   minor(st.st_dev), (unsigned long long)st.st_ino, (long long)st.st_size,
                   (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
            kv_str("write_errno", en(werr), 1);
        }
        printf("}");
    }
    printf("]}\n");
}

static const char *const CONTROLLERS[] = {"rdma", "memory", "pids", "cpuset", "devices", "freezer",
                                          "blkio", "cpu,cpuacct", "perf_event", "net_cls,net_prio",
                                          "hugetlb", "misc", NULL};

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = write(fd, text, strlen(text));
    (void)n;
    close(fd);
}

/* Whether the controller (the first of a "a,b" list) is already bound to a v1 hierarchy: only
 * then does a mount of it reuse that hierarchy. Binding an unbound one would move it off the v2
 * hierarchy for every process on the machine, which is not ours to do. */
static int bound_v1(const char *controllers) {
    char want[32], name[64], line[256];
    snprintf(want, sizeof want, "%.*s", (int)strcspn(controllers, ","), controllers);
    int hierarchy = 0, enabled = 0, found = 0;
    FILE *f = fopen("/proc/cgroups", "re");
    while (f && !found && fgets(line, sizeof line, f))
        found = sscanf(line, "%63s %d %*d %d", name, &hierarchy, &enabled) == 3 && strcmp(name, want) == 0;
    if (f) fclose(f);
    return found && hierarchy > 0 && enabled;
}

/* A fresh cgroup v1 mount and its release_agent opened for writing, in a child whose mount
 * namespace is its own (nothing is left if it dies meanwhile); prints ",key":... fragments. */
static void mount_attempt(int userns, const char *prefix) {
    int pfd[2];
    fflush(stdout);
    if (pipe(pfd) < 0) {
        printf(",\"%smount_errno\":\"pipe %s\"", prefix, en(errno));
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        char out[300];
        uid_t uid = getuid();
        gid_t gid = getgid();
        int uerr = unshare(userns ? CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWCGROUP : CLONE_NEWNS) < 0 ? errno : 0;
        if (uerr) {
            snprintf(out, sizeof out, ",\"%sunshare_errno\":\"%s\"", prefix, en(uerr));
        } else {
            if (userns) {
                char map[64];
                write_file("/proc/self/setgroups", "deny");
                snprintf(map, sizeof map, "0 %u 1", uid);
                write_file("/proc/self/uid_map", map);
                snprintf(map, sizeof map, "0 %u 1", gid);
                write_file("/proc/self/gid_map", map);
            }
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
            char dir[512];
            snprintf(dir, sizeof dir, "%s/isobench-escape-cg-XXXXXX", arg("work"));
            if (!mkdtemp(dir)) {
                snprintf(out, sizeof out, ",\"%smkdtemp_errno\":\"%s\"", prefix, en(errno));
            } else {
                int merr = ENOENT, tried = 0;
                const char *used = "";
                for (int i = 0; CONTROLLERS[i]; i++) {
                    if (!bound_v1(CONTROLLERS[i])) continue;
                    tried = 1;
                    if (mount("cgroup", dir, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, CONTROLLERS[i]) == 0) {
                        merr = 0;
                        used = CONTROLLERS[i];
                        break;
                    }
                    merr = errno;
                }
                int oerr = EBADF;
                if (!merr) {
                    char ra[600];
                    snprintf(ra, sizeof ra, "%s/release_agent", dir);
                    int fd = open(ra, O_WRONLY | O_CLOEXEC); /* never written: closed at once */
                    oerr = fd < 0 ? errno : 0;
                    if (fd >= 0) close(fd);
                    umount2(dir, MNT_DETACH);
                }
                rmdir(dir);
                snprintf(out, sizeof out,
                         ",\"%smount_errno\":\"%s\",\"%scontroller\":\"%s\",\"%sopen_errno\":\"%s\"", prefix,
                         tried ? en(merr) : "no controller on a v1 hierarchy", prefix, used, prefix,
                         merr ? "" : en(oerr));
            }
        }
        ssize_t wr = write(pfd[1], out, strlen(out));
        _exit(wr < 0);
    }
    close(pfd[1]);
    char buf[320] = "";
    ssize_t n = pid > 0 ? read(pfd[0], buf, sizeof buf - 1) : -1;
    buf[n > 0 ? n : 0] = 0;
    close(pfd[0]);
    if (pid > 0) waitpid(pid, NULL, 0);
    if (n > 0)
        printf("%s", buf);
    else
        printf(",\"%smount_errno\":\"fork failed\"", prefix);
}

/* CVE-2022-0492: a cgroup v1 release_agent writable (opened for writing, never written). */
static void release_agent(void) {
    printf("{\"p\":\"release_agent\",\"existing\":[");
    DIR *d = opendir("/sys/fs/cgroup");
    struct dirent *e;
    int first = 1;
    char path[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "/sys/fs/cgroup/%s/release_agent", e->d_name);
        if (access(path, F_OK) != 0) continue;
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        int err = fd < 0 ? errno : 0;
        if (fd >= 0) close(fd);
        printf("%s{", first ? "" : ",");
        kv_str("path", path, 0);
        kv_str("errno", en(err), 1);
        printf("}");
        first = 0;
    }
    if (d) closedir(d);
    printf("]");
    mount_attempt(0, "");
    /* The CVE's own path: a user and cgroup namespace of its own, root in it. */
    mount_attempt(1, "userns_");
    printf("}\n");
}

/* CVE-2024-21626: a directory fd (or the cwd) from outside the root, walked up to a root that
 * holds the host's canary. */
static void walk_one(int start, const char *label, const char *target) {
    int cur = dup(start), steps = 0, err = 0, found = 0;
    struct stat a, b;
    while (cur >= 0 && steps < 256) {
        int up = openat(cur, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (up < 0) {
            err = errno;
            break;
        }
        fstat(cur, &a);
        fstat(up, &b);
        close(cur);
        cur = up;
        if (a.st_dev == b.st_dev && a.st_ino == b.st_ino) break;
        steps++;
    }
    if (cur >= 0 && !err) {
        const char *rel = arg("canary");
        while (*rel == '/') rel++;
        int fd = *rel ? openat(cur, rel, O_RDONLY | O_CLOEXEC) : -1;
        if (fd < 0)
            err = *rel ? errno : EINVAL;
        else {
            found = has_token(fd, 0, arg("token"), &err);
            close(fd);
        }
    }
    if (cur >= 0) close(cur);
    printf("{");
    kv_str("fd", label, 0);
    kv_str("target", target, 1);
    printf(",\"steps\":%d", steps);
    kv_str("errno", en(err), 1);
    kv_bool("found", found);
    printf("}");
}

static int dir_fds(int *out, int max) {
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < max) {
        int fd = atoi(e->d_name);
        struct stat st;
        if (e->d_name[0] == '.' || fd == dirfd(d) || fstat(fd, &st) < 0 || !S_ISDIR(st.st_mode)) continue;
        out[n++] = fd;
    }
    if (d) closedir(d);
    return n;
}

static void leaked_fd(void) {
    int fds[64], n = dir_fds(fds, 64);
    printf("{\"p\":\"leaked_fd\",\"walks\":[");
    int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    char cwdlink[512] = "";
    ssize_t len = readlink("/proc/self/cwd", cwdlink, sizeof cwdlink - 1);
    if (len >= 0) cwdlink[len] = 0;
    if (cwd >= 0) {
        walk_one(cwd, "cwd", cwdlink);
        close(cwd);
    } else {
        printf("{\"fd\":\"cwd\",\"errno\":\"%s\",\"found\":false}", en(errno));
    }
    for (int i = 0; i < n; i++) {
        char label[16], path[64], link[512] = "";
        snprintf(label, sizeof label, "%d", fds[i]);
        snprintf(path, sizeof path, "/proc/self/fd/%d", fds[i]);
        len = readlink(path, link, sizeof link - 1);
        if (len >= 0) link[len] = 0;
        printf(",");
        walk_one(fds[i], label, link);
    }
    printf("]}\n");
}

/* The device cgroup (v1) rules this process is under, ";"-joined, or "" when not readable. */
static void devices_list(char *out, size_t size) {
    char line[512], rel[400] = "", path[512];
    out[0] = 0;
    FILE *f = fopen("/proc/self/cgroup", "re");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%*[^:]:devices:%399s", rel) == 1) break;
    if (f) fclose(f);
    const char *tries[2] = {"/sys/fs/cgroup/devices/devices.list", path};
    snprintf(path, sizeof path, "/sys/fs/cgroup/devices%s/devices.list", rel);
    for (int i = 0; i < 2 && !out[0]; i++) {
        FILE *d = fopen(tries[i], "re");
        while (d && fgets(line, sizeof line, d) && strlen(out) + strlen(line) + 2 < size) {
            line[strcspn(line, "\n")] = 0;
            if (out[0]) strcat(out, ";");
            strcat(out, line);
        }
        if (d) fclose(d);
    }
}

/* mknod of the host's block device, then one raw block read where the host's canary lies. */
static void mknod_block(void) {
    unsigned maj = 0, min = 0;
    long long offset = atoll(arg("offset"));
    printf("{\"p\":\"mknod_block\"");
    if (sscanf(arg("dev"), "%u:%u", &maj, &min) != 2 || !*arg("offset")) {
        printf(",\"skipped\":\"no device or offset from the host\"}\n");
        return;
    }
    char node[512];
    snprintf(node, sizeof node, "%s/isobench-escape-blk-%d", arg("work"), getpid());
    int merr = mknod(node, S_IFBLK | 0600, makedev(maj, min)) < 0 ? errno : 0;
    int oerr = EBADF, rerr = EBADF, found = 0, direct = 1;
    if (!merr) {
        int fd = open(node, O_RDONLY | O_DIRECT | O_CLOEXEC);
        if (fd < 0 && errno == EINVAL) {
            direct = 0;
            fd = open(node, O_RDONLY | O_CLOEXEC);
        }
        oerr = fd < 0 ? errno : 0;
        if (fd >= 0) {
            found = has_token(fd, (off_t)offset, arg("token"), &rerr);
            close(fd);
        }
        unlink(node);
    }
    printf(",\"dev\":\"%u:%u\",\"offset\":%lld", maj, min, offset);
    kv_str("mknod_errno", en(merr), 1);
    if (!merr) {
        char rules[1024];
        devices_list(rules, sizeof rules);
        kv_str("devices_list", rules, 1);
        kv_str("open_errno", en(oerr), 1);
        if (!oerr) {
            kv_str("read_errno", en(rerr), 1);
            kv_bool("direct", direct);
        }
    }
    kv_bool("found", found);
    printf("}\n");
}

static void open_for_write(const char *name, const char *path) {
    int fd = open(path, O_WRONLY | O_CLOEXEC); /* never written: closed at once */
    int err = fd < 0 ? errno : 0;
    if (fd >= 0) close(fd);
    printf("{\"p\":\"%s\"", name);
    kv_str("path", path, 1);
    kv_str("errno", en(err), 1);
    printf("}\n");
}

static int unhex(const char *s, unsigned char *out, int max) {
    int n = 0;
    while (s[0] && s[1] && n < max) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1) return -1;
        out[n++] = (unsigned char)v;
        s += 2;
    }
    return n;
}

/* "Shocker": open_by_handle_at of the host canary's handle through any fd on the host's fs. */
static void open_by_handle(void) {
    struct {
        struct file_handle fh;
        unsigned char data[MAX_HANDLE_SZ];
    } h;
    int bytes = unhex(arg("handle"), h.fh.f_handle, MAX_HANDLE_SZ);
    printf("{\"p\":\"open_by_handle\"");
    if (bytes <= 0 || !*arg("handle_type")) {
        printf(",\"skipped\":\"no handle from the host\"}\n");
        return;
    }
    h.fh.handle_bytes = (unsigned)bytes;
    h.fh.handle_type = atoi(arg("handle_type"));
    /* Every place a mount fd could come from: /, the volume, the cwd, inherited fds, mounts. */
    char paths[80][256];
    int n = 0;
    snprintf(paths[n++], 256, "/");
    if (*arg("volume")) snprintf(paths[n++], 256, "%s", arg("volume"));
    snprintf(paths[n++], 256, ".");
    int fds[32], nf = dir_fds(fds, 32);
    for (int i = 0; i < nf && n < 80; i++) snprintf(paths[n++], 256, "/proc/self/fd/%d", fds[i]);
    FILE *mi = fopen("/proc/self/mountinfo", "re");
    char line[1024], mp[256];
    while (mi && n < 80 && fgets(line, sizeof line, mi))
        if (sscanf(line, "%*s %*s %*s %*s %255s", mp) == 1) snprintf(paths[n++], 256, "%s", mp);
    if (mi) fclose(mi);
    printf(",\"tries\":[");
    int found = 0, shown = 0;
    char seen[512] = "";
    for (int i = 0; i < n && !found; i++) {
        /* Not O_PATH: open_by_handle_at refuses those. Directories only: nothing opens a device. */
        int mfd = open(paths[i], O_RDONLY | O_DIRECTORY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (mfd < 0) continue;
        int fd = open_by_handle_at(mfd, &h.fh, O_RDONLY | O_CLOEXEC);
        int err = fd < 0 ? errno : 0;
        if (fd >= 0) {
            int rerr;
            found = has_token(fd, 0, arg("token"), &rerr);
            if (!found) err = rerr ? rerr : ENODATA;
            close(fd);
        }
        close(mfd);
        /* One entry per distinct outcome keeps the evidence short. */
        char key[32];
        snprintf(key, sizeof key, "|%s|", en(err));
        if (found || (!strstr(seen, key) && strlen(seen) + strlen(key) < sizeof seen)) {
            strcat(seen, key);
            printf("%s{", shown++ ? "," : "");
            kv_str("mount", paths[i], 0);
            kv_str("errno", en(err), 1);
            printf("}");
        }
    }
    printf("]");
    kv_bool("found", found);
    printf(",\"mounts_tried\":%d}\n", n);
}

/* ptrace of the host's canary process: seize, then let go (the tracer exits). */
static void ptrace_canary(pid_t canary) {
    char path[64], comm[64] = "";
    printf("{\"p\":\"ptrace\"");
    if (*arg("pid_hint")) {
        snprintf(path, sizeof path, "/proc/%s/comm", arg("pid_hint"));
        read_first_line(path, comm, sizeof comm);
        kv_str("hint_comm", comm, 1);
    }
    if (canary <= 0) {
        printf(",\"pid\":null}\n");
        return;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        int err = ptrace(PTRACE_SEIZE, canary, 0, 0) < 0 ? errno : 0;
        _exit(err & 0xff); /* exiting detaches */
    }
    int status = 0, err = ECHILD;
    if (child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status)) err = WEXITSTATUS(status);
    printf(",\"pid\":%d", canary);
    kv_str("errno", en(err), 1);
    printf("}\n");
}

/* finit/init_module with an image of zeros: EPERM is a closed door, ENOEXEC an open one. */
static void kernel_module(void) {
    static char image[64];
    long r = syscall(SYS_init_module, image, sizeof image, "");
    printf("{\"p\":\"kernel_module\"");
    kv_str("errno", en(r < 0 ? errno : 0), 1);
    printf("}\n");
}

/* A symlink in the volume pointing at the host's canary outside it. */
static void volume_symlink(void) {
    printf("{\"p\":\"volume_symlink\"");
    if (!*arg("volume")) {
        printf(",\"skipped\":\"no volume\"}\n");
        return;
    }
    char link[600];
    snprintf(link, sizeof link, "%s/%s", arg("volume"), arg("link"));
    struct stat st;
    int made = 0, serr = 0;
    if (lstat(link, &st) != 0) {
        /* The host could not plant it (a guest's volume is a disk image): make the same link here. */
        serr = symlink(arg("canary"), link) < 0 ? errno : 0;
        made = !serr;
    }
    char target[512] = "";
    ssize_t len = readlink(link, target, sizeof target - 1);
    if (len >= 0) target[len] = 0;
    int fd = open(link, O_RDONLY | O_CLOEXEC), err = 0, found = 0;
    if (fd < 0)
        err = errno;
    else {
        found = has_token(fd, 0, arg("token"), &err);
        close(fd);
    }
    if (made) unlink(link);
    kv_str("link", link, 1);
    kv_str("target", target, 1);
    kv_bool("made_inside", made);
    kv_str("symlink_errno", en(serr), 1);
    kv_str("errno", en(err), 1);
    kv_bool("found", found);
    printf("}\n");
}

int main(int argc, char **argv) {
    g_argc = argc;
    g_argv = argv;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 3 && strcmp(argv[1], "locate") == 0) return locate(argv[2]);
    if (argc < 2 || strcmp(argv[1], "run") != 0) {
        fprintf(stderr, "usage: %s locate PATH | run key=value...\n", argv[0]);
        return 2;
    }
    env_line();
    pid_t canary = find_canary();
    runtime_exe(canary);
    release_agent();
    leaked_fd();
    mknod_block();
    open_for_write("core_pattern", "/proc/sys/kernel/core_pattern");
    open_for_write("sysrq_trigger", "/proc/sysrq-trigger");
    open_by_handle();
    ptrace_canary(canary);
    kernel_module();
    volume_symlink();
    printf("{\"p\":\"_done\"}\n");
    return 0;
}
