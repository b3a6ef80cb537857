/* Unit tests for the CoAP plugin's logic, driven through a fake host table that records every call. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fake_host.h"
#include "parse.h"	/* to build requests */

/* One tunnel and one open session, per test. */
struct fixture {
	void *tunnel_data;
	void *session_data;
	struct psktun_dgram ctx;
	uint8_t buf[2048];
	size_t len;
};

static struct fixture fx;

static int open_tunnel(enum psktun_role role, const struct psktun_option *opts,
		       size_t n_opts)
{
	int rc;

	fake_host_reset(role);
	F.no_sends = true;
	memset(&fx, 0, sizeof(fx));
	rc = psktun_plugin.init(&fake_host, &F.tunnel, opts, n_opts, &fx.tunnel_data);
	if (rc < 0)
		return rc;
	assert_int_equal(psktun_plugin.session_open(fx.tunnel_data, &F.a,
						    &fx.session_data), 0);
	return 0;
}

static int teardown(void **state)
{
	if (fx.tunnel_data != NULL) {
		psktun_plugin.session_close(fx.tunnel_data, &F.a, fx.session_data);
		psktun_plugin.fini(fx.tunnel_data);
	}
	memset(&fx, 0, sizeof(fx));
	return 0;
}

static void open_with_ep(enum psktun_role role)
{
	static const struct psktun_option opts[] = {
		{ "identity", "query:ep" },
	};

	assert_int_equal(open_tunnel(role, opts, 1), 0);
}

static void load(const uint8_t *msg, size_t len)
{
	memcpy(fx.buf, msg, len);
	fx.len = len;
	memset(&fx.ctx, 0, sizeof(fx.ctx));
	fx.ctx.tunnel = &F.tunnel;
	fx.ctx.tunnel_data = fx.tunnel_data;
	fx.ctx.session = &F.a;
	fx.ctx.session_data = fx.session_data;
}

static enum psktun_verdict plain(const uint8_t *msg, size_t len)
{
	load(msg, len);
	return psktun_plugin.on_plain(&fx.ctx, fx.buf, &fx.len, sizeof(fx.buf));
}

static enum psktun_verdict from_tunnel(const uint8_t *msg, size_t len)
{
	load(msg, len);
	return psktun_plugin.on_tunnel(&fx.ctx, fx.buf, &fx.len, sizeof(fx.buf));
}

#define PLAIN(msg) plain((msg), sizeof(msg))
#define TUNNEL(msg) from_tunnel((msg), sizeof(msg))

/* LwM2M Register: CON POST /rd?ep=meter-0002&lt=300, mid 0x1001, token a1b2. */
static const uint8_t register_0002[] = {
	0x42, 0x02, 0x10, 0x01, 0xa1, 0xb2,
	0xb2, 'r', 'd',
	0x4d, 0x00, 'e', 'p', '=', 'm', 'e', 't', 'e', 'r', '-', '0', '0', '0', '2',
	0x06, 'l', 't', '=', '3', '0', '0',
	0xff, '<', '/', '1', '/', '0', '>',
};
static const uint8_t forbidden_1001[] = { 0x62, 0x83, 0x10, 0x01, 0xa1, 0xb2 };

/* The same as a NON. */
static const uint8_t register_0002_non[] = {
	0x52, 0x02, 0x10, 0x02, 0xa1, 0xb2,
	0xb2, 'r', 'd',
	0x4d, 0x00, 'e', 'p', '=', 'm', 'e', 't', 'e', 'r', '-', '0', '0', '0', '2',
};

/* CON POST /rd?lt=300&ep=meter-0001, mid 0x2002, no token. */
static const uint8_t register_0001[] = {
	0x40, 0x02, 0x20, 0x02,
	0xb2, 'r', 'd',
	0x46, 'l', 't', '=', '3', '0', '0',
	0x0d, 0x00, 'e', 'p', '=', 'm', 'e', 't', 'e', 'r', '-', '0', '0', '0', '1',
};

/* LwM2M Update: CON POST /rd/5a3f, no ep, mid 0x3003, token 07. */
static const uint8_t update[] = {
	0x41, 0x02, 0x30, 0x03, 0x07,
	0xb2, 'r', 'd', 0x04, '5', 'a', '3', 'f',
};

/* CON POST /rd?ep=meter-0001&ep=meter-0002: two claims. */
static const uint8_t register_twice[] = {
	0x40, 0x02, 0x40, 0x04,
	0xb2, 'r', 'd',
	0x4d, 0x00, 'e', 'p', '=', 'm', 'e', 't', 'e', 'r', '-', '0', '0', '0', '1',
	0x0d, 0x00, 'e', 'p', '=', 'm', 'e', 't', 'e', 'r', '-', '0', '0', '0', '2',
};

/* CON GET /bs/meter-0003/x, mid 0x5005. */
static const uint8_t get_path[] = {
	0x40, 0x01, 0x50, 0x05,
	0xb2, 'b', 's', 0x0a, 'm', 'e', 't', 'e', 'r', '-', '0', '0', '0', '3',
	0x01, 'x',
};

