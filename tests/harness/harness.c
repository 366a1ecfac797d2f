/*
 * Host harness for liblinux_status.so: loads the module the way zabbix_agentd does and calls
 * its item function with agent-shaped requests and results, under valgrind in the tests.
 *
 *   harness <path/to/liblinux_status.so> <fixture dir>
 *
 * The fixture dir holds `tcp`, `tcp6` (optional) and `expected` (see tests/fixtures/README.md).
 * LINUX_STATUS_PROC_NET_DIR is set to it before dlopen + zbx_module_init, so the module reads
 * the fixture instead of /proc/net. For a good fixture every state, under several spellings,
 * must give the count in `expected`; for a bad one every state must fail with a message naming
 * the file and the line. The parameter error cases from docs/CONTRACT.md run for both.
 *
 * Each call is made with every agent layout: the request on the heap at exactly 40 (3.4-4.2),
 * 48 (4.4-6.4) and 56 (7.x) bytes, the result at exactly 64 (up to 6.x) and 72 (7.x) bytes,
 * zero-filled, with every parameter string strdup()ed on its own, so valgrind sees any read or
 * write outside what the agent allocates. Prints one line per check, then
 * `harness: N passed, M failed`; exits 0 only if nothing failed.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../include/zbx_module_abi.h"

#define NSTATES 11
#define MAXSPELL 12
#define MAXPARAMS 8
#define MAX_MSG 4096

static int n_pass, n_fail;

static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void check(int ok, const char *fmt, ...)
{
	va_list ap;
	printf("%s: ", ok ? "ok" : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
	if (ok)
		n_pass++;
	else
		n_fail++;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\nharness: %d passed, %d failed (aborted)\n", n_pass, n_fail + 1);
	exit(1);
}

/*
 * The states in kernel order (st 01..0B) and the spellings docs/CONTRACT.md accepts for
 * each: the table's spellings, Zabbix's lowercase forms, and mixed case / '-' vs '_' /
 * surrounding spaces variants the contract's normalisation rules make equivalent.
 */
static const struct {
	const char *kernel;
	const char *spellings[MAXSPELL];
} STATES[NSTATES] = {
	{"ESTABLISHED", {"ESTABLISHED", "ESTAB", "established", "estab", "Established",
			 " ESTAB ", "ESTABLISHED "}},
	{"SYN_SENT", {"SYN_SENT", "SYN-SENT", "syn_sent", "syn-sent", "Syn_Sent", " SYN-SENT "}},
	{"SYN_RECV", {"SYN_RECV", "SYN-RECV", "SYN_RCVD", "syn_recv", "syn-rcvd", "SYN-RCVD",
		      "Syn_Recv "}},
	{"FIN_WAIT1", {"FIN_WAIT1", "FIN-WAIT-1", "FIN_WAIT_1", "fin_wait1", "fin-wait-1",
		       "FIN-WAIT1", "Fin_Wait_1 "}},
	{"FIN_WAIT2", {"FIN_WAIT2", "FIN-WAIT-2", "FIN_WAIT_2", "fin_wait2", "fin-wait-2",
		       "FIN-WAIT2", " Fin_Wait_2"}},
	{"TIME_WAIT", {"TIME_WAIT", "TIME-WAIT", "time_wait", "time-wait", "Time_Wait",
		       "TIME-WAIT "}},
	{"CLOSE", {"CLOSE", "UNCONN", "CLOSED", "close", "unconn", "closed", " Close "}},
	{"CLOSE_WAIT", {"CLOSE_WAIT", "CLOSE-WAIT", "close_wait", "close-wait", "Close_Wait",
			"CLOSE-WAIT "}},
	{"LAST_ACK", {"LAST_ACK", "LAST-ACK", "last_ack", "last-ack", "Last_Ack", " LAST-ACK "}},
	{"LISTEN", {"LISTEN", "listen", "Listen", "LiStEn", " LISTEN", "LISTEN ", "  listen  "}},
	{"CLOSING", {"CLOSING", "closing", "Closing", " CLOSING "}},
};

