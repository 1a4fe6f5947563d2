/*
 * isobench-agent: PID 1 of every isobench guest after the initramfs switches root.
 *
 * Why a static C program and not busybox sh: the agent must stream a child's stdout and stderr
 * while feeding its stdin and watching the channel for a kill request, all without a shell's
 * buffering or quoting rules getting in the way, and it must reap orphans as PID 1.
 *
 * Wire format (both directions, over the virtio-serial port named org.isobench.agent.0):
 *   frame   = magic 'I' 'B' | type (1 byte) | length (u32 big-endian) | payload (length bytes)
 * Host -> guest:
 *   'E' exec:      strlist(argv) strlist(env "K=V") str(cwd) str(stdin)
 *                  where str = u32 BE length + bytes, strlist = u32 BE count + count x str
 *   'K' kill:      SIGKILL the running command's process group and every process descending
 *                  from it (host-side deadline passed)
 *   'P' poweroff:  sync and power the guest off
 * Guest -> host:
 *   'R' ready:     "key=value\n" lines (guest clock readings, see send_ready)
 *   'O' / 'e':     a chunk of the command's stdout / stderr
 *   'X' exit:      "exit N" or "signal N", plus " start_ns=.. end_ns=.." guest CLOCK_MONOTONIC
 *   'F' failure:   the command could not be started (text)
 *   'p' poweroff acknowledged
 * Compiled on the host at image build with gcc -static, so it depends on nothing in the rootfs.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "org.isobench.agent.0"
#define MAX_FRAME (64u * 1024u * 1024u)
#define WORKDIR "/var/tmp/isobench"

static int port = -1;
static char init_uptime[32] = "";
static char switch_uptime[32] = "";

static void logmsg(const char *msg)
{
    int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
    if (fd >= 0) {
        dprintf(fd, "isobench-agent: %s\n", msg);
        close(fd);
    }
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd pfd = {fd, POLLOUT, 0};
                poll(&pfd, 1, 100);
                continue;
            }
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void send_frame(char type, const void *data, uint32_t len)
{
    unsigned char hdr[7] = {'I', 'B', (unsigned char)type, (unsigned char)(len >> 24),
                            (unsigned char)(len >> 16), (unsigned char)(len >> 8), (unsigned char)len};
    if (write_all(port, hdr, sizeof hdr) < 0 || (len && write_all(port, data, len) < 0))
        logmsg("write to host channel failed");
}

static void send_text(char type, const char *text) { send_frame(type, text, (uint32_t)strlen(text)); }

/* Read exactly n bytes; while the host is disconnected the port reports HUP, so wait for it. */
static int read_full(void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        struct pollfd pfd = {port, POLLIN, 0};
        int r = poll(&pfd, 1, 1000);
        if (r < 0 && errno != EINTR)
            return -1;
        if (r <= 0)
            continue;
        if (!(pfd.revents & POLLIN)) {
            usleep(20000); /* host not connected: nothing to read yet */
            continue;
        }
        ssize_t got = read(port, p, n);
        if (got < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -1;
        }
        if (got == 0) {
            usleep(20000);
            continue;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

struct cursor {
    unsigned char *p;
    size_t left;
};

static int take_u32(struct cursor *c, uint32_t *out)
{
    if (c->left < 4)
        return -1;
    *out = be32(c->p);
    c->p += 4;
    c->left -= 4;
    return 0;
}

/* Returns a NUL-terminated copy (the payload is not NUL-terminated) and its length. */
static char *take_str(struct cursor *c, uint32_t *len_out)
{
    uint32_t len;
    if (take_u32(c, &len) < 0 || c->left < len)
        return NULL;
    char *s = malloc((size_t)len + 1);
    if (!s)
        return NULL;
    memcpy(s, c->p, len);
    s[len] = '\0';
    c->p += len;
    c->left -= len;
    if (len_out)
        *len_out = len;
    return s;
}

static char **take_strlist(struct cursor *c)
{
    uint32_t count;
    if (take_u32(c, &count) < 0 || count > 65536)
        return NULL;
    char **v = calloc((size_t)count + 1, sizeof(char *));
    if (!v)
        return NULL;
    for (uint32_t i = 0; i < count; i++) {
        v[i] = take_str(c, NULL);
        if (!v[i])
            return NULL;
    }
    return v;
}

static int has_path(char **env)
{
    for (char **e = env; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0)
            return 1;
    return 0;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static int drain(int *fd, char type)
{
    char buf[65536];
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n > 0) {
        send_frame(type, buf, (uint32_t)n);
        return 1;
    }
    if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        close(*fd);
        *fd = -1;
    }
    return 0;
}

#define MAX_PROCS 8192

/* SIGKILL the running command's process group and every live process that descends from it now,
 * whichever session it moved to: fio's job processes call setsid, so the group kill alone left
 * them doing I/O on the guest's disks under the next command (the rerun of a stalled fio). The
 * tree is read from /proc before the kill: once a parent dies its children belong to this PID 1,
 * like the servers earlier commands left running on purpose, and could no longer be told apart.
 * A few rounds catch what forked while the previous one was being killed. */
static void kill_tree(pid_t root)
{
    static pid_t pids[MAX_PROCS], ppids[MAX_PROCS];
    static char mine[MAX_PROCS];
    for (int round = 0; round < 3; round++) {
        int n = 0;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d)) && n < MAX_PROCS) {
            char *end, path[64], buf[512], state;
            long p = strtol(de->d_name, &end, 10);
            int ppid;
            if (*end || p <= 1)
                continue;
            snprintf(path, sizeof path, "/proc/%ld/stat", p);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            ssize_t r = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (r <= 0)
                continue;
            buf[r] = '\0';
            char *after = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
            if (!after || sscanf(after + 1, " %c %d", &state, &ppid) != 2 || state == 'Z')
                continue;
            pids[n] = (pid_t)p;
            ppids[n] = (pid_t)ppid;
            n++;
        }
        if (d)
            closedir(d);
        memset(mine, 0, (size_t)n);
        int found = 0;
        for (int grew = 1; grew;) {
            grew = 0;
            for (int i = 0; i < n; i++) {
                if (mine[i])
                    continue;
                int in = pids[i] == root || ppids[i] == root;
                for (int j = 0; !in && j < n; j++)
                    in = mine[j] && pids[j] == ppids[i];
                if (in) {
                    mine[i] = 1;
                    grew = 1;
                    found++;
                }
            }
        }
        kill(-root, SIGKILL);
        if (!found)
            return;
        for (int i = 0; i < n; i++)
            if (mine[i])
                kill(pids[i], SIGKILL);
    }
}

