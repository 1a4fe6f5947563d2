/* isobench micro guest /init: what agent/init.sh does for the stock kernel, without a shell.
 *
 * The micro kernel has every driver built in, so there are no modules to load, and under TCG each
 * busybox process /init.sh starts (the shell, then one per mount) costs tens of milliseconds of
 * guest time. This is the whole job in one process: mount the root disk (and the volume's disk
 * when the command line has isobench.data=vdb), move /dev, switch root and exec the agent with the
 * guest uptime at /init and at the switch (the boot phases; see drivers/guest/phases.py).
 * Built static by vm-images/kernel.py (micro_initrd); any failure is one console line and a
 * poweroff, as in init.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AGENT "/usr/local/sbin/isobench-agent"

static void fail(const char *what, const char *arg)
{
    int fd = open("/dev/console", O_WRONLY | O_NOCTTY);
    if (fd >= 0) {
        dprintf(fd, "isobench-init: %s %s: %s\n", what, arg, strerror(errno));
        close(fd);
    }
    sync();
    reboot(RB_POWER_OFF);
    _exit(1);
}

/* Seconds since boot as /proc/uptime counts them (CLOCK_BOOTTIME), with milliseconds. */
static void uptime(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    snprintf(out, n, "%lld.%03ld", (long long)ts.tv_sec, ts.tv_nsec / 1000000);
}

/* The virtio disk DEV must appear within 10 s (it is probed before /init runs; this is a guard). */
static void wait_disk(const char *dev)
{
    struct stat st;
    for (int i = 0; stat(dev, &st) != 0 || !S_ISBLK(st.st_mode); i++) {
        if (i > 10000)
            fail("disk did not appear:", dev);
        usleep(1000);
    }
}

static void mount_ext4(const char *dev, const char *dir)
{
    wait_disk(dev);
    if (mount(dev, dir, "ext4", MS_NOATIME, NULL) != 0)
        fail("cannot mount", dev);
}

static int wants_data_disk(void)
{
    char cmdline[4096];
    int fd = open("/proc/cmdline", O_RDONLY);
    ssize_t n = fd < 0 ? -1 : read(fd, cmdline + 1, sizeof cmdline - 3);
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    cmdline[0] = ' ';
    cmdline[n + 1] = '\0';
    char *nl = strchr(cmdline, '\n');
    if (nl)
        *nl = '\0';
    strcat(cmdline, " ");
    return strstr(cmdline, " isobench.data=vdb ") != NULL;
}

int main(void)
{
    char up0[32], up1[32];
    uptime(up0, sizeof up0);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0)
        fail("cannot mount", "/proc");
    if (mount("devtmpfs", "/dev", "devtmpfs", 0, NULL) != 0)
        fail("cannot mount", "/dev");
    mount_ext4("/dev/vda", "/newroot");
    if (wants_data_disk()) {
        mkdir("/newroot/data", 0755);
        mount_ext4("/dev/vdb", "/newroot/data");
    }
    uptime(up1, sizeof up1);
    umount("/proc");
    if (mount("/dev", "/newroot/dev", NULL, MS_MOVE, NULL) != 0)
        fail("cannot move /dev to", "/newroot/dev");
    /* switch_root: the initramfs holds only this binary; unlink it so its memory is freed. */
    unlink("/init");
    if (chdir("/newroot") != 0 || mount(".", "/", NULL, MS_MOVE, NULL) != 0 || chroot(".") != 0 ||
        chdir("/") != 0)
        fail("cannot switch root to", "/newroot");
    char a0[48], a1[48];
    snprintf(a0, sizeof a0, "init_uptime=%s", up0);
    snprintf(a1, sizeof a1, "switch_uptime=%s", up1);
    char *argv[] = {AGENT, a0, a1, NULL};
    /* What the agent had from init.sh's shell, so commands see the same environment. */
    char *envp[] = {"HOME=/", "TERM=linux", "PATH=/sbin:/usr/sbin:/bin:/usr/bin", "PWD=/", "SHLVL=1", NULL};
    execve(AGENT, argv, envp);
    fail("cannot exec", AGENT);
    return 1;
}