/* Agent layouts: request sizes (3.4-4.2, 4.4-6.4, 7.x) and result sizes (<= 6.x, 7.x). */
static const size_t REQ_SIZES[] = {40, 48, 56};
static const size_t RES_SIZES[] = {64, 72};
#define NREQ (sizeof(REQ_SIZES) / sizeof(REQ_SIZES[0]))
#define NRES (sizeof(RES_SIZES) / sizeof(RES_SIZES[0]))

static zbx_item_function item_fn;
static const char *fixture_dir;
static char tcp_path[PATH_MAX + 8];

struct outcome {
	int rc;
	int type;
	uint64_t ui64;
	char msg[MAX_MSG + 1]; /* copy of result->msg (up to MAX_MSG bytes), for the checks */
	size_t msg_len;
};

static const char *hexdump_param(const char *p, char *buf, size_t len)
{
	size_t o = 0, n = strlen(p);
	for (size_t i = 0; i < n && o + 24 < len; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, len - o, "\\x%02x", c);
	}
	if (o + 24 >= len && n > 0)
		o += (size_t)snprintf(buf + o, len - o, "...(%zu bytes)", n);
	buf[o] = '\0';
	return buf;
}

static void describe(char *buf, size_t len, int nparam, const char *const *params,
		     size_t req_size, size_t res_size)
{
	size_t o = (size_t)snprintf(buf, len, "req %zu/res %zu linux_status", req_size, res_size);
	if (nparam > 0) {
		char tmp[96];
		o += (size_t)snprintf(buf + o, len - o, "[");
		for (int i = 0; i < nparam && o < len; i++)
			o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "",
					      hexdump_param(params[i], tmp, sizeof(tmp)));
		if (o < len)
			snprintf(buf + o, len - o, "]");
	}
}

/*
 * One agent-shaped call. Returns 0 when the call itself behaved (whatever it answered),
 * after checking the ABI rules; the caller checks the answer.
 */
static int call(int nparam, const char *const *params, size_t req_size, size_t res_size,
		struct outcome *out, const char *what)
{
	unsigned char *req_mem = calloc(1, req_size);
	unsigned char *res_mem = calloc(1, res_size);
	unsigned char req_before[64];
	char *param_copy[MAXPARAMS] = {0};
	int ok = 1;

	if (req_mem == NULL || res_mem == NULL)
		die("out of memory");
	zbx_agent_request *req = (zbx_agent_request *)req_mem;
	zbx_agent_result *res = (zbx_agent_result *)res_mem;

	req->key = strdup("linux_status");
	req->nparam = nparam;
	/* The agent leaves params NULL when the key has no brackets. */
	req->params = nparam > 0 ? malloc(sizeof(char *) * (size_t)nparam) : NULL;
	if (req->key == NULL || (nparam > 0 && req->params == NULL))
		die("out of memory");
	for (int i = 0; i < nparam; i++) {
		if ((req->params[i] = strdup(params[i])) == NULL ||
		    (param_copy[i] = strdup(params[i])) == NULL)
			die("out of memory");
	}
	char **params_ptr = req->params;
	memcpy(req_before, req_mem, req_size);

	out->rc = item_fn(req, res);
	out->type = res->type;
	out->ui64 = res->ui64;
	out->msg[0] = '\0';
	out->msg_len = 0;

	/* The module must not write into the agent's request or its parameter strings. */
	if (memcmp(req_before, req_mem, req_size) != 0) {
		check(0, "%s: module modified the request struct", what);
		ok = 0;
	}
	if (strcmp(req->key, "linux_status") != 0) {
		check(0, "%s: module modified request->key", what);
		ok = 0;
	}
	for (int i = 0; i < nparam; i++) {
		if (strcmp(params_ptr[i], param_copy[i]) != 0) {
			check(0, "%s: module modified parameter %d", what, i + 1);
			ok = 0;
		}
	}
	/* The 7.x `bin` field at offset 64 must stay untouched (valgrind covers the 64 case). */
	for (size_t i = sizeof(zbx_agent_result); i < res_size; i++) {
		if (res_mem[i] != 0) {
			check(0, "%s: result byte %zu (beyond offset 64) was written", what, i);
			ok = 0;
			break;
		}
	}
	/* Fields this module has no business setting. */
	if (res->log != NULL || res->lastlogsize != 0 || res->mtime != 0 || res->dbl != 0.0) {
		check(0, "%s: module set log/lastlogsize/mtime/dbl", what);
		ok = 0;
	}