static void run_exec(unsigned char *payload, uint32_t len)
{
    struct cursor c = {payload, len};
    char **argv = take_strlist(&c);
    char **env = argv ? take_strlist(&c) : NULL;
    char *cwd = env ? take_str(&c, NULL) : NULL;
    uint32_t in_len = 0;
    char *in = cwd ? take_str(&c, &in_len) : NULL;
    if (!in || !argv[0]) {
        send_text('F', "malformed exec request");
        return;
    }
    if (!env[0]) {
        free(env);
        env = calloc(4, sizeof(char *));
        env[0] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        env[1] = "HOME=/root";
        env[2] = "TERM=dumb";
    } else if (!has_path(env)) {
        size_t n = 0;
        while (env[n])
            n++;
        env = realloc(env, (n + 2) * sizeof(char *));
        env[n] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        env[n + 1] = NULL;
    }
    int pin[2], pout[2], perr[2], pexec[2];
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC) ||
        pipe2(pexec, O_CLOEXEC)) {
        send_text('F', "pipe failed");
        return;
    }
    int64_t start = clock_ns(CLOCK_MONOTONIC);
    pid_t pid = fork();
    if (pid < 0) {
        send_text('F', "fork failed");
        return;
    }
    if (pid == 0) {
        setsid();
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        signal(SIGPIPE, SIG_DFL);
        if (cwd[0] && chdir(cwd) < 0) {
            dprintf(pexec[1], "cannot chdir to %s: %s", cwd, strerror(errno));
            _exit(127);
        }
        environ = env;
        execvp(argv[0], argv);
        dprintf(pexec[1], "cannot execute %s: %s", argv[0], strerror(errno));
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    close(pexec[1]);
    /* The exec-status pipe closes on a successful exec and carries the reason otherwise. */
    char why[512];
    ssize_t wn = read(pexec[0], why, sizeof why - 1);
    close(pexec[0]);
    if (wn > 0) {
        why[wn] = '\0';
        waitpid(pid, NULL, 0);
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        send_text('F', why);
        return;
    }
    int fin = pin[1], fout = pout[0], ferr = perr[0];
    set_nonblock(fin);
    set_nonblock(fout);
    set_nonblock(ferr);
    size_t in_off = 0;
    if (in_len == 0) {
        close(fin);
        fin = -1;
    }
    int status = 0, exited = 0;
    unsigned char hdr[7];
    while (!exited || fout >= 0 || ferr >= 0) {
        struct pollfd p[4];
        int n = 0, iout = -1, ierr = -1, iin = -1, iport;
        if (fout >= 0) {
            p[n] = (struct pollfd){fout, POLLIN, 0};
            iout = n++;
        }
        if (ferr >= 0) {
            p[n] = (struct pollfd){ferr, POLLIN, 0};
            ierr = n++;
        }
        if (fin >= 0) {
            p[n] = (struct pollfd){fin, POLLOUT, 0};
            iin = n++;
        }
        p[n] = (struct pollfd){port, POLLIN, 0};
        iport = n++;
        poll(p, (nfds_t)n, exited ? 20 : 100);
        if (iout >= 0 && p[iout].revents)
            drain(&fout, 'O');
        if (ierr >= 0 && p[ierr].revents)
            drain(&ferr, 'e');
        if (iin >= 0 && p[iin].revents) {
            ssize_t w = write(fin, in + in_off, in_len - in_off);
            if (w > 0)
                in_off += (size_t)w;
            if (in_off >= in_len || (w < 0 && errno != EAGAIN && errno != EINTR)) {
                close(fin);
                fin = -1;
            }
        }
        if (p[iport].revents & POLLIN) {
            if (read_full(hdr, sizeof hdr) == 0) {
                uint32_t l = be32(hdr + 3);
                char *skip = l ? malloc(l) : NULL;
                if (l)
                    read_full(skip, l);
                free(skip);
                if (hdr[2] == 'K')
                    kill_tree(pid);
            }
        }
        if (!exited) {
            if (waitpid(pid, &status, WNOHANG) == pid)
                exited = 1;
        } else {
            /* The command is gone: take what is buffered, but do not wait for daemonised
             * grandchildren that inherited the pipes. */
            while (fout >= 0 && drain(&fout, 'O'))
                ;
            while (ferr >= 0 && drain(&ferr, 'e'))
                ;
            if (fout >= 0) {
                close(fout);
                fout = -1;
            }
            if (ferr >= 0) {
                close(ferr);
                ferr = -1;
            }
        }
    }
    if (fin >= 0)
        close(fin);
    int64_t end = clock_ns(CLOCK_MONOTONIC);
    char msg[128];
    if (WIFSIGNALED(status))
        snprintf(msg, sizeof msg, "signal %d start_ns=%lld end_ns=%lld", WTERMSIG(status),
                 (long long)start, (long long)end);
    else
        snprintf(msg, sizeof msg, "exit %d start_ns=%lld end_ns=%lld", WEXITSTATUS(status),
                 (long long)start, (long long)end);
    send_text('X', msg);
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
    free(cwd);
    free(in);
}