static const uint8_t ping_7777[] = { 0x40, 0x00, 0x77, 0x77 };
static const uint8_t ack_7777[] = { 0x60, 0x00, 0x77, 0x77 };
static const uint8_t rst_7777[] = { 0x70, 0x00, 0x77, 0x77 };
static const uint8_t ack_7778[] = { 0x60, 0x00, 0x77, 0x78 };
static const uint8_t content_ack_1001[] = { 0x62, 0x45, 0x10, 0x01, 0xa1, 0xb2, 0xff, '1' };
static const uint8_t non_get[] = { 0x50, 0x01, 0x60, 0x06, 0xb1, 'a' };
static const uint8_t malformed_tkl9[] = { 0x49, 0x01, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
static const uint8_t malformed_marker[] = { 0x40, 0x01, 0, 1, 0xff };

static int identify(const uint8_t *msg, size_t len, char *id, size_t *id_len)
{
	return psktun_plugin.identify(fx.tunnel_data, NULL, msg, len, id, id_len);
}

static void test_exports_abi_struct_named_coap(void **state)
{
	assert_int_equal(psktun_plugin.abi, PSKTUN_PLUGIN_ABI);
	assert_int_equal(psktun_plugin.size, sizeof(struct psktun_plugin));
	assert_string_equal(psktun_plugin.name, "coap");
	assert_non_null(psktun_plugin.init);
	assert_non_null(psktun_plugin.identify);
	assert_non_null(psktun_plugin.on_plain);
	assert_non_null(psktun_plugin.on_tunnel);
	assert_non_null(psktun_plugin.on_session_timer);
}

static void test_init_accepts_the_documented_options(void **state)
{
	static const struct psktun_option opts[] = {
		{ "identity", "path:2" },
		{ "answer_timeout_ms", "0" },
	};
	static const struct psktun_option max[] = {
		{ "identity", "query:endpoint_name" },
		{ "answer_timeout_ms", "3600000" },
	};

	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	teardown(NULL);
	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, opts, 2), 0);
	teardown(NULL);
	assert_int_equal(open_tunnel(PSKTUN_ROLE_TERMINATOR, max, 2), 0);
	assert_int_equal(F.n_log, 0);
}

static void test_init_rejects_unknown_option_with_a_log_line(void **state)
{
	static const struct psktun_option opts[] = {
		{ "identity", "query:ep" },
		{ "identitiy", "query:ep" },
	};

	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, opts, 2), -EINVAL);
	assert_null(fx.tunnel_data);
	assert_int_equal(F.n_log, 1);
	assert_int_equal(F.log_level, PSKTUN_LOG_ERR);
	assert_non_null(strstr(F.log, "unknown option \"identitiy\""));
}

static void test_init_rejects_bad_identity_specs(void **state)
{
	static const char *const bad[] = {
		"", "ep", "query:", "query:a=b", "query:a&b", "path:", "path:0",
		"path:-1", "path:x", "path:65", "path:1x", "Query:ep", "header:ep",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct psktun_option opt = { "identity", bad[i] };

		if (open_tunnel(PSKTUN_ROLE_GATEWAY, &opt, 1) != -EINVAL)
			fail_msg("identity = \"%s\" accepted", bad[i]);
		assert_int_equal(F.n_log, 1);
		assert_int_equal(F.log_level, PSKTUN_LOG_ERR);
	}
}

static void test_init_rejects_bad_answer_timeouts(void **state)
{
	static const char *const bad[] = { "", "-1", "30s", "3600001", "99999999999999999999" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const struct psktun_option opt = { "answer_timeout_ms", bad[i] };

		if (open_tunnel(PSKTUN_ROLE_GATEWAY, &opt, 1) != -EINVAL)
			fail_msg("answer_timeout_ms = \"%s\" accepted", bad[i]);
		assert_int_equal(F.n_log, 1);
	}
}

static void test_identify_returns_the_ep_query_value(void **state)
{
	char id[64];
	size_t id_len = sizeof(id);

	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(identify(register_0002, sizeof(register_0002), id, &id_len), 0);
	assert_int_equal(id_len, 10);
	assert_memory_equal(id, "meter-0002", 10);
	id_len = sizeof(id);
	assert_int_equal(identify(register_0001, sizeof(register_0001), id, &id_len), 0);
	assert_int_equal(id_len, 10);
	assert_memory_equal(id, "meter-0001", 10);
}

/* What libcoap 4.3.1 sends for `coap-client-notls -m post -e '</1/0>'
 * 'coap://127.0.0.1:25700/rd?ep=meter-0001&lt=300&b=U'` and for
 * '.../bs/meter-0001': Uri-Port (7) comes first. */