	if (out->rc == SYSINFO_RET_OK) {
		if (res->type != AR_UINT64) {
			check(0, "%s: SYSINFO_RET_OK but result type is 0x%x, not AR_UINT64",
			      what, res->type);
			ok = 0;
		}
	} else if (out->rc == SYSINFO_RET_FAIL) {
		if (!(res->type & AR_MESSAGE) || res->msg == NULL || res->msg[0] == '\0') {
			check(0, "%s: SYSINFO_RET_FAIL without a message (type 0x%x, msg %s)", what,
			      res->type, res->msg == NULL ? "NULL" : "empty");
			ok = 0;
		} else if (res->type != AR_MESSAGE) {
			check(0, "%s: SYSINFO_RET_FAIL with a value set too (type 0x%x)", what,
			      res->type);
			ok = 0;
		}
	} else {
		check(0, "%s: item function returned %d (neither SYSINFO_RET_OK nor _FAIL)", what,
		      out->rc);
		ok = 0;
	}
	if (res->msg != NULL) {
		out->msg_len = strlen(res->msg);
		snprintf(out->msg, sizeof(out->msg), "%s", res->msg);
	}

	/* Free like the agent: free_result() free()s str, text and msg. */
	free(res->str);
	free(res->text);
	free(res->msg);
	for (int i = 0; i < nparam; i++) {
		free(params_ptr[i]);
		free(param_copy[i]);
	}
	free(params_ptr);
	free(req->key);
	free(req_mem);
	free(res_mem);
	return ok;
}

/* --- expected ---------------------------------------------------------------------------- */

struct expected {
	int is_error;
	char error[64];         /* "header", "open" or a line number */
	long long count[NSTATES];
	int have[NSTATES];
};

static void read_expected(const char *dir, struct expected *e)
{
	char path[PATH_MAX], line[256];
	snprintf(path, sizeof(path), "%s/expected", dir);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		die("cannot open %s: %s", path, strerror(errno));
	memset(e, 0, sizeof(*e));
	int lineno = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char name[64], rest[64];
		long long n;
		lineno++;
		if (sscanf(line, "ERROR %63s", rest) == 1) {
			if (lineno != 1)
				die("%s:%d: ERROR must be the only line", path, lineno);
			e->is_error = 1;
			snprintf(e->error, sizeof(e->error), "%s", rest);
			char *end;
			long ln = strtol(rest, &end, 10);
			if (strcmp(rest, "header") != 0 && strcmp(rest, "open") != 0 &&
			    (*end != '\0' || ln < 1))
				die("%s:%d: ERROR wants a line number, 'header' or 'open': %s", path,
				    lineno, rest);
			continue;
		}
		if (sscanf(line, "%63s %lld %63s", name, &n, rest) != 2 || n < 0)
			die("%s:%d: cannot read %s", path, lineno, line);
		int found = 0;
		for (int i = 0; i < NSTATES; i++) {
			if (strcmp(name, STATES[i].kernel) == 0) {
				if (e->have[i])
					die("%s:%d: %s twice", path, lineno, name);
				e->have[i] = 1;
				e->count[i] = n;
				found = 1;
			}
		}
		if (!found)
			die("%s:%d: unknown state %s", path, lineno, name);
	}
	fclose(f);
	if (e->is_error && lineno != 1)
		die("%s: an ERROR file has exactly one line", path);
	if (!e->is_error)
		for (int i = 0; i < NSTATES; i++)
			if (!e->have[i])
				die("%s: no line for %s", path, STATES[i].kernel);
}

/* --- checks -------------------------------------------------------------------------------- */

static int contains(const char *hay, const char *needle)
{
	return strstr(hay, needle) != NULL;
}