static int open_port(void)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        DIR *d = opendir("/sys/class/virtio-ports");
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] == '.')
                continue;
            char path[300], name[128] = "";
            snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", de->d_name);
            FILE *f = fopen(path, "r");
            if (!f)
                continue;
            if (fgets(name, sizeof name, f))
                name[strcspn(name, "\n")] = '\0';
            fclose(f);
            if (strcmp(name, PORT_NAME) == 0) {
                snprintf(path, sizeof path, "/dev/%s", de->d_name);
                int fd = open(path, O_RDWR | O_CLOEXEC);
                if (fd >= 0) {
                    closedir(d);
                    return fd;
                }
            }
        }
        if (d)
            closedir(d);
        usleep(10000);
    }
    return -1;
}

static void loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    if (s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    if (s >= 0)
        close(s);
}

/* isobench.ip=ADDR/PREFIX and isobench.gw=ADDR on the kernel command line configure eth0 through
 * the image's busybox, so the agent carries no netlink code. */
static void network_up(void)
{
    char cmdline[4096] = "";
    FILE *f = fopen("/proc/cmdline", "r");
    if (!f)
        return;
    if (!fgets(cmdline, sizeof cmdline, f))
        cmdline[0] = '\0';
    fclose(f);
    char ip[64] = "", gw[64] = "";
    for (char *tok = strtok(cmdline, " \n"); tok; tok = strtok(NULL, " \n")) {
        if (strncmp(tok, "isobench.ip=", 12) == 0)
            snprintf(ip, sizeof ip, "%s", tok + 12);
        else if (strncmp(tok, "isobench.gw=", 12) == 0)
            snprintf(gw, sizeof gw, "%s", tok + 12);
    }
    if (!ip[0])
        return;
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "/bin/busybox ip link set eth0 up && /bin/busybox ip addr add %s dev eth0", ip);
    if (system(cmd) != 0)
        logmsg("configuring eth0 failed");
    if (gw[0]) {
        snprintf(cmd, sizeof cmd, "/bin/busybox ip route add default via %s", gw);
        if (system(cmd) != 0)
            logmsg("adding default route failed");
    }
}

