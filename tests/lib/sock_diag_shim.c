/* An LD_PRELOAD library for the tests (tests/e2e/test_backends.py, tests/agent2/test_plugin_probe.py):
 * it makes the kernel's sock_diag netlink interface misbehave, so the module's fallback to
 * /proc is tested against real agents. Built by the `shim` fixture of tests/lib/fixtures.py. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>
#include <linux/netlink.h>

/* LS_SHIM selects how sock_diag misbehaves; every other socket is untouched.
 *   refuse       socket() fails with EACCES, as SELinux does without netlink_tcpdiag_socket;
 *   done-enoent  every dump ends with NLMSG_DONE carrying -ENOENT (tcp_diag not loadable);
 *   done-enobufs every dump ends with NLMSG_DONE carrying -ENOBUFS (a transient failure);
 *   done-enobufs-first  only the first dump of each process ends with -ENOBUFS;
 *   dump-intr    every datagram carries NLM_F_DUMP_INTR (the table changed mid-dump). */
static int diag_fds[64];
static pid_t failed_in;

static const char *mode(void)
{
	const char *m = getenv("LS_SHIM");
	return m ? m : "";
}

int socket(int domain, int type, int protocol)
{
	static int (*real_socket)(int, int, int);
	if (real_socket == NULL)
		real_socket = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
	if (domain == AF_NETLINK && protocol == NETLINK_SOCK_DIAG) {
		if (strcmp(mode(), "refuse") == 0) {
			errno = EACCES;
			return -1;
		}
		int fd = real_socket(domain, type, protocol);
		if (fd >= 0 && fd < 64)
			diag_fds[fd] = 1;
		return fd;
	}
	int fd = real_socket(domain, type, protocol);
	if (fd >= 0 && fd < 64)
		diag_fds[fd] = 0;
	return fd;
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	static ssize_t (*real_recv)(int, void *, size_t, int);
	if (real_recv == NULL)
		real_recv = (ssize_t (*)(int, void *, size_t, int))dlsym(RTLD_NEXT, "recv");
	ssize_t n = real_recv(fd, buf, len, flags);
	if (n <= 0 || fd < 0 || fd >= 64 || !diag_fds[fd] || (size_t)n > len)
		return n;
	int error = 0;
	if (strcmp(mode(), "done-enoent") == 0)
		error = ENOENT;
	else if (strcmp(mode(), "done-enobufs") == 0)
		error = ENOBUFS;
	else if (strcmp(mode(), "done-enobufs-first") == 0 && failed_in != getpid())
		error = ENOBUFS;
	int intr = strcmp(mode(), "dump-intr") == 0;
	size_t left = (size_t)n;
	for (struct nlmsghdr *h = buf; NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
		if (intr)
			h->nlmsg_flags |= NLM_F_DUMP_INTR;
		if (error && h->nlmsg_type == NLMSG_DONE && h->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
			*(int *)NLMSG_DATA(h) = -error;
			failed_in = getpid();
		}
	}
	return n;
}