/* Error phrases required for one request, all must appear in the message. */
static void expect_fail(int nparam, const char *const *params, const char *const *phrases,
			size_t req_size, size_t res_size)
{
	char what[512];
	struct outcome o;
	describe(what, sizeof(what), nparam, params, req_size, res_size);
	if (!call(nparam, params, req_size, res_size, &o, what))
		return;
	if (o.rc != SYSINFO_RET_FAIL) {
		check(0, "%s: expected SYSINFO_RET_FAIL, got OK with value %llu", what,
		      (unsigned long long)o.ui64);
		return;
	}
	/* Not in the contract, but the agent logs and ships this text: keep it bounded even
	 * when a parameter is 64 KiB. */
	if (o.msg_len > MAX_MSG) {
		check(0, "%s: message is %zu bytes (> %d): it echoes too much", what, o.msg_len,
		      MAX_MSG);
		return;
	}
	for (const char *const *p = phrases; *p != NULL; p++) {
		if (!contains(o.msg, *p)) {
			check(0, "%s: message lacks \"%s\": \"%s\"", what, *p, o.msg);
			return;
		}
	}
	check(1, "%s -> FAIL \"%s\"", what, o.msg);
}

static void expect_value(int nparam, const char *const *params, long long want,
			 size_t req_size, size_t res_size)
{
	char what[512];
	struct outcome o;
	describe(what, sizeof(what), nparam, params, req_size, res_size);
	if (!call(nparam, params, req_size, res_size, &o, what))
		return;
	if (o.rc != SYSINFO_RET_OK) {
		check(0, "%s: expected %lld, got SYSINFO_RET_FAIL \"%s\"", what, want, o.msg);
		return;
	}
	check((long long)o.ui64 == want, "%s -> %llu (expected %lld)", what,
	      (unsigned long long)o.ui64, want);
}

/* A bad fixture: the message must name the tcp file and where it went wrong. */
static void expect_fixture_error(const char *state, const struct expected *e, size_t req_size,
				 size_t res_size)
{
	const char *params[] = {"tcp_status", state};
	char what[512], line_phrase[96];
	struct outcome o;
	describe(what, sizeof(what), 2, params, req_size, res_size);
	if (!call(2, params, req_size, res_size, &o, what))
		return;
	if (o.rc != SYSINFO_RET_FAIL) {
		check(0, "%s: fixture %s is malformed (%s) but got value %llu", what, fixture_dir,
		      e->error, (unsigned long long)o.ui64);
		return;
	}
	if (!contains(o.msg, tcp_path)) {
		check(0, "%s: message does not name %s: \"%s\"", what, tcp_path, o.msg);
		return;
	}
	if (strcmp(e->error, "open") == 0) {
		/* Missing file: the OS error text must be there (strerror(ENOENT)). */
		const char *os = strerror(ENOENT);
		check(contains(o.msg, os), "%s -> FAIL naming %s and \"%s\": \"%s\"", what,
		      tcp_path, os, o.msg);
		return;
	}
	if (strcmp(e->error, "header") == 0) {
		/* A missing/broken header is reported at line 1 or as the header. */
		check(contains(o.msg, "line 1") || contains(o.msg, "header"),
		      "%s -> FAIL naming %s and \"line 1\" or \"header\": \"%s\"", what, tcp_path,
		      o.msg);
		return;
	}
	snprintf(line_phrase, sizeof(line_phrase), "line %s", e->error);
	/* "line 4" must not be satisfied by "line 40": the number must end there. */
	const char *hit = strstr(o.msg, line_phrase);
	int ok = hit != NULL && !isdigit((unsigned char)hit[strlen(line_phrase)]);
	check(ok, "%s -> FAIL naming %s and \"%s\": \"%s\"", what, tcp_path, line_phrase, o.msg);
}