static void mount_basics(void)
{
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, NULL); /* EBUSY when moved from initramfs */
    mkdir("/dev/pts", 0755);
    mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
    mkdir("/dev/shm", 01777);
    mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mkdir("/var/tmp", 01777);
    mkdir(WORKDIR, 0755);
}

static void send_ready(int64_t agent_start_boot)
{
    struct utsname u;
    uname(&u);
    char msg[1024];
    snprintf(msg, sizeof msg,
             "monotonic_ns=%lld\nboottime_ns=%lld\nrealtime_ns=%lld\nagent_start_boottime_ns=%lld\n"
             "init_uptime=%s\nswitch_uptime=%s\nkernel=%s\nworkdir=%s\n",
             (long long)clock_ns(CLOCK_MONOTONIC), (long long)clock_ns(CLOCK_BOOTTIME),
             (long long)clock_ns(CLOCK_REALTIME), (long long)agent_start_boot, init_uptime,
             switch_uptime, u.release, WORKDIR);
    send_text('R', msg);
}

static void reap_orphans(int sig)
{
    (void)sig;
}

int main(int argc, char **argv)
{
    int64_t agent_start_boot = clock_ns(CLOCK_BOOTTIME);
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "init_uptime=", 12) == 0)
            snprintf(init_uptime, sizeof init_uptime, "%s", argv[i] + 12);
        else if (strncmp(argv[i], "switch_uptime=", 14) == 0)
            snprintf(switch_uptime, sizeof switch_uptime, "%s", argv[i] + 14);
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, reap_orphans);
    if (getpid() == 1) {
        mount_basics();
        sethostname("isobench", 8);
        loopback_up();
        network_up();
    }
    port = open_port();
    if (port < 0) {
        logmsg("no virtio-serial port " PORT_NAME "; powering off");
        sync();
        reboot(RB_POWER_OFF);
        return 1;
    }
    send_ready(agent_start_boot);
    for (;;) {
        unsigned char hdr[7];
        if (read_full(hdr, sizeof hdr) < 0) {
            usleep(100000);
            continue;
        }
        if (hdr[0] != 'I' || hdr[1] != 'B') {
            logmsg("bad frame magic from host; resynchronising");
            continue;
        }
        uint32_t len = be32(hdr + 3);
        if (len > MAX_FRAME) {
            logmsg("oversized frame from host ignored");
            continue;
        }
        unsigned char *payload = malloc(len ? len : 1);
        if (!payload || (len && read_full(payload, len) < 0)) {
            free(payload);
            continue;
        }
        switch (hdr[2]) {
        case 'E':
            run_exec(payload, len);
            break;
        case 'P':
            send_text('p', "");
            sync();
            reboot(RB_POWER_OFF);
            break;
        case 'K':
            break; /* nothing running */
        default:
            logmsg("unknown frame type from host");
        }
        free(payload);
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
    }
}