static void test_identify_reads_libcoap_client_requests(void **state)
{
	static const uint8_t rd[] = {
		0x41, 0x02, 0xc6, 0x50, 0x01, 0x72, 0x64, 0x64, 0x42, 0x72, 0x64,
		0x4d, 0x00, 0x65, 0x70, 0x3d, 0x6d, 0x65, 0x74, 0x65, 0x72, 0x2d,
		0x30, 0x30, 0x30, 0x31, 0x06, 0x6c, 0x74, 0x3d, 0x33, 0x30, 0x30,
		0x03, 0x62, 0x3d, 0x55, 0xff, 0x3c, 0x2f, 0x31, 0x2f, 0x30, 0x3e,
	};
	static const uint8_t bs[] = {
		0x41, 0x02, 0x59, 0x73, 0x01, 0x72, 0x64, 0x64, 0x42, 0x62, 0x73,
		0x0a, 0x6d, 0x65, 0x74, 0x65, 0x72, 0x2d, 0x30, 0x30, 0x30, 0x31,
		0xff, 0x3c, 0x2f, 0x31, 0x2f, 0x30, 0x3e,
	};
	static const struct psktun_option path2[] = { { "identity", "path:2" } };
	char id[64];
	size_t id_len = sizeof(id);

	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(identify(rd, sizeof(rd), id, &id_len), 0);
	assert_int_equal(id_len, 10);
	assert_memory_equal(id, "meter-0001", 10);
	teardown(NULL);
	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, path2, 1), 0);
	id_len = sizeof(id);
	assert_int_equal(identify(bs, sizeof(bs), id, &id_len), 0);
	assert_int_equal(id_len, 10);
	assert_memory_equal(id, "meter-0001", 10);
}

static void test_identify_names_nobody_without_a_value(void **state)
{
	char id[64];
	size_t id_len = sizeof(id);

	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(identify(update, sizeof(update), id, &id_len), -ENOENT);
	assert_int_equal(identify(ping_7777, sizeof(ping_7777), id, &id_len), -ENOENT);
	/* A response names nobody, whatever it carries. */
	assert_int_equal(identify(content_ack_1001, sizeof(content_ack_1001), id, &id_len),
			 -ENOENT);
	/* Two different ep values: ambiguous. */
	assert_int_equal(identify(register_twice, sizeof(register_twice), id, &id_len),
			 -ENOENT);
	/* No room for the value. */
	id_len = 9;
	assert_int_equal(identify(register_0002, sizeof(register_0002), id, &id_len),
			 -ENOENT);
	assert_int_equal(id_len, 9);
}

static void test_identify_ignores_other_query_parameters(void **state)
{
	/* CON POST /rd?epx=meter-0002&e: "e" ends the datagram, so comparing
	 * "ep" past its end would show under the sanitizers. */
	static const uint8_t msg[] = {
		0x40, 0x02, 0x60, 0x06,
		0xb2, 'r', 'd',
		0x4d, 0x01, 'e', 'p', 'x', '=', 'm', 'e', 't', 'e', 'r', '-', '0', '0', '0', '2',
		0x01, 'e',
	};
	char id[64];
	size_t id_len = sizeof(id);

	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(identify(msg, sizeof(msg), id, &id_len), -ENOENT);
	teardown(NULL);
	open_with_ep(PSKTUN_ROLE_TERMINATOR);
	assert_int_equal(TUNNEL(msg), PSKTUN_FORWARD);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_NONE);
}

static void test_identify_rejects_malformed_with_ebadmsg(void **state)
{
	char id[64];
	size_t id_len = sizeof(id);

	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(identify(malformed_tkl9, sizeof(malformed_tkl9), id, &id_len),
			 -EBADMSG);
	assert_int_equal(identify(malformed_marker, sizeof(malformed_marker), id, &id_len),
			 -EBADMSG);
}

static void test_identify_returns_the_nth_uri_path_segment(void **state)
{
	static const struct psktun_option path2[] = { { "identity", "path:2" } };
	static const struct psktun_option path4[] = { { "identity", "path:4" } };
	char id[64];
	size_t id_len = sizeof(id);

	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, path2, 1), 0);
	assert_int_equal(identify(get_path, sizeof(get_path), id, &id_len), 0);
	assert_int_equal(id_len, 10);
	assert_memory_equal(id, "meter-0003", 10);
	teardown(NULL);
	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, path4, 1), 0);
	id_len = sizeof(id);
	assert_int_equal(identify(get_path, sizeof(get_path), id, &id_len), -ENOENT);
}

static void test_identify_without_identity_option_names_nobody(void **state)
{
	char id[64];
	size_t id_len = sizeof(id);

	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(identify(register_0002, sizeof(register_0002), id, &id_len),
			 -ENOENT);
}

static void test_terminator_answers_con_for_another_identity_with_403(void **state)
{
	open_with_ep(PSKTUN_ROLE_TERMINATOR);
	assert_int_equal(TUNNEL(register_0002), PSKTUN_REPLY);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(fx.len, sizeof(forbidden_1001));
	assert_memory_equal(fx.buf, forbidden_1001, sizeof(forbidden_1001));
}

