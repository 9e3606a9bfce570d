/*
 * test_single_mlet: the reference's singleton-mode example in plain C: run under
 * `pktlab xpmgr -s`, it receives each endpoint's connection from the manager and starts
 * a sub-mlet for it, as the manager itself does in default mode.
 *
 *   pktlab xpmgr -s examples/mlets/test_single_mlet MLET [MLET_ARGS ...]
 *
 * In -s mode fd 0 is a Unix stream socket to the manager; each endpoint arrives as one
 * message whose payload is the endpoint's address, NUL-terminated, with the connection's
 * fd attached (SCM_RIGHTS; PROTOCOL.md section 7.3 step 4). For each, fork, put the fd on
 * fd 0, set EPADDR to the address (the only variable, as the manager's environment for
 * an mlet) and execv MLET with MLET_ARGS. Ends when the manager closes fd 0, after its
 * sub-mlets; exit 0 when each of them exited 0.
 *
 * On Linux each sub-mlet gets SIGTERM when this process dies (PR_SET_PDEATHSIG), as this
 * process gets it from `pktlab xpmgr` when the manager dies: a killed manager leaves no
 * sub-mlet running (docs/xpmgr.md, "When the manager dies").
 *
 * Build: make (in this directory), or cc -O2 -Wall -o test_single_mlet test_single_mlet.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

static int failed, running;

static void reap(int options) {
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, options)) > 0) {
        running--;
        if (!WIFEXITED(status) || WEXITSTATUS(status)) failed++;
    }
}

/* One endpoint from the manager: its address into addr, its fd returned; -1 at EOF. */
static int receive_endpoint(char *addr, size_t cap) {
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    for (;;) {
        struct iovec iov = {addr, cap - 1};
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.buf;
        msg.msg_controllen = sizeof ctl.buf;
        ssize_t n = recvmsg(0, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        addr[n] = 0; /* the payload is NUL-terminated already; this bounds it */
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int))) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
            return fd;
        }
        fprintf(stderr, "test_single_mlet: a message from the manager without an fd\n");
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_single_mlet MLET [MLET_ARGS ...]\n");
        return 2;
    }
    char addr[256];
    int fd;
    while ((fd = receive_endpoint(addr, sizeof addr)) >= 0) {
        fflush(stdout);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid == 0) {
#ifdef __linux__
            /* ends with us; gone already if we died before the prctl */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent) _exit(143);
#endif
            char epaddr[sizeof addr + 8];
            snprintf(epaddr, sizeof epaddr, "EPADDR=%s", addr);
            char *env[] = {epaddr, NULL};
            if (dup2(fd, 0) < 0) _exit(127);
            execve(argv[1], argv + 1, env);
            fprintf(stderr, "test_single_mlet: cannot run %s: %s\n", argv[1], strerror(errno));
            _exit(127);
        }
        close(fd);
        if (pid < 0) {
            fprintf(stderr, "test_single_mlet: fork: %s\n", strerror(errno));
            failed++;
        } else {
            running++;
        }
        reap(WNOHANG);
    }
    while (running > 0) {
        int before = running;
        reap(0);
        if (running == before) break; /* no child left to wait for */
    }
    return failed ? 1 : 0;
}
