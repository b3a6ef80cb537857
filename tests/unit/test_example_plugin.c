/* test_example_plugin: the example plugin's options and verdicts, through the shared fake host. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "fake_host.h"

static const struct psktun_plugin *P = &psktun_plugin;
static void *td;

#define OPT(k, v) { .key = (k), .value = (v) }

static int open_tunnel(enum psktun_role role, const struct psktun_option *opts, size_t n)
{
	fake_host_reset(role);
	F.no_sends = true;
	td = NULL;
	return P->init(&fake_host, &F.tunnel, opts, n, &td);
}

static int teardown(void **state)
{
	if (td)
		P->fini(td);
	td = NULL;
	return 0;
}

/* A datagram of n bytes through on_plain (plain) or on_tunnel; ctx->reason in *reason. */
static enum psktun_verdict pass(bool plain, size_t n, enum psktun_reason *reason)
{
	struct psktun_dgram ctx = { .tunnel = &F.tunnel, .tunnel_data = td, .session = &F.a };
	static uint8_t buf[2048 + 256];
	size_t len = n;
	enum psktun_verdict v;

	memset(buf, 'x', n);
	v = plain ? P->on_plain(&ctx, buf, &len, sizeof(buf)) : P->on_tunnel(&ctx, buf, &len, sizeof(buf));
	assert_int_equal(len, n);	/* never rewritten */
	*reason = ctx.reason;
	return v;
}

static void declares_itself_with_the_macro(void **state)
{
	assert_int_equal(P->abi, PSKTUN_PLUGIN_ABI);
	assert_int_equal(P->size, sizeof(struct psktun_plugin));
	assert_string_equal(P->name, "example");
	assert_non_null(P->check_options);
	assert_null(P->identify);
	assert_null(P->session_open);
	for (size_t i = 0; i < sizeof(P->reserved) / sizeof(P->reserved[0]); i++)
		assert_null(P->reserved[i]);
}

static void check_options_takes_max_bytes_from_1_to_65535(void **state)
{
	const struct psktun_option ok[] = { OPT("max_bytes", "1") }, big[] = { OPT("max_bytes", "65535") };
	char err[256] = "";

	assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(P->check_options(PSKTUN_ROLE_TERMINATOR, ok, 1, err, sizeof(err)), 0);
	assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, big, 1, err, sizeof(err)), 0);
	assert_string_equal(err, "");
}

static void check_options_refuses_with_one_sentence(void **state)
{
	static const struct {
		struct psktun_option o;
		const char *err;
	} bad[] = {
		{ OPT("max_bytes", "0"), "max_bytes = \"0\": expected bytes from 1 to 65535" },
		{ OPT("max_bytes", "65536"), "max_bytes = \"65536\": expected bytes from 1 to 65535" },
		{ OPT("max_bytes", "-1"), "max_bytes = \"-1\": expected bytes from 1 to 65535" },
		{ OPT("max_bytes", "12k"), "max_bytes = \"12k\": expected bytes from 1 to 65535" },
		{ OPT("max_bytes", ""), "max_bytes = \"\": expected bytes from 1 to 65535" },
		{ OPT("max_bytes", NULL), "max_bytes = \"\": expected bytes from 1 to 65535" },
		{ OPT("max_bytes", "99999999999999999999999"),
		  "max_bytes = \"99999999999999999999999\": expected bytes from 1 to 65535" },
		{ OPT("colour", "red"), "unknown option \"colour\" (known: max_bytes)" },
	};
	char err[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, &bad[i].o, 1, err, sizeof(err)),
				 -EINVAL);
		assert_string_equal(err, bad[i].err);
		/* init() refuses the same, logs the same sentence once, keeps nothing */
		assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, &bad[i].o, 1), -EINVAL);
		assert_null(td);
		assert_int_equal(F.n_log, 1);
		assert_int_equal(F.log_level, PSKTUN_LOG_ERR);
		assert_string_equal(F.log, bad[i].err);
	}
	assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, &bad[0].o, 1, err, 8), -EINVAL);
	assert_string_equal(err, "max_byt");	/* cut to fit, terminated */
}

static void up_to_max_bytes_is_forwarded_both_ways(void **state)
{
	const struct psktun_option o[] = { OPT("max_bytes", "100") };
	enum psktun_reason reason;

	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, o, 1), 0);
	assert_int_equal(pass(true, 100, &reason), PSKTUN_FORWARD);
	assert_int_equal(reason, PSKTUN_REASON_NONE);
	assert_int_equal(pass(false, 1, &reason), PSKTUN_FORWARD);
	assert_int_equal(pass(false, 100, &reason), PSKTUN_FORWARD);
	assert_int_equal(F.n_log, 0);
}

static void one_byte_more_is_dropped_as_policy_and_the_first_drop_is_a_notice(void **state)
{
	const struct psktun_option o[] = { OPT("max_bytes", "100") };
	enum psktun_reason reason;

	assert_int_equal(open_tunnel(PSKTUN_ROLE_TERMINATOR, o, 1), 0);
	assert_int_equal(pass(true, 101, &reason), PSKTUN_DROP);
	assert_int_equal(reason, PSKTUN_REASON_POLICY);
	assert_int_equal(F.n_log, 1);
	assert_int_equal(F.log_level, PSKTUN_LOG_NOTICE);
	/* No "example:" of its own: the host adds "tunnel T: plugin example: ". */
	assert_string_equal(F.log, "dropped a datagram of 101 bytes (max_bytes = 100)");
	assert_int_equal(pass(false, 2048, &reason), PSKTUN_DROP);
	assert_int_equal(reason, PSKTUN_REASON_POLICY);
	assert_int_equal(F.n_log, 2);
	assert_int_equal(F.log_level, PSKTUN_LOG_DEBUG);
	assert_string_equal(F.log, "dropped a datagram of 2048 bytes (max_bytes = 100)");
}

static void without_options_the_default_is_1024(void **state)
{
	enum psktun_reason reason;

	assert_int_equal(open_tunnel(PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(pass(true, 1024, &reason), PSKTUN_FORWARD);
	assert_int_equal(pass(true, 1025, &reason), PSKTUN_DROP);
}

static void a_host_of_another_abi_is_refused(void **state)
{
	struct psktun_host old = fake_host;

	fake_host_reset(PSKTUN_ROLE_GATEWAY);
	td = NULL;
	old.abi = PSKTUN_PLUGIN_ABI - 1;
	assert_int_equal(P->init(&old, &F.tunnel, NULL, 0, &td), -EINVAL);
	old.abi = PSKTUN_PLUGIN_ABI;
	old.size = 8;
	assert_int_equal(P->init(&old, &F.tunnel, NULL, 0, &td), -EINVAL);
	assert_null(td);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(declares_itself_with_the_macro),
		cmocka_unit_test(check_options_takes_max_bytes_from_1_to_65535),
		cmocka_unit_test_teardown(check_options_refuses_with_one_sentence, teardown),
		cmocka_unit_test_teardown(up_to_max_bytes_is_forwarded_both_ways, teardown),
		cmocka_unit_test_teardown(one_byte_more_is_dropped_as_policy_and_the_first_drop_is_a_notice,
					  teardown),
		cmocka_unit_test_teardown(without_options_the_default_is_1024, teardown),
		cmocka_unit_test(a_host_of_another_abi_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