static void test_terminator_drops_non_for_another_identity(void **state)
{
	open_with_ep(PSKTUN_ROLE_TERMINATOR);
	assert_int_equal(TUNNEL(register_0002_non), PSKTUN_DROP);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(fx.len, sizeof(register_0002_non));
	assert_memory_equal(fx.buf, register_0002_non, sizeof(register_0002_non));
}

static void test_terminator_refuses_conflicting_ep_values(void **state)
{
	static const uint8_t forbidden_4004[] = { 0x60, 0x83, 0x40, 0x04 };

	open_with_ep(PSKTUN_ROLE_TERMINATOR);
	assert_int_equal(TUNNEL(register_twice), PSKTUN_REPLY);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(fx.len, sizeof(forbidden_4004));
	assert_memory_equal(fx.buf, forbidden_4004, sizeof(forbidden_4004));
}

static void test_terminator_forwards_own_identity_and_requests_without_ep(void **state)
{
	open_with_ep(PSKTUN_ROLE_TERMINATOR);
	assert_int_equal(TUNNEL(register_0001), PSKTUN_FORWARD);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_NONE);
	assert_int_equal(fx.len, sizeof(register_0001));
	assert_memory_equal(fx.buf, register_0001, sizeof(register_0001));
	assert_int_equal(TUNNEL(update), PSKTUN_FORWARD);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_NONE);
	assert_int_equal(fx.len, sizeof(update));
	/* The backend may name anybody in its requests to the meter. */
	assert_int_equal(PLAIN(register_0002), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 0);
}

static void test_terminator_without_identity_option_forwards_any_ep(void **state)
{
	assert_int_equal(open_tunnel(PSKTUN_ROLE_TERMINATOR, NULL, 0), 0);
	assert_int_equal(TUNNEL(register_0002), PSKTUN_FORWARD);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_NONE);
}

static void test_gateway_answers_meter_naming_another_identity_with_403(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(register_0002), PSKTUN_REPLY);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(fx.len, sizeof(forbidden_1001));
	assert_memory_equal(fx.buf, forbidden_1001, sizeof(forbidden_1001));
	/* Refused locally: nothing went out, nothing waits for an answer. */
	assert_int_equal(F.n_session_timer, 0);
	assert_int_equal(PLAIN(register_0002_non), PSKTUN_DROP);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_POLICY);
}

/* The daemon refuses the identity this request claims (a `meters` entry
 * pins it to another source): 4.03 for a CON, a NON dropped. */
static void test_gateway_refused_identity_gets_403(void **state)
{
	static const uint8_t forbidden_2002[] = { 0x60, 0x83, 0x20, 0x02 };
	static const uint8_t register_0001_non[] = {
		0x50, 0x02, 0x20, 0x03,
		0xb2, 'r', 'd',
		0x0d, 0x00, 'e', 'p', '=', 'm', 'e', 't', 'e', 'r', '-', '0', '0', '0', '1',
	};

	open_with_ep(PSKTUN_ROLE_GATEWAY);
	load(register_0001, sizeof(register_0001));
	fx.ctx.session = NULL;
	fx.ctx.session_data = NULL;
	fx.ctx.flags = PSKTUN_DGRAM_IDENTITY_REFUSED;
	assert_int_equal(psktun_plugin.on_plain(&fx.ctx, fx.buf, &fx.len, sizeof(fx.buf)),
			 PSKTUN_REPLY);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(fx.len, sizeof(forbidden_2002));
	assert_memory_equal(fx.buf, forbidden_2002, sizeof(forbidden_2002));
	load(register_0001_non, sizeof(register_0001_non));
	fx.ctx.session = NULL;
	fx.ctx.session_data = NULL;
	fx.ctx.flags = PSKTUN_DGRAM_IDENTITY_REFUSED;
	assert_int_equal(psktun_plugin.on_plain(&fx.ctx, fx.buf, &fx.len, sizeof(fx.buf)),
			 PSKTUN_DROP);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(F.n_session_timer, 0);
}

static void test_gateway_forwards_own_identity_and_cloud_requests(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(register_0001), PSKTUN_FORWARD);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_NONE);
	assert_memory_equal(fx.buf, register_0001, sizeof(register_0001));
	/* The cloud's requests toward the meter are not checked. */
	assert_int_equal(TUNNEL(register_0002), PSKTUN_FORWARD);
}

/* --- one identity, stated once, in one place (issue 10, item 6) --- */

#define OPT_URI_HOST	3
#define OPT_PROXY_URI	35
#define OPT_PROXY_SCHEME 39

struct topt {
	uint16_t number;
	const char *value;
};

#define SHAPE(...) ((const struct topt[]){ __VA_ARGS__ }), \
	sizeof((const struct topt[]){ __VA_ARGS__ }) / sizeof(struct topt)

/* CON POST, mid 0x7007, token 77, with these options (in number order). */
static size_t build(uint8_t *buf, size_t cap, const struct topt *o, size_t n)
{
	static const uint8_t token[] = { 0x77 };
	uint16_t prev = 0;
	size_t pos;
	int h;

	h = coap_write_header(buf, cap, COAP_CON, COAP_CODE(0, 2), 0x7007, token, 1);
	assert_true(h > 0);
	pos = (size_t)h;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(coap_write_option(buf, cap, &pos, &prev, o[i].number,
						   (const uint8_t *)o[i].value,
						   (uint16_t)strlen(o[i].value)), 0);
	return pos;
}

