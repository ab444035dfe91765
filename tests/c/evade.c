/* Evasion attempts for the capture tests (tests/tests/evasion.rs): file and network actions
 * through io_uring, through the 32-bit `int 0x80` entry, and through syscalls that older
 * agents did not hook. Each prints `name=result` so the test can compare the chain with what
 * the kernel returned.
 *
 * Build: gcc -O1 -static -no-pie -o evade evade.c -luring
 * (static and non-PIE so that its data lives below 4 GiB, where 32-bit pointers reach it).
 *
 * Usage: evade uring|int80|calls|sec DIR TCP_PORT UDP_PORT [AGENT_PID]
 * (`sec` runs as root: credential drop, mount, namespaces, bpf, ptrace, memfd, a signal to the
 * agent and a comm change.)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/bpf.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static void report(const char *name, long result) {
    printf("%s=%ld\n", name, result);
    fflush(stdout);
}

static long neg(long rc) { return rc < 0 ? -errno : rc; }

/* ---- io_uring ---- */

static long uring_one(struct io_uring *ring) {
    struct io_uring_cqe *cqe;
    if (io_uring_submit(ring) != 1 || io_uring_wait_cqe(ring, &cqe) != 0) {
        fprintf(stderr, "io_uring submit/wait failed\n");
        exit(2);
    }
    long res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return res;
}

static int do_uring(const char *dir, int tcp_port, int udp_port) {
    struct io_uring ring;
    if (io_uring_queue_init(8, &ring, 0) != 0) {
        fprintf(stderr, "io_uring_queue_init failed\n");
        return 2;
    }
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/uring_created", dir);
    snprintf(b, sizeof b, "%s/uring_renamed", dir);

    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_openat(sqe, AT_FDCWD, a, O_CREAT | O_WRONLY, 0640);
    sqe->user_data = 1;
    long fd = uring_one(&ring);
    report("uring_openat", fd);
    if (fd >= 0)
        close(fd);

    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_renameat(sqe, AT_FDCWD, a, AT_FDCWD, b, 0);
    sqe->user_data = 2;
    report("uring_renameat", uring_one(&ring));

    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_unlinkat(sqe, AT_FDCWD, b, 0);
    sqe->user_data = 3;
    report("uring_unlinkat", uring_one(&ring));

    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(tcp_port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_connect(sqe, s, (struct sockaddr *)&sin, sizeof sin);
    sqe->user_data = 4;
    long rc = uring_one(&ring);
    /* What the kernel copied at prep is what counts: scribbling on ours now changes nothing. */
    sin.sin_port = htons(1);
    report("uring_connect", rc);
    close(s);

    /* The other file and socket opcodes. */
    char base[512], hard[512], sdir[512], sym[512];
    snprintf(base, sizeof base, "%s/uring_base", dir);
    snprintf(hard, sizeof hard, "%s/uring_hardlink", dir);
    snprintf(sdir, sizeof sdir, "%s/uring_dir", dir);
    snprintf(sym, sizeof sym, "%s/uring_symlink", dir);
    int bfd = open(base, O_CREAT | O_RDWR, 0600);
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_mkdirat(sqe, AT_FDCWD, sdir, 0710);
    report("uring_mkdirat", uring_one(&ring));
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_symlinkat(sqe, base, AT_FDCWD, sym);
    report("uring_symlinkat", uring_one(&ring));
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_linkat(sqe, AT_FDCWD, base, AT_FDCWD, hard, 0);
    report("uring_linkat", uring_one(&ring));
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_setxattr(sqe, "user.uring", "v", base, 0, 1);
    report("uring_setxattr", uring_one(&ring));
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_unlinkat(sqe, AT_FDCWD, sdir, AT_REMOVEDIR);
    report("uring_rmdir", uring_one(&ring));
    sqe = io_uring_get_sqe(&ring); /* IORING_OP_FTRUNCATE: fd, length in off */
    io_uring_prep_rw(55, sqe, bfd, NULL, 0, 77);
    report("uring_ftruncate", uring_one(&ring));
    close(bfd);

    int t = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = 0};
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sqe = io_uring_get_sqe(&ring); /* IORING_OP_BIND: addr, addrlen in addr2 */
    io_uring_prep_rw(56, sqe, t, &any, 0, sizeof any);
    report("uring_bind", uring_one(&ring));
    sqe = io_uring_get_sqe(&ring); /* IORING_OP_LISTEN: backlog in len */
    io_uring_prep_rw(57, sqe, t, NULL, 9, 0);
    report("uring_listen", uring_one(&ring));
    close(t);

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(udp_port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 3; i++) {
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_send(sqe, u, "ping", 4, 0);
        io_uring_prep_send_set_addr(sqe, (struct sockaddr *)&to, sizeof to);
        report("uring_sendto", uring_one(&ring));
    }
    close(u);
    io_uring_queue_exit(&ring);
    return 0;
}