static void contract_errors(size_t req_size, size_t res_size)
{
	static const char *const MISSING_FIRST[] = {"Missing first parameter", "tcp_status", NULL};
	static const char *const UNKNOWN_FIRST[] = {"Unknown first parameter", "tcp_status", NULL};
	static const char *const MISSING_STATE[] = {"Missing TCP state", "Valid states:", NULL};
	static const char *const UNKNOWN_STATE[] = {"Unknown TCP state", "Valid states:", "ESTAB",
						    "TIME-WAIT", NULL};
	static const char *const TOO_MANY[] = {"Too many parameters", NULL};
	static const char *const ANY[] = {NULL};

	/* linux_status (no brackets) and linux_status[] / linux_status[,LISTEN]. */
	expect_fail(0, NULL, MISSING_FIRST, req_size, res_size);
	{ const char *p[] = {""}; expect_fail(1, p, MISSING_FIRST, req_size, res_size); }
	{ const char *p[] = {"", "LISTEN"}; expect_fail(2, p, MISSING_FIRST, req_size, res_size); }

	/* Unknown first parameter, including near misses. */
	{ const char *p[] = {"foo", "LISTEN"}; expect_fail(2, p, UNKNOWN_FIRST, req_size, res_size); }
	{ const char *p[] = {"tcp_statuses", "LISTEN"};
	  expect_fail(2, p, UNKNOWN_FIRST, req_size, res_size); }
	{ const char *p[] = {"tcp", "LISTEN"}; expect_fail(2, p, UNKNOWN_FIRST, req_size, res_size); }
	{ const char *p[] = {"sctp_status", "LISTEN"};
	  expect_fail(2, p, UNKNOWN_FIRST, req_size, res_size); }
	/* udp_status exists (issue 19): LISTEN is no UDP state. */
	{ static const char *const UNKNOWN_UDP[] = {"Unknown UDP state", "UNCONN", "ESTAB", NULL};
	  const char *p[] = {"udp_status", "LISTEN"};
	  expect_fail(2, p, UNKNOWN_UDP, req_size, res_size); }

	/* Missing or empty state. */
	{ const char *p[] = {"tcp_status"}; expect_fail(1, p, MISSING_STATE, req_size, res_size); }
	{ const char *p[] = {"tcp_status", ""}; expect_fail(2, p, MISSING_STATE, req_size, res_size); }
	{ const char *p[] = {"tcp_status", "   "};
	  expect_fail(2, p, MISSING_STATE, req_size, res_size); }

	/* Unknown state: junk, prefixes and extensions of real names (never substring match). */
	static const char *const unknown[] = {
		"FOO", "LISTENING", "LISTEN2", "LIST", "EST", "ESTABLISHEDX", "SYN", "WAIT",
		"FIN_WAIT", "FIN_WAIT3", "TIME__WAIT", "TIME WAIT", "01", "0A", "10", "*", "ALL",
		"LISTEN,LISTEN",
	};
	for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		const char *p[] = {"tcp_status", unknown[i]};
		expect_fail(2, p, UNKNOWN_STATE, req_size, res_size);
	}

	/* Too many parameters (the state and four filters at most), even when the rest is good. */
	{ const char *p[] = {"tcp_status", "LISTEN", "", "", "", "", "x"};
	  expect_fail(7, p, TOO_MANY, req_size, res_size); }
	{ const char *p[] = {"tcp_status", "LISTEN", "", "", "", "", ""};
	  expect_fail(7, p, TOO_MANY, req_size, res_size); }
	{ const char *p[] = {"version", ""};
	  expect_fail(2, p, TOO_MANY, req_size, res_size); }
	/* A bad filter is named. */
	{ static const char *const BAD_ADDRESS[] = {"Invalid local address", "\"x\"", NULL};
	  const char *p[] = {"tcp_status", "LISTEN", "x"};
	  expect_fail(3, p, BAD_ADDRESS, req_size, res_size); }
	{ static const char *const BAD_PORT[] = {"Invalid remote port", "65536", NULL};
	  const char *p[] = {"tcp_status", "LISTEN", "", "", "", "65536"};
	  expect_fail(6, p, BAD_PORT, req_size, res_size); }

	/* Very long parameters (64 KiB): must fail cleanly, not crash or over-read. */
	{
		size_t n = 65536;
		char *big = malloc(n + 1);
		if (big == NULL)
			die("out of memory");
		memset(big, 'A', n);
		big[n] = '\0';
		{ const char *p[] = {"tcp_status", big};
		  expect_fail(2, p, UNKNOWN_STATE, req_size, res_size); }
		{ const char *p[] = {big, "LISTEN"};
		  expect_fail(2, p, UNKNOWN_FIRST, req_size, res_size); }
		/* LISTEN followed by 64 KiB of spaces: trimming must not make this slow or wrong. */
		memset(big, ' ', n);
		memcpy(big + n / 2, "LISTENX", 7);
		{ const char *p[] = {"tcp_status", big};
		  expect_fail(2, p, UNKNOWN_STATE, req_size, res_size); }
		free(big);
	}

	/* Non-ASCII and control bytes. */
	static const char *const weird[] = {
		"LIST\xc3\x89N",       /* LISTÉN in UTF-8 */
		"LI\xc5\xbfTEN",       /* long s: Unicode uppercases it to S (LISTEN) */
		"L\xc4\xb1STEN",       /* dotless i: Unicode uppercases it to I (LISTEN) */
		"\xc2\xa0LISTEN",      /* no-break space is not a space */
		"LISTEN\xff",          /* invalid UTF-8 */
		"\xff\xfe\xfd",
		"LIS\tTEN",
		"LISTEN\n",
		"\nLISTEN",
		"\x01",
		"\x1b[31mLISTEN",
		"LISTEN\x7f",
		"\xef\xbc\xac\xef\xbc\xa9\xef\xbc\xb3\xef\xbc\xb4\xef\xbc\xa5\xef\xbc\xae", /* fullwidth */
	};
	for (size_t i = 0; i < sizeof(weird) / sizeof(weird[0]); i++) {
		const char *p[] = {"tcp_status", weird[i]};
		expect_fail(2, p, UNKNOWN_STATE, req_size, res_size);
	}
	/* CONTRACT.md trims surrounding *spaces* only: a tab is a control byte like any other. */
	static const char *const tabs[] = {"LISTEN\t", "\tLISTEN", " \tLISTEN\t "};
	for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++) {
		const char *p[] = {"tcp_status", tabs[i]};
		expect_fail(2, p, UNKNOWN_STATE, req_size, res_size);
	}
	{ const char *p[] = {"tcp_st\xe4tus", "LISTEN"};
	  expect_fail(2, p, UNKNOWN_FIRST, req_size, res_size); }
	{ const char *p[] = {"\x01\x02", "LISTEN"}; expect_fail(2, p, ANY, req_size, res_size); }
}