/*
 * A request the session meter-0001 sends must be refused with 4.03 at the
 * gateway (from the meter) and at the terminator (out of the session), and
 * name nobody to identify() at the gateway. Every shape is tried; each miss
 * is printed (`what` names the shape) and counted in `misses`.
 */
static unsigned misses;

static void refused(const struct psktun_option *opt, const char *what,
		    const struct topt *o, size_t n)
{
	static const uint8_t forbidden_7007[] = { 0x61, 0x83, 0x70, 0x07, 0x77 };
	static const enum psktun_role roles[] = { PSKTUN_ROLE_GATEWAY, PSKTUN_ROLE_TERMINATOR };
	uint8_t msg[512];
	size_t len = build(msg, sizeof(msg), o, n);
	char id[64];
	size_t id_len = sizeof(id);
	enum psktun_verdict v;

	for (size_t r = 0; r < 2; r++) {
		assert_int_equal(open_tunnel(roles[r], opt, 1), 0);
		v = roles[r] == PSKTUN_ROLE_GATEWAY ? plain(msg, len) : from_tunnel(msg, len);
		if (v != PSKTUN_REPLY || fx.ctx.reason != PSKTUN_REASON_POLICY ||
		    fx.len != sizeof(forbidden_7007) ||
		    memcmp(fx.buf, forbidden_7007, sizeof(forbidden_7007)) != 0) {
			print_message("not refused: %s (%s): verdict %d, reason %d, %zu bytes\n",
				      what, roles[r] == PSKTUN_ROLE_GATEWAY ? "gateway" : "terminator",
				      (int)v, (int)fx.ctx.reason, fx.len);
			misses++;
		}
		if (roles[r] == PSKTUN_ROLE_GATEWAY &&
		    identify(msg, len, id, &id_len) != -ENOENT) {
			print_message("identified: %s names '%.*s'\n", what, (int)id_len, id);
			misses++;
		}
		teardown(NULL);
	}
}

static const struct psktun_option ep_opt = { "identity", "query:ep" };
static const struct psktun_option path2_opt = { "identity", "path:2" };

static void test_query_identity_in_one_option_with_another_parameter_is_refused(void **state)
{
	misses = 0;
	refused(&ep_opt, "lt=300&ep=meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" }, { COAP_OPT_URI_QUERY, "lt=300&ep=meter-0002" }));
	refused(&ep_opt, "ep=meter-0001, lt=300&ep=meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" }, { COAP_OPT_URI_QUERY, "ep=meter-0001" },
			     { COAP_OPT_URI_QUERY, "lt=300&ep=meter-0002" }));
	refused(&ep_opt, "ep=meter-0001&lt=300",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" }, { COAP_OPT_URI_QUERY, "ep=meter-0001&lt=300" }));
	refused(&ep_opt, "ep=meter-0001;ep=meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" },
			     { COAP_OPT_URI_QUERY, "ep=meter-0001;ep=meter-0002" }));
	assert_int_equal(misses, 0);
}

static void test_query_name_in_another_case_or_spelling_is_refused(void **state)
{
	misses = 0;
	refused(&ep_opt, "EP=meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" }, { COAP_OPT_URI_QUERY, "EP=meter-0002" }));
	refused(&ep_opt, "ep=meter-0001, Ep=meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" }, { COAP_OPT_URI_QUERY, "ep=meter-0001" },
			     { COAP_OPT_URI_QUERY, "Ep=meter-0002" }));
	refused(&ep_opt, "%65p=meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" }, { COAP_OPT_URI_QUERY, "%65p=meter-0002" }));
	refused(&ep_opt, "' ep=meter-0002'",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" }, { COAP_OPT_URI_QUERY, " ep=meter-0002" }));
	assert_int_equal(misses, 0);
}

static void test_query_identity_stated_twice_is_refused_even_if_equal(void **state)
{
	misses = 0;
	refused(&ep_opt, "ep=meter-0001 twice",
		       SHAPE({ COAP_OPT_URI_PATH, "rd" }, { COAP_OPT_URI_QUERY, "ep=meter-0001" },
			     { COAP_OPT_URI_QUERY, "ep=meter-0001" }));
	assert_int_equal(misses, 0);
}

