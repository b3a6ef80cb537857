/* example: the smallest useful plugin: drops datagrams longer than `max_bytes`, both ways. */
/*
 * Written from <psktun/plugin.h> alone, as a template for new plugins:
 *
 *	tunnels = ({ name = "t"; plugin = "example"; accept = ...; connect = ...;
 *		     options = { max_bytes = 512; }; });
 *
 * A datagram longer than max_bytes (from the meter or the backend, or out
 * of the DTLS session) is dropped and counted in dropped_policy; the first
 * drop of each tunnel is logged as a notice, the others at debug level.
 * Without options it allows up to MAX_BYTES_DEFAULT.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <psktun/plugin.h>

#define MAX_BYTES_DEFAULT 1024
#define MAX_BYTES_LIMIT 65535

/* Per tunnel (and per worker: see "Threading"), so no lock. */
struct example {
	const struct psktun_host *host;
	struct psktun_tunnel *tunnel;
	unsigned long max_bytes;
	unsigned long dropped;
};

/* The one parser: check_options and init both use it. */
static int parse(const struct psktun_option *opts, size_t n_opts, unsigned long *max_bytes,
		 char *err, size_t err_len)
{
	*max_bytes = MAX_BYTES_DEFAULT;
	for (size_t i = 0; i < n_opts; i++) {
		const char *v = opts[i].value ? opts[i].value : "";
		char *end;

		if (!opts[i].key || strcmp(opts[i].key, "max_bytes")) {
			snprintf(err, err_len, "unknown option \"%.64s\" (known: max_bytes)",
				 opts[i].key ? opts[i].key : "");
			return -EINVAL;
		}
		errno = 0;
		*max_bytes = strtoul(v, &end, 10);
		if (errno || end == v || *end || v[0] == '-' || *max_bytes == 0 ||
		    *max_bytes > MAX_BYTES_LIMIT) {
			snprintf(err, err_len, "max_bytes = \"%.64s\": expected bytes from 1 to %d",
				 v, MAX_BYTES_LIMIT);
			return -EINVAL;
		}
	}
	return 0;
}

static int example_check_options(enum psktun_role role, const struct psktun_option *opts,
				 size_t n_opts, char *err, size_t err_len)
{
	unsigned long max_bytes;

	(void)role;	/* the same options in both roles */
	return parse(opts, n_opts, &max_bytes, err, err_len);
}

static int example_init(const struct psktun_host *host, struct psktun_tunnel *t,
			const struct psktun_option *opts, size_t n_opts, void **tunnel_data)
{
	struct example *ex;
	char err[256];

	if (host->abi != PSKTUN_PLUGIN_ABI || host->size < sizeof(*host))
		return -EINVAL;
	ex = calloc(1, sizeof(*ex));
	if (!ex)
		return -ENOMEM;
	if (parse(opts, n_opts, &ex->max_bytes, err, sizeof(err)) < 0) {
		host->log(t, PSKTUN_LOG_ERR, "%s", err);
		free(ex);
		return -EINVAL;
	}
	ex->host = host;
	ex->tunnel = t;
	*tunnel_data = ex;
	return 0;
}

static void example_fini(void *tunnel_data)
{
	free(tunnel_data);
}

/* Both directions: forward what fits, drop the rest. */
static enum psktun_verdict check_size(struct psktun_dgram *ctx, uint8_t *buf, size_t *len,
				      size_t cap)
{
	struct example *ex = ctx->tunnel_data;

	(void)buf, (void)cap;	/* it reads only the length */
	if (*len <= ex->max_bytes)
		return PSKTUN_FORWARD;
	ex->host->log(ex->tunnel, ex->dropped++ ? PSKTUN_LOG_DEBUG : PSKTUN_LOG_NOTICE,
		      "dropped a datagram of %zu bytes (max_bytes = %lu)", *len, ex->max_bytes);
	ctx->reason = PSKTUN_REASON_POLICY;
	return PSKTUN_DROP;
}

PSKTUN_PLUGIN_DECLARE(example,
		      .version = "1",
		      .check_options = example_check_options,
		      .init = example_init,
		      .fini = example_fini,
		      .on_plain = check_size,
		      .on_tunnel = check_size);