/* ---- 32-bit syscalls through int 0x80 (arguments in ebx, ecx, edx; 32-bit pointers) ---- */

static long sys32(long nr, long a, long b, long c) {
    long ret;
    __asm__ volatile("int $0x80"
                     : "=a"(ret)
                     : "a"(nr), "b"(a), "c"(b), "d"(c)
                     : "memory", "r8", "r9", "r10", "r11");
    return ret;
}

#define LOW(p) ((long)(uintptr_t)(p))
enum { NR32_OPEN = 5, NR32_UNLINK = 10, NR32_EXECVE = 11, NR32_CHMOD = 15, NR32_RENAME = 38,
       NR32_SOCKETCALL = 102, NR32_SOCKET = 359, NR32_CONNECT = 362 };

/* Static storage: below 4 GiB in a non-PIE binary. */
static char p1[512], p2[512], exe[64] = "/bin/true";
static char arg1[64] = "int80-execve-marker";
static uint32_t argv32[3];
static struct sockaddr_in sin32;
static uint32_t callargs[3];

static int do_int80(const char *dir, int tcp_port) {
    snprintf(p1, sizeof p1, "%s/int80_created", dir);
    snprintf(p2, sizeof p2, "%s/int80_renamed", dir);
    long fd = sys32(NR32_OPEN, LOW(p1), O_CREAT | O_WRONLY, 0644);
    report("int80_open", fd);
    if (fd >= 0)
        close(fd);
    report("int80_chmod", sys32(NR32_CHMOD, LOW(p1), 0600, 0));
    report("int80_rename", sys32(NR32_RENAME, LOW(p1), LOW(p2), 0));
    report("int80_unlink", sys32(NR32_UNLINK, LOW(p2), 0, 0));

    sin32.sin_family = AF_INET;
    sin32.sin_port = htons(tcp_port);
    sin32.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long s = sys32(NR32_SOCKET, AF_INET, SOCK_STREAM, 0);
    report("int80_connect", sys32(NR32_CONNECT, s, LOW(&sin32), sizeof sin32));
    close(s);
    /* The same through the socketcall(2) multiplexer: SYS_CONNECT = 3. */
    s = socket(AF_INET, SOCK_STREAM, 0);
    callargs[0] = (uint32_t)s;
    callargs[1] = (uint32_t)LOW(&sin32);
    callargs[2] = sizeof sin32;
    report("int80_socketcall_connect", sys32(NR32_SOCKETCALL, 3, LOW(callargs), 0));
    close(s);

    argv32[0] = (uint32_t)LOW(exe);
    argv32[1] = (uint32_t)LOW(arg1);
    argv32[2] = 0;
    pid_t child = fork();
    if (child == 0) {
        sys32(NR32_EXECVE, LOW(exe), LOW(argv32), 0);
        _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    report("int80_execve_pid", child);
    report("int80_execve_status", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    /* More file calls through the 32-bit table: mkdir 39, rmdir 40, link 9, symlink 83,
     * truncate 92, fchmod 94. */
    snprintf(p1, sizeof p1, "%s/int80_dir", dir);
    report("int80_mkdir", sys32(39, LOW(p1), 0700, 0));
    report("int80_rmdir", sys32(40, LOW(p1), 0, 0));
    snprintf(p1, sizeof p1, "%s/int80_base", dir);
    snprintf(p2, sizeof p2, "%s/int80_link", dir);
    long bfd = sys32(NR32_OPEN, LOW(p1), O_CREAT | O_WRONLY, 0600);
    report("int80_link", sys32(9, LOW(p1), LOW(p2), 0));
    snprintf(p2, sizeof p2, "%s/int80_symlink", dir);
    report("int80_symlink", sys32(83, LOW(p1), LOW(p2), 0));
    report("int80_truncate", sys32(92, LOW(p1), 99, 0));
    report("int80_fchmod", sys32(94, bfd, 02755, 0));
    close(bfd);
    /* Not decoded: recorded raw with its number and arguments. chroot(2) = 61. */
    report("int80_chroot", sys32(61, LOW(p1), 0, 0));
    /* A credential call through the 32-bit table: setuid32(2) = 213, to ourselves. */
    report("int80_setuid32", sys32(213, getuid(), 0, 0));
    return 0;
}

/* ---- security-relevant calls outside files and sockets (as root) ---- */

static int do_sec(const char *dir, pid_t agent) {
    char mnt[512];
    snprintf(mnt, sizeof mnt, "%s/mnt", dir);
    mkdir(mnt, 0700);
    report("mount", neg(mount("lineage-tmpfs", mnt, "tmpfs", 0, "size=1m")));
    report("umount", neg(umount2(mnt, 0)));
    report("memfd", neg(memfd_create("lineage-memfd", MFD_CLOEXEC)));
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.map_type = BPF_MAP_TYPE_ARRAY;
    attr.key_size = 4;
    attr.value_size = 8;
    attr.max_entries = 1;
    strcpy(attr.map_name, "lineage_evade");
    long mfd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
    report("bpf_map_create", mfd < 0 ? -errno : mfd);
    report("prctl_rename", neg(prctl(PR_SET_NAME, "renamed-evade")));
    int ns = open("/proc/self/ns/uts", O_RDONLY);
    report("setns", neg(setns(ns, CLONE_NEWUTS)));
    close(ns);
    report("kill_agent", neg(kill(agent, SIGWINCH)));
    pid_t child = fork();
    if (child == 0) {
        long rc = ptrace(PTRACE_TRACEME, 0, 0, 0);
        report("ptrace_traceme", rc < 0 ? -errno : rc);
        report("unshare", neg(unshare(CLONE_NEWNS | CLONE_NEWUTS)));
        /* Privilege drop: old and new credentials on the chain. */
        report("setresuid", neg(setresuid(65534, 65534, 65534)));
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    report("child", child);
    return 0;
}

/* ---- syscalls that were not hooked ---- */

static int do_calls(const char *dir, int udp_port) {
    char f[512], l[512], s[512], d[512], n[512];
    snprintf(f, sizeof f, "%s/calls_file", dir);
    snprintf(l, sizeof l, "%s/calls_hardlink", dir);
    snprintf(s, sizeof s, "%s/calls_symlink", dir);
    snprintf(d, sizeof d, "%s/calls_dir", dir);
    snprintf(n, sizeof n, "%s/calls_fifo", dir);
    int fd = open(f, O_CREAT | O_RDWR, 0600);
    report("link", neg(link(f, l)));
    report("symlink", neg(symlink(f, s)));
    report("mkdir", neg(mkdir(d, 0750)));
    report("mknod", neg(mknod(n, S_IFIFO | 0600, 0)));
    report("truncate", neg(truncate(f, 4096)));
    report("ftruncate", neg(ftruncate(fd, 123)));
    report("fchmod", neg(fchmod(fd, 04777)));
    report("fchown", neg(fchown(fd, getuid(), getgid())));
    report("setxattr", neg(setxattr(f, "user.lineage", "x", 1, 0)));
    report("removexattr", neg(removexattr(f, "user.lineage")));
    report("utimensat", neg(utimensat(AT_FDCWD, f, NULL, 0)));
    report("chown", neg(chown(f, getuid(), getgid())));
    report("rmdir", neg(rmdir(d)));
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct caps[2];
    syscall(SYS_capget, &hdr, caps);
    report("capset", neg(syscall(SYS_capset, &hdr, caps)));

    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(udp_port)};
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < 5; i++) /* one record per (socket, peer), not per datagram */
        report("sendto", neg(sendto(u, "ping", 4, 0, (struct sockaddr *)&to, sizeof to)));
    close(u);

    int t = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in any = {.sin_family = AF_INET, .sin_port = 0};
    any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    report("bind", neg(bind(t, (struct sockaddr *)&any, sizeof any)));
    report("listen", neg(listen(t, 7)));
    socklen_t len = sizeof any;
    getsockname(t, (struct sockaddr *)&any, &len);
    report("listen_port", ntohs(any.sin_port));
    close(t);
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s uring|int80|calls|sec DIR TCP_PORT UDP_PORT [AGENT_PID]\n",
                argv[0]);
        return 2;
    }
    const char *dir = argv[2];
    int tcp = atoi(argv[3]), udp = atoi(argv[4]);
    if (!strcmp(argv[1], "uring"))
        return do_uring(dir, tcp, udp);
    if (!strcmp(argv[1], "int80"))
        return do_int80(dir, tcp);
    if (!strcmp(argv[1], "calls"))
        return do_calls(dir, udp);
    if (!strcmp(argv[1], "sec") && argc == 6)
        return do_sec(dir, atoi(argv[5]));
    return 2;
}