static void test_proxy_options_are_refused(void **state)
{
	misses = 0;
	refused(&ep_opt, "Proxy-Uri with ep=meter-0002",
		       SHAPE({ OPT_PROXY_URI, "coap://cloud/rd?ep=meter-0002" }));
	refused(&ep_opt, "Proxy-Uri beside the own ep",
		       SHAPE({ COAP_OPT_URI_QUERY, "ep=meter-0001" },
			     { OPT_PROXY_URI, "coap://cloud/rd?ep=meter-0002" }));
	refused(&ep_opt, "Proxy-Scheme with Uri-Host",
		       SHAPE({ OPT_URI_HOST, "meter-0002.cloud" }, { COAP_OPT_URI_PATH, "rd" },
			     { COAP_OPT_URI_QUERY, "ep=meter-0001" }, { OPT_PROXY_SCHEME, "coap" }));
	refused(&path2_opt, "Proxy-Uri, path:2",
		       SHAPE({ OPT_PROXY_URI, "coap://cloud/bs/meter-0002" }));
	assert_int_equal(misses, 0);
}

static void test_path_segments_that_read_otherwise_are_refused(void **state)
{
	misses = 0;
	refused(&path2_opt, "one segment rd/meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "rd/meter-0002" }));
	refused(&path2_opt, "bs, meter-0001/../../bs/meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "bs" },
			     { COAP_OPT_URI_PATH, "meter-0001/../../bs/meter-0002" }));
	refused(&path2_opt, "bs, meter-0001, .., .., bs, meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "bs" }, { COAP_OPT_URI_PATH, "meter-0001" },
			     { COAP_OPT_URI_PATH, ".." }, { COAP_OPT_URI_PATH, ".." },
			     { COAP_OPT_URI_PATH, "bs" }, { COAP_OPT_URI_PATH, "meter-0002" }));
	refused(&path2_opt, "., meter-0001, meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "." }, { COAP_OPT_URI_PATH, "meter-0001" },
			     { COAP_OPT_URI_PATH, "meter-0002" }));
	refused(&path2_opt, "(empty), meter-0001, meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "" }, { COAP_OPT_URI_PATH, "meter-0001" },
			     { COAP_OPT_URI_PATH, "meter-0002" }));
	refused(&path2_opt, "bs, meter-0001, %2e%2e, %2e%2e, bs, meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "bs" }, { COAP_OPT_URI_PATH, "meter-0001" },
			     { COAP_OPT_URI_PATH, "%2e%2e" }, { COAP_OPT_URI_PATH, "%2e%2e" },
			     { COAP_OPT_URI_PATH, "bs" }, { COAP_OPT_URI_PATH, "meter-0002" }));
	/* In query mode, a segment that reads as the start of a query. */
	refused(&ep_opt, "segment rd?ep=meter-0002",
		       SHAPE({ COAP_OPT_URI_PATH, "rd?ep=meter-0002" }));
	refused(&ep_opt, "segment .. before rd",
		       SHAPE({ COAP_OPT_URI_PATH, ".." }, { COAP_OPT_URI_PATH, "rd" },
			     { COAP_OPT_URI_QUERY, "ep=meter-0001" }));
	assert_int_equal(misses, 0);
}

/* What stays allowed: the identity once where configured, other parameters
 * in options of their own, a trailing empty segment, no identity at all. */
static void test_unambiguous_requests_still_pass(void **state)
{
	uint8_t msg[512];
	size_t len;
	char id[64];
	size_t id_len = sizeof(id);

	len = build(msg, sizeof(msg), SHAPE({ OPT_URI_HOST, "cloud" }, { COAP_OPT_URI_PATH, "rd" },
					    { COAP_OPT_URI_QUERY, "ep=meter-0001" },
					    { COAP_OPT_URI_QUERY, "lt=300" },
					    { COAP_OPT_URI_QUERY, "epx=1" }));
	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, &ep_opt, 1), 0);
	assert_int_equal(identify(msg, len, id, &id_len), 0);
	assert_int_equal(id_len, 10);
	assert_memory_equal(id, "meter-0001", 10);
	assert_int_equal(plain(msg, len), PSKTUN_FORWARD);
	teardown(NULL);
	assert_int_equal(open_tunnel(PSKTUN_ROLE_TERMINATOR, &ep_opt, 1), 0);
	assert_int_equal(from_tunnel(msg, len), PSKTUN_FORWARD);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_NONE);
	teardown(NULL);

	len = build(msg, sizeof(msg), SHAPE({ COAP_OPT_URI_PATH, "bs" },
					    { COAP_OPT_URI_PATH, "meter-0001" },
					    { COAP_OPT_URI_PATH, "" }));
	assert_int_equal(open_tunnel(PSKTUN_ROLE_TERMINATOR, &path2_opt, 1), 0);
	assert_int_equal(from_tunnel(msg, len), PSKTUN_FORWARD);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_NONE);
}

/* allow_proxy = true: Proxy-Uri and Proxy-Scheme pass (unchecked). */
static void test_allow_proxy_forwards_proxy_options(void **state)
{
	static const struct psktun_option opts[] = {
		{ "identity", "query:ep" },
		{ "allow_proxy", "true" },
	};
	static const struct psktun_option bad = { "allow_proxy", "yes" };
	uint8_t msg[512];
	size_t len = build(msg, sizeof(msg), SHAPE({ OPT_PROXY_URI, "coap://cloud/rd?x=1" }));

	assert_int_equal(open_tunnel(PSKTUN_ROLE_TERMINATOR, opts, 2), 0);
	assert_int_equal(from_tunnel(msg, len), PSKTUN_FORWARD);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_NONE);
	teardown(NULL);
	assert_int_equal(open_tunnel(PSKTUN_ROLE_TERMINATOR, &bad, 1), -EINVAL);
}