/* --- main ---------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s <liblinux_status.so> <fixture dir>\n", argv[0]);
		return 2;
	}
	const char *so_path = argv[1];
	/* "dir/" and "dir" are the same fixture; the module's messages say "dir/tcp". */
	static char dir_buf[PATH_MAX];
	if (strlen(argv[2]) >= PATH_MAX - 8)
		die("fixture path too long");
	snprintf(dir_buf, sizeof(dir_buf), "%s", argv[2]);
	for (size_t l = strlen(dir_buf); l > 1 && dir_buf[l - 1] == '/'; l--)
		dir_buf[l - 1] = '\0';
	fixture_dir = dir_buf;
	snprintf(tcp_path, sizeof(tcp_path), "%s/tcp", fixture_dir);

	struct expected exp;
	read_expected(fixture_dir, &exp);
	printf("harness: module %s, fixture %s (%s)\n", so_path, fixture_dir,
	       exp.is_error ? "malformed" : "counts");

	/* The module reads the override at zbx_module_init: set it before loading. */
	if (setenv("LINUX_STATUS_PROC_NET_DIR", fixture_dir, 1) != 0)
		die("setenv: %s", strerror(errno));

	void *h = dlopen(so_path, RTLD_NOW);
	if (h == NULL)
		die("dlopen(%s, RTLD_NOW): %s", so_path, dlerror());
	check(1, "dlopen RTLD_NOW");

	int (*api_version)(void);
	int (*init)(void);
	int (*uninit)(void);
	zbx_metric *(*item_list)(void);
	void (*item_timeout)(int);
	*(void **)&api_version = dlsym(h, "zbx_module_api_version");
	*(void **)&init = dlsym(h, "zbx_module_init");
	*(void **)&uninit = dlsym(h, "zbx_module_uninit");
	*(void **)&item_list = dlsym(h, "zbx_module_item_list");
	*(void **)&item_timeout = dlsym(h, "zbx_module_item_timeout");
	check(api_version != NULL, "dlsym zbx_module_api_version");
	check(init != NULL, "dlsym zbx_module_init");
	check(uninit != NULL, "dlsym zbx_module_uninit");
	check(item_list != NULL, "dlsym zbx_module_item_list");
	check(item_timeout != NULL, "dlsym zbx_module_item_timeout");
	if (!api_version || !init || !uninit || !item_list || !item_timeout)
		die("missing module symbols");

	int v = api_version();
	check(v == ZBX_MODULE_API_VERSION, "zbx_module_api_version() = %d (want %d)", v,
	      ZBX_MODULE_API_VERSION);
	int rc = init();
	check(rc == ZBX_MODULE_OK, "zbx_module_init() = %d (want %d)", rc, ZBX_MODULE_OK);
	if (v != ZBX_MODULE_API_VERSION || rc != ZBX_MODULE_OK)
		die("the agent would refuse this module");

	/* The item table: copy and check it as the agent does, then rewrite flags in place. */
	zbx_metric *table = item_list();
	if (table == NULL)
		die("zbx_module_item_list() returned NULL");
	size_t n = 0;
	while (table[n].key != NULL && n < 64)
		n++;
	check(table[n].key == NULL, "item table is NULL-key terminated (%zu entries)", n);
	check(n == 1, "item table has exactly one entry (%zu)", n);
	if (n != 1)
		die("unexpected item table");
	zbx_metric copy = table[0];
	check(strcmp(copy.key, "linux_status") == 0, "item key \"%s\" == \"linux_status\"",
	      copy.key);
	check((copy.flags & CF_HAVEPARAMS) != 0, "item flags 0x%x have CF_HAVEPARAMS", copy.flags);
	check(copy.function != NULL, "item function non-NULL");
	check(copy.test_param != NULL, "item test_param non-NULL (\"%s\")",
	      copy.test_param ? copy.test_param : "(null)");
	if (copy.function == NULL || copy.test_param == NULL || strcmp(copy.key, "linux_status"))
		die("unusable item table");
	check(strcmp(copy.test_param, "tcp_status,LISTEN") == 0,
	      "item test_param \"%s\" == \"tcp_status,LISTEN\"", copy.test_param);
	for (size_t i = 0; i < n; i++) /* agent: flags = (flags & CF_HAVEPARAMS) | CF_MODULE */
		table[i].flags = (table[i].flags & CF_HAVEPARAMS) | CF_MODULE;
	check(table[0].flags == (CF_HAVEPARAMS | CF_MODULE),
	      "item table is writable (flags rewritten to 0x%x)", table[0].flags);
	item_fn = table[0].function;
	item_timeout(3);
	check(1, "zbx_module_item_timeout(3)");

	for (size_t ri = 0; ri < NREQ; ri++) {
		for (size_t si = 0; si < NRES; si++) {
			size_t rq = REQ_SIZES[ri], rs = RES_SIZES[si];
			size_t combo = ri * NRES + si;
			if (exp.is_error) {
				for (int s = 0; s < NSTATES; s++)
					expect_fixture_error(STATES[s].kernel, &exp, rq, rs);
			} else {
				for (int s = 0; s < NSTATES; s++) {
					/* Every spelling once per layout, rotated so each layout also
					 * sees a different mix; the kernel name in every layout. */
					const char *p[] = {"tcp_status", STATES[s].kernel};
					expect_value(2, p, exp.count[s], rq, rs);
					for (int k = 1; k < MAXSPELL && STATES[s].spellings[k]; k++) {
						if ((size_t)k % (NREQ * NRES) != combo &&
						    !(ri == 0 && si == 0))
							continue;
						p[1] = STATES[s].spellings[k];
						expect_value(2, p, exp.count[s], rq, rs);
					}
				}
				/* The table's test_param, split as the agent does for `-p`. */
				char *tp = strdup(copy.test_param), *comma = strchr(tp, ',');
				if (comma != NULL) {
					*comma = '\0';
					const char *p[] = {tp, comma + 1};
					int li = 9; /* LISTEN */
					expect_value(2, p, exp.count[li], rq, rs);
				} else {
					check(0, "test_param \"%s\" has no comma", copy.test_param);
				}
				free(tp);
			}
			contract_errors(rq, rs);
		}
	}

	rc = uninit();
	check(rc == ZBX_MODULE_OK, "zbx_module_uninit() = %d", rc);
	rc = dlclose(h);
	check(rc == 0, "dlclose = %d", rc);

	printf("harness: %d passed, %d failed\n", n_pass, n_fail);
	return n_fail == 0 ? 0 : 1;
}
