/* config: the libconfig file described in DESIGN.md, loaded and checked into plain structs. */
#ifndef PSKTUN_CONFIG_H
#define PSKTUN_CONFIG_H
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include "diag.h"
#include "keys.h"

enum psktun_mode {
	PSKTUN_MODE_GATEWAY = 1,
	PSKTUN_MODE_TERMINATOR = 2,
};

struct psktun_conf_option {		/* options = { key = value; } as text */
	char *key;
	char *value;
};

struct psktun_conf_tunnel {
	char *name;			/* unique, 1..63 chars [A-Za-z0-9_.-] */
	char *plugin;			/* NULL: opaque datagrams */
	char *accept;			/* "host:port" as written */
	char *connect;			/* "host:port" as written (host may be a DNS name) */
	struct psktun_conf_option *options;
	size_t n_options;
	int line;
};

struct psktun_conf_meter {
	char *identity;
	char *source;			/* as written */
	struct sockaddr_storage addr;	/* parsed source */
	bool has_port;			/* "IP:port" rather than "IP" */
	int line;
};

struct psktun_conf_dtls {
	char *priority;			/* NULL: PSKTUN_DEFAULT_PRIORITY */
	unsigned mtu;			/* 256..65535, default 1280 */
	unsigned retransmit_ms;		/* 100..60000, default 9000 */
	unsigned handshake_timeout_s;	/* 1..3600, default 120 */
	unsigned idle_timeout_s;	/* 1..86400*7, default 600 */
	unsigned max_sessions;		/* 1..10000000, default 10000 */
	unsigned max_handshakes;	/* in progress at once, default 100 (gateway), 1000 (terminator) (extension) */
	unsigned queue_len;		/* datagrams held during a handshake, 1..64, default 8 (extension) */
	unsigned queue_bytes;		/* bytes all handshake queues hold together, default 4 MiB (extension) */
	unsigned handshake_rate;	/* terminator: verified ClientHellos a second per source IP, 0 = no limit, default 100 */
	unsigned handshake_burst;	/* terminator: ... and in a burst, default 1000 */
	unsigned path_timeout_s;	/* gateway: uplink with no downlink this long = dead path, 0 = off, default 0 */
	bool tickets;			/* session tickets (RFC 5077) instead of none; default false */
	char *ticket_key_file;		/* terminator: the ticket master key (hex, 64 bytes), shared by
					 * several terminators; NULL: random at start */
};

/* Priority used when dtls.priority is absent: DTLS 1.2, PSK, AES-128-CCM-8, no tickets
 * (PSKTUN_TICKETS_PRIORITY with dtls.tickets = true). */
#define PSKTUN_TICKETS_PRIORITY \
	"NONE:+VERS-DTLS1.2:+AES-128-CCM-8:+AEAD:+PSK:+COMP-NULL:+SIGN-ECDSA-SHA256"
#define PSKTUN_DEFAULT_PRIORITY \
	"NONE:+VERS-DTLS1.2:+AES-128-CCM-8:+AEAD:+PSK:+COMP-NULL:+SIGN-ECDSA-SHA256:%NO_TICKETS"

/* session_cache = { redis = "redis://HOST[:PORT][/DB]"; key_file = "FILE"; } (terminator) */
struct psktun_conf_cache {
	char *redis;			/* as written; NULL: no shared cache */
	char *redis_host;		/* parsed from it */
	unsigned redis_port;		/* default 6379 */
	unsigned redis_db;		/* default 0 */
	char *key_file;			/* resolved; NULL: nothing is sealed */
	int line;
};

#define PSKTUN_CACHE_KEY_LEN 32		/* key_file: 32 bytes as 64 hex digits */

struct psktun_config {
	char *path;			/* the file as given */
	char *dir;			/* its directory, for relative paths */
	enum psktun_mode mode;
	char *keys;			/* resolved against dir */
	int keys_line;
	char *control;			/* NULL: no control socket */
	char *plugin_dir;		/* "plugin_dir" setting (extension), default PSKTUN_PLUGINDIR */
	unsigned workers;		/* terminator: threads, each with its own loop and SO_REUSEPORT sockets (extension), default 1 */
	struct psktun_conf_tunnel *tunnels;
	size_t n_tunnels;
	struct psktun_conf_meter *meters;
	size_t n_meters;
	struct psktun_conf_dtls dtls;
	char *state_file;		/* resolved; NULL: resumption state is not kept across restarts */
	struct psktun_conf_cache cache;
};

/*
 * Parse and check a configuration file. Every problem goes to diag as
 * "FILE:LINE: message" (syntax errors, unknown settings, wrong types,
 * missing required settings, bad addresses, out-of-range numbers,
 * duplicate tunnel names, meters in terminator mode, duplicate meter
 * identities or sources). Returns 0 and *out, or -EINVAL (or another
 * negative errno, e.g. -ENOENT for a missing file) with diag filled.
 */
int psktun_config_load(const char *path, struct psktun_config **out, struct psktun_diag *diag);

/* Cross-checks that need the key file: every gateway meter's identity is in it.
 * Returns 0 or -EINVAL with diag lines pointing at the meter's line. */
int psktun_config_check_keys(const struct psktun_config *c, const struct psktun_keys *k,
			     struct psktun_diag *diag);

void psktun_config_free(struct psktun_config *c);
/* A deep copy of one tunnel's settings (a tunnel keeps its own across reloads);
 * freed, and zeroed, with psktun_conf_tunnel_free. */
int psktun_conf_tunnel_copy(struct psktun_conf_tunnel *dst, const struct psktun_conf_tunnel *src);
void psktun_conf_tunnel_free(struct psktun_conf_tunnel *t);
#endif
