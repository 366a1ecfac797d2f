/*
 * sockgen: builds a realistic TCP socket table in the current (private) network namespace
 * and holds it until stdin closes. Part of bench/run; not installed anywhere.
 *
 *   sockgen LISTEN ESTAB_PAIRS WAIT_PAIRS TIME_WAIT
 *
 * Opens, in lockstep (connect, then accept, on loopback), every tenth item of each kind
 * over IPv6:
 *   LISTEN       listeners on 127.0.0.1 / [::1] ports 2000..2000+LISTEN-1 (IPv6-only)
 *   ESTAB_PAIRS  connected pairs kept open: 2 ESTABLISHED sockets each
 *   WAIT_PAIRS   pairs whose client did shutdown(SHUT_WR) and whose server never reads nor
 *                closes: 1 FIN_WAIT2 + 1 CLOSE_WAIT each, held for as long as we run
 *   TIME_WAIT    connections closed client first: 1 TIME_WAIT socket each (for 60 s)
 * Prints "ready <seconds> <seconds of that spent on TIME_WAIT>" on stdout, then serves
 * commands read from stdin:
 *   "tw"   opens a new generation of TIME_WAIT connections (fresh source addresses, so no
 *          4-tuple of the previous generation is reused); prints "ok <seconds>"
 *   EOF    exits (the kernel closes everything; TIME_WAIT sockets die with the namespace).
 *
 * Client sockets bind an explicit source address and port, never an ephemeral one, so
 * building a million sockets does no port search: IPv4 clients use 127.<10+gen>.x.y (all of
 * 127/8 is local), IPv6 clients fd00::<gen>:x (the caller routes fd00::/16 as local on lo;
 * IPV6_FREEBIND lets us bind those addresses), ports 10000..39999.
 * Connected pairs need two descriptors each; when RLIMIT_NOFILE's hard limit is low (raising
 * it needs CAP_SYS_RESOURCE, which containers often lack) they are spread over child
 * processes, each building its chunk in turn and then sleeping on it.
 * Every process dies with its parent (PR_SET_PDEATHSIG), so no table outlives a killed bench.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif

#define LISTEN_PORT0 2000
#define CLIENT_PORT0 10000
#define PORTS_PER_ADDR 30000

static int *listeners;
static int nlisten;
static int v4_listeners, v6_listeners;

static void die(const char *what)
{
	fprintf(stderr, "sockgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int is_v6_listener(int k) { return k % 10 == 9; }

/* The k-th listener of a family, round robin. */
static int pick_listener(int v6, long i, int *port)
{
	int want = (int)(i % (v6 ? v6_listeners : v4_listeners));
	for (int k = 0; k < nlisten; k++) {
		if (is_v6_listener(k) != v6)
			continue;
		if (want-- == 0) {
			*port = LISTEN_PORT0 + k;
			return listeners[k];
		}
	}
	fprintf(stderr, "sockgen: no listener\n");
	exit(1);
}

/* Per (generation, family): how many client addresses+ports were handed out. */
static long next_client[256][2];

/* Connects one client (fresh source address:port of generation gen) to a listener and
 * accepts it. */
static void connect_pair(int v6, int gen, int *client, int *server)
{
	long idx = next_client[gen][v6]++;
	long addr = 1 + idx / PORTS_PER_ADDR;
	int sport = CLIENT_PORT0 + (int)(idx % PORTS_PER_ADDR);
	int lport;
	int lfd = pick_listener(v6, idx, &lport);
	int c = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
	if (c < 0)
		die("socket");
	if (v6) {
		int one = 1;
		if (setsockopt(c, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one) < 0)
			die("IPV6_FREEBIND");
		struct sockaddr_in6 src = {.sin6_family = AF_INET6, .sin6_port = htons(sport)};
		char text[64];
		snprintf(text, sizeof text, "fd00::%x:%lx", gen, addr);
		inet_pton(AF_INET6, text, &src.sin6_addr);
		if (bind(c, (struct sockaddr *)&src, sizeof src) < 0)
			die("bind v6 client");
		struct sockaddr_in6 dst = {.sin6_family = AF_INET6, .sin6_port = htons(lport)};
		inet_pton(AF_INET6, "::1", &dst.sin6_addr);
		if (connect(c, (struct sockaddr *)&dst, sizeof dst) < 0)
			die("connect v6");
	} else {
		struct sockaddr_in src = {.sin_family = AF_INET, .sin_port = htons(sport)};
		src.sin_addr.s_addr = htonl((127u << 24) | ((10u + gen) << 16) | (uint32_t)addr);
		if (bind(c, (struct sockaddr *)&src, sizeof src) < 0)
			die("bind v4 client");
		struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(lport)};
		dst.sin_addr.s_addr = htonl(0x7f000001);
		if (connect(c, (struct sockaddr *)&dst, sizeof dst) < 0)
			die("connect v4");
	}
	int s = accept(lfd, NULL, NULL);
	if (s < 0)
		die("accept");
	*client = c;
	*server = s;
}