static void test_ping_is_forwarded_both_ways(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(fx.len, 4);
	assert_int_equal(TUNNEL(rst_7777), PSKTUN_FORWARD);
	teardown(NULL);
	open_with_ep(PSKTUN_ROLE_TERMINATOR);
	assert_int_equal(TUNNEL(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(PLAIN(rst_7777), PSKTUN_FORWARD);
}

static void test_malformed_is_dropped_both_ways(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(malformed_tkl9), PSKTUN_DROP);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_MALFORMED);
	assert_int_equal(TUNNEL(malformed_marker), PSKTUN_DROP);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_MALFORMED);
	teardown(NULL);
	open_with_ep(PSKTUN_ROLE_TERMINATOR);
	assert_int_equal(TUNNEL(malformed_tkl9), PSKTUN_DROP);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_MALFORMED);
	assert_int_equal(PLAIN(malformed_marker), PSKTUN_DROP);
	assert_int_equal(fx.ctx.reason, PSKTUN_REASON_MALFORMED);
}

static void test_unanswered_con_reports_silent_after_default_30s(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 1);
	assert_int_equal(F.session_timer_ms, 30000);
	F.now = 31000;
	psktun_plugin.on_session_timer(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_silent, 1);
	/* Nothing left to wait for: the fired timer is not armed again. */
	assert_int_equal(F.n_session_timer, 1);
	/* A late ACK changes nothing. */
	assert_int_equal(TUNNEL(ack_7777), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 1);
	assert_int_equal(F.n_silent, 1);
}

static void test_ack_clears_the_pending_con(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(register_0001), PSKTUN_FORWARD);
	assert_int_equal(F.session_timer_ms, 30000);
	F.now = 2000;
	/* A piggybacked response is an ACK too; this one's mid differs. */
	assert_int_equal(TUNNEL(content_ack_1001), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 1);
	assert_int_equal(TUNNEL(((const uint8_t[]){ 0x60, 0x45, 0x20, 0x02 })),
			 PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 2);
	assert_int_equal(F.session_timer_ms, 0);
	F.now = 31000;
	psktun_plugin.on_session_timer(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_silent, 0);
}

static void test_rst_clears_the_pending_con(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(TUNNEL(rst_7777), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 2);
	assert_int_equal(F.session_timer_ms, 0);
	F.now = 31000;
	psktun_plugin.on_session_timer(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_silent, 0);
}

static void test_ack_for_another_mid_leaves_the_con_pending(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(TUNNEL(ack_7778), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 1);
	F.now = 31000;
	psktun_plugin.on_session_timer(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_silent, 1);
}

static void test_retransmission_keeps_the_first_deadline(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	F.now = 3000;
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 1);
	assert_int_equal(F.session_timer_ms, 30000);
	F.now = 31000;
	psktun_plugin.on_session_timer(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_silent, 1);
	/* One entry, not two: nothing is left to arm the timer for. */
	assert_int_equal(F.n_session_timer, 1);
}

static void test_timer_rearms_for_the_next_deadline(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	F.now = 11000;
	assert_int_equal(PLAIN(register_0001), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 1);
	F.now = 31000;
	psktun_plugin.on_session_timer(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_silent, 1);
	assert_int_equal(F.n_session_timer, 2);
	assert_int_equal(F.session_timer_ms, 10000);
	/* A timer that fires early reports nothing and re-arms. */
	F.now = 40000;
	psktun_plugin.on_session_timer(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_silent, 1);
	assert_int_equal(F.n_session_timer, 3);
	assert_int_equal(F.session_timer_ms, 1000);
}

static void test_full_table_keeps_oldest_and_does_not_grow(void **state)
{
	uint8_t con[4] = { 0x40, 0x00, 0x00, 0x00 };
	uint8_t ack[4] = { 0x60, 0x00, 0x00, 0x00 };

	open_with_ep(PSKTUN_ROLE_GATEWAY);
	for (uint8_t mid = 1; mid <= 8; mid++) {
		con[3] = mid;
		F.now = 1000 + mid;
		assert_int_equal(PLAIN(con), PSKTUN_FORWARD);
	}
	assert_int_equal(F.n_session_timer, 1);
	assert_int_equal(F.session_timer_ms, 30000);
	/* The ninth is not tracked. */
	con[3] = 9;
	F.now = 2000;
	assert_int_equal(PLAIN(con), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 1);
	for (uint8_t mid = 1; mid <= 8; mid++) {
		ack[3] = mid;
		assert_int_equal(TUNNEL(ack), PSKTUN_FORWARD);
	}
	assert_int_equal(F.session_timer_ms, 0);
	F.now = 40000;
	psktun_plugin.on_session_timer(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_silent, 0);
}

