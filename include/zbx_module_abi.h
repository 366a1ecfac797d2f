/*
 * The Zabbix agent loadable-module ABI, as linux_status uses it.
 *
 * Written for this project from the layout facts in shared/notes/zabbix-module-abi.md
 * (no Zabbix source text is copied). Only the fields that have kept the same offsets from
 * Zabbix 3.4 to 7.4 are declared: a module built against these definitions reads request
 * bytes 0..36 and writes result bytes 0..64, which every supported agent allocates.
 *
 * build.rs runs bindgen over this header, and src/ffi/abi.rs asserts every offset and size
 * at compile time, so a wrong edit here fails the build instead of corrupting an agent.
 */
#ifndef LINUX_STATUS_ZBX_MODULE_ABI_H
#define LINUX_STATUS_ZBX_MODULE_ABI_H

#include <stdint.h>

/* zbx_module_api_version() must return this; the agent refuses any other value. */
#define ZBX_MODULE_API_VERSION 2

/* zbx_module_init() / zbx_module_uninit() return codes. */
#define ZBX_MODULE_OK 0
#define ZBX_MODULE_FAIL -1

/* Item function return codes. */
#define SYSINFO_RET_OK 0
#define SYSINFO_RET_FAIL 1

/* Item flags: the agent keeps only CF_HAVEPARAMS from a module and adds CF_MODULE itself. */
#define CF_HAVEPARAMS 0x01
#define CF_MODULE 0x02

/* Result type bits, OR-ed into zbx_agent_result.type. */
#define AR_UINT64 0x01
#define AR_DOUBLE 0x02
#define AR_STRING 0x04
#define AR_TEXT 0x08
#define AR_LOG 0x10
#define AR_MESSAGE 0x20

/*
 * The request prefix common to every agent since 3.4 (sizeof 40 there; 4.4+ and 7.x append
 * fields that a portable module must never touch). The agent owns all of it: parameters are
 * NUL-terminated, never NULL, and valid only during the call.
 */
typedef struct zbx_agent_request {
	char *key;          /* bare key name, without brackets */
	int nparam;         /* number of entries in params */
	char **params;      /* parameters, quotes already removed by the agent */
	uint64_t lastlogsize;
	int mtime;
} zbx_agent_request;

/*
 * The result up to 6.x (sizeof 64). 7.x appends one pointer (sizeof 72), which a portable
 * module never writes. The agent zero-fills it before each call and free()s str, text and
 * msg afterwards, so those must come from the C allocator.
 */
typedef struct zbx_agent_result {
	uint64_t lastlogsize;
	uint64_t ui64;
	double dbl;
	char *str;
	char *text;
	char *msg;
	void *log;          /* log records; never set by this module */
	int type;           /* AR_* bits of the values that are set */
	int mtime;
} zbx_agent_result;

typedef int (*zbx_item_function)(zbx_agent_request *request, zbx_agent_result *result);

/*
 * One entry of the table zbx_module_item_list() returns. The table ends with an entry whose
 * key is NULL, and it must live in writable memory: the agent rewrites flags in place.
 */
typedef struct zbx_metric {
	const char *key;
	unsigned int flags;
	zbx_item_function function;
	const char *test_param;
} zbx_metric;

/* The symbols an agent looks up with dlsym(); only zbx_module_api_version is mandatory. */
int zbx_module_api_version(void);
int zbx_module_init(void);
int zbx_module_uninit(void);
zbx_metric *zbx_module_item_list(void);
void zbx_module_item_timeout(int timeout);

#endif