static int gen;
static pid_t children[4096];
static int nchildren;

static void kill_children(void)
{
	for (int k = 0; k < nchildren; k++)
		kill(children[k], SIGKILL);
	for (int k = 0; k < nchildren; k++)
		waitpid(children[k], NULL, 0);
}

static void make_time_wait(long count)
{
	for (long i = 0; i < count; i++) {
		int c, s;
		connect_pair(i % 10 == 9, gen, &c, &s);
		/* Client closes first: the server sees the FIN (CLOSE_WAIT), closes too (LAST_ACK,
		 * then gone), the client ends in TIME_WAIT. */
		close(c);
		close(s);
	}
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: sockgen LISTEN ESTAB_PAIRS WAIT_PAIRS TIME_WAIT\n");
		return 2;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	nlisten = atoi(argv[1]);
	long estab = atol(argv[2]), waits = atol(argv[3]), tw = atol(argv[4]);
	if (nlisten < 10) {
		fprintf(stderr, "sockgen: need at least 10 listeners (one IPv6)\n");
		return 2;
	}

	/* Raise the soft descriptor limit to the hard one (raising the hard limit needs
	 * CAP_SYS_RESOURCE, which containers often lack). Pairs are spread over as many child
	 * processes as that limit requires. */
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	if (rl.rlim_cur > (1u << 20))
		rl.rlim_cur = 1u << 20;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	long pairs_per_child = ((long)rl.rlim_cur - nlisten - 64) / 2;
	if (pairs_per_child < 100) {
		fprintf(stderr, "sockgen: RLIMIT_NOFILE %ld too small\n", (long)rl.rlim_cur);
		return 1;
	}

	double t0 = now();
	listeners = calloc(nlisten, sizeof *listeners);
	for (int k = 0; k < nlisten; k++) {
		int v6 = is_v6_listener(k);
		int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0), one = 1;
		if (fd < 0)
			die("socket");
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (v6) {
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
			struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(LISTEN_PORT0 + k)};
			inet_pton(AF_INET6, "::1", &a.sin6_addr);
			if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
				die("bind v6 listener");
			v6_listeners++;
		} else {
			struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(LISTEN_PORT0 + k)};
			a.sin_addr.s_addr = htonl(0x7f000001);
			if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0)
				die("bind v4 listener");
			v4_listeners++;
		}
		if (listen(fd, 4096) < 0)
			die("listen");
		listeners[k] = fd;
	}
	/* Pairs 0..estab-1 stay ESTABLISHED, the next `waits` become FIN_WAIT2/CLOSE_WAIT.
	 * Children build their chunks one after the other (lockstep accept() on shared
	 * listeners), then sleep holding the descriptors. */
	long total_pairs = estab + waits;
	for (long first = 0; first < total_pairs; first += pairs_per_child) {
		long last = first + pairs_per_child < total_pairs ? first + pairs_per_child : total_pairs;
		int ready[2];
		if (pipe(ready) < 0)
			die("pipe");
		pid_t pid = fork();
		if (pid < 0)
			die("fork");
		if (pid == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			close(ready[0]);
			for (long i = first; i < last; i++) {
				int c, s;
				connect_pair(i % 10 == 9, 0, &c, &s);
				if (i >= estab && shutdown(c, SHUT_WR) < 0)
					die("shutdown");
			}
			if (write(ready[1], "k", 1) != 1)
				die("write");
			close(ready[1]);
			close(0);
			close(1);
			for (;;)
				pause();
		}
		close(ready[1]);
		char byte;
		if (read(ready[0], &byte, 1) != 1) {
			fprintf(stderr, "sockgen: child building pairs %ld..%ld failed\n", first, last);
			kill_children();
			return 1;
		}
		close(ready[0]);
		children[nchildren++] = pid;
		for (long i = first; i < last; i++)
			next_client[0][i % 10 == 9]++;
	}
	gen = 1;
	double t_tw = now();
	make_time_wait(tw);
	printf("ready %.3f %.3f\n", now() - t0, now() - t_tw);
	fflush(stdout);

	char line[64];
	while (fgets(line, sizeof line, stdin)) {
		if (strncmp(line, "tw", 2) == 0) {
			if (++gen > 240) {
				fprintf(stderr, "sockgen: out of TIME_WAIT generations\n");
				kill_children();
				return 1;
			}
			double t = now();
			make_time_wait(tw);
			printf("ok %.3f\n", now() - t);
			fflush(stdout);
		}
	}
	kill_children();
	return 0;
}
