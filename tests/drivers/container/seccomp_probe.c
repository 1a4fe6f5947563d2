/* Calls what a hardened container must not do (and a few things it must), one per argument, and
 * prints "<name> <errno>" per call: 0 for success, "sig<N>" when the call killed its (forked) child.
 * Built static by the tests and run inside containers from a volume. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static long result(long ret) { return ret < 0 ? errno : 0; }

/* Run fn in a child: a seccomp kill must not take the probe with it. */
static void in_child(const char *name, long (*fn)(void)) {
    pid_t pid = fork();
    if (pid == 0) _exit((int)fn());
    int st;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st)) printf("%s sig%d\n", name, WTERMSIG(st));
    else printf("%s %d\n", name, WEXITSTATUS(st));
}

static long int80_getpid(void) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory"); /* i386 getpid */
    return ret < 0 ? -ret : 0;
}

static long x32_getpid(void) { return result(syscall(39 | 0x40000000L)); }

static long clone_newns(void) {
    long r = syscall(SYS_clone, (long)(CLONE_NEWNS | SIGCHLD), 0L, 0L, 0L, 0L);
    if (r == 0) _exit(0);
    if (r > 0) waitpid((pid_t)r, NULL, 0);
    return result(r);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        long r = -1;
        errno = 0;
        if (!strcmp(a, "unshare")) r = result(unshare(CLONE_NEWUTS));
        else if (!strcmp(a, "mount")) r = result(mount("none", "/tmp", "tmpfs", 0, NULL));
        else if (!strcmp(a, "keyctl")) r = result(syscall(SYS_keyctl, 0L, -3L, 0L)); /* GET_KEYRING_ID session */
        else if (!strcmp(a, "add_key")) r = result(syscall(SYS_add_key, "user", "isobench", "x", 1L, -2L));
        else if (!strcmp(a, "kexec_load")) r = result(syscall(SYS_kexec_load, 0L, 0L, NULL, 0L));
        else if (!strcmp(a, "bpf")) r = result(syscall(SYS_bpf, 0L, NULL, 0L));
        else if (!strcmp(a, "io_uring_setup")) r = result(syscall(SYS_io_uring_setup, 0L, NULL));
        else if (!strcmp(a, "personality_query")) r = result(personality(0xffffffff));
        else if (!strcmp(a, "personality_rie")) r = result(personality(READ_IMPLIES_EXEC));
        else if (!strcmp(a, "vsock")) r = result(socket(40, SOCK_STREAM, 0));
        else if (!strcmp(a, "vsock_high_bits")) r = result(syscall(SYS_socket, 0x100000028L, (long)SOCK_STREAM, 0L));
        else if (!strcmp(a, "inet")) r = result(socket(AF_INET, SOCK_STREAM, 0));
        else if (!strcmp(a, "clone_newns")) r = clone_newns();
        else if (!strcmp(a, "clone3")) r = result(syscall(SYS_clone3, NULL, 0L));
        else if (!strcmp(a, "syslog")) r = result(syscall(SYS_syslog, 10L, NULL, 0L)); /* SIZE_BUFFER */
        else if (!strcmp(a, "kcmp")) r = result(syscall(SYS_kcmp, (long)getpid(), (long)getpid(), 0L, 0L, 0L));
        else if (!strcmp(a, "future")) r = result(syscall(1000L));
        else if (!strcmp(a, "mknod_block")) r = result(mknod("/tmp/isobench-sda", S_IFBLK | 0600, makedev(8, 0)));
        else if (!strcmp(a, "int80")) { in_child(a, int80_getpid); continue; }
        else if (!strcmp(a, "x32")) { in_child(a, x32_getpid); continue; }
        else if (!strncmp(a, "open=", 5)) {
            int fd = open(a + 5, O_WRONLY | O_CLOEXEC);
            r = result(fd);
            if (fd >= 0) close(fd);
        } else {
            fprintf(stderr, "unknown probe %s\n", a);
            return 2;
        }
        printf("%s %ld\n", a, r);
    }
    return 0;
}