static void test_non_and_refused_cons_are_not_tracked(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(non_get), PSKTUN_FORWARD);
	assert_int_equal(PLAIN(register_0002), PSKTUN_REPLY);
	assert_int_equal(F.n_session_timer, 0);
}

static void test_answer_timeout_option_sets_the_deadline(void **state)
{
	static const struct psktun_option opts[] = { { "answer_timeout_ms", "5000" } };

	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, opts, 1), 0);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(F.session_timer_ms, 5000);
}

static void test_answer_timeout_0_turns_tracking_off(void **state)
{
	static const struct psktun_option opts[] = { { "answer_timeout_ms", "0" } };

	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, opts, 1), 0);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 0);
}

static void test_terminator_does_not_track_backend_cons(void **state)
{
	open_with_ep(PSKTUN_ROLE_TERMINATOR);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 0);
}

static void test_session_close_cancels_an_armed_timer(void **state)
{
	open_with_ep(PSKTUN_ROLE_GATEWAY);
	assert_int_equal(PLAIN(ping_7777), PSKTUN_FORWARD);
	assert_int_equal(F.n_session_timer, 1);
	psktun_plugin.session_close(fx.tunnel_data, &F.a, fx.session_data);
	assert_int_equal(F.n_session_timer, 2);
	assert_int_equal(F.session_timer_ms, 0);
	psktun_plugin.fini(fx.tunnel_data);
	fx.tunnel_data = NULL;
}

/* -n, start and reload ask check_options; init uses the same parser. */
static void test_check_options_refuses_what_init_refuses_with_one_sentence(void **state)
{
	const struct psktun_option good[] = { { "identity", "query:ep" }, { "answer_timeout_ms", "0" } };
	const struct psktun_option bad[] = { { "answer_timeout_ms", "banana" } };
	const struct psktun_option unknown[] = { { "colour", "red" } };
	char err[256] = "";

	(void)state;
	assert_int_equal(psktun_plugin.check_options(PSKTUN_ROLE_GATEWAY, good, 2, err, sizeof(err)), 0);
	assert_int_equal(psktun_plugin.check_options(PSKTUN_ROLE_TERMINATOR, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(psktun_plugin.check_options(PSKTUN_ROLE_GATEWAY, bad, 1, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "answer_timeout_ms = \"banana\": expected milliseconds from 0 (off) to 3600000");
	assert_int_equal(psktun_plugin.check_options(PSKTUN_ROLE_TERMINATOR, unknown, 1, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "unknown option \"colour\" (known: identity, allow_proxy, answer_timeout_ms)");
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_exports_abi_struct_named_coap),
		T(test_check_options_refuses_what_init_refuses_with_one_sentence),
		T(test_init_accepts_the_documented_options),
		T(test_init_rejects_unknown_option_with_a_log_line),
		T(test_init_rejects_bad_identity_specs),
		T(test_init_rejects_bad_answer_timeouts),
		T(test_identify_returns_the_ep_query_value),
		T(test_identify_reads_libcoap_client_requests),
		T(test_identify_names_nobody_without_a_value),
		T(test_identify_ignores_other_query_parameters),
		T(test_identify_rejects_malformed_with_ebadmsg),
		T(test_identify_returns_the_nth_uri_path_segment),
		T(test_identify_without_identity_option_names_nobody),
		T(test_terminator_answers_con_for_another_identity_with_403),
		T(test_terminator_drops_non_for_another_identity),
		T(test_terminator_refuses_conflicting_ep_values),
		T(test_terminator_forwards_own_identity_and_requests_without_ep),
		T(test_terminator_without_identity_option_forwards_any_ep),
		T(test_gateway_answers_meter_naming_another_identity_with_403),
		T(test_gateway_refused_identity_gets_403),
		T(test_gateway_forwards_own_identity_and_cloud_requests),
		T(test_query_identity_in_one_option_with_another_parameter_is_refused),
		T(test_query_name_in_another_case_or_spelling_is_refused),
		T(test_query_identity_stated_twice_is_refused_even_if_equal),
		T(test_proxy_options_are_refused),
		T(test_path_segments_that_read_otherwise_are_refused),
		T(test_unambiguous_requests_still_pass),
		T(test_allow_proxy_forwards_proxy_options),
		T(test_ping_is_forwarded_both_ways),
		T(test_malformed_is_dropped_both_ways),
		T(test_unanswered_con_reports_silent_after_default_30s),
		T(test_ack_clears_the_pending_con),
		T(test_rst_clears_the_pending_con),
		T(test_ack_for_another_mid_leaves_the_con_pending),
		T(test_retransmission_keeps_the_first_deadline),
		T(test_timer_rearms_for_the_next_deadline),
		T(test_full_table_keeps_oldest_and_does_not_grow),
		T(test_non_and_refused_cons_are_not_tracked),
		T(test_answer_timeout_option_sets_the_deadline),
		T(test_answer_timeout_0_turns_tracking_off),
		T(test_terminator_does_not_track_backend_cons),
		T(test_session_close_cancels_an_armed_timer),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
