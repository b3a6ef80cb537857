/* test_config: the configuration file: the schema, its defaults, path resolution, and every kind of error with its line. */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "addr.h"
#include "agent/config.h"	/* not the build's config.h */
#include "keys.h"
#include "expect_diag.h"
#include "tmpdir.h"

static struct psktun_diag diag;
static struct psktun_config *conf;
static char path[PATH_MAX];
static char cwd[PATH_MAX];

static int setup(void **state)
{
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	test_dir_make();
	psktun_diag_init(&diag);
	conf = NULL;
	return 0;
}

static int teardown(void **state)
{
	assert_int_equal(chdir(cwd), 0);
	psktun_config_free(conf);
	psktun_diag_deinit(&diag);
	test_dir_remove();
	return 0;
}

static int load(const char *text)
{
	FMT(path, "%s", test_write_str("psktun.conf", text, 0644));
	return psktun_config_load(path, &conf, &diag);
}

/* diag holds exactly these messages (expect_diag.h). */
#define expect_diag(...) expect_diag_of(&diag, path, __VA_ARGS__)

/* Loading must fail with exactly one problem. */
static void expect_one(const char *text, int line, const char *msg)
{
	assert_int_equal(load(text), -EINVAL);
	assert_null(conf);
	expect_diag(1, line, msg);
}

static const char *in_dir(const char *name)
{
	static char buf[PATH_MAX];

	FMT(buf, "%s/%s", test_dir, name);
	return buf;
}

#define HEAD "mode = \"gateway\";\nkeys = \"keys.psk\";\n"			/* lines 1-2 */
#define TUNNEL "tunnels = ( { name = \"t\"; accept = \"127.0.0.1:5683\"; connect = \"127.0.0.1:5684\"; } );\n"

static const char full[] =
	"# psktun test configuration\n"				/* 1 */
	"mode = \"gateway\";\n"
	"keys = \"keys.psk\";\n"
	"control = \"run/control\";\n"
	"plugin_dir = \"/opt/psktun/plugins\";\n"			/* 5 */
	"\n"
	"tunnels = (\n"
	"  {\n"
	"    name = \"coap\";\n"
	"    plugin = \"coap\";\n"					/* 10 */
	"    accept = \"0.0.0.0:5683\";\n"
	"    connect = \"coap.example.net:5684\";\n"
	"    options = { ep = \"ep\"; max_age = 60; ratio = 0.5; strict = true; big = 5000000000L; hex = 0x10; };\n"
	"  },\n"
	"  {\n"							/* 15 */
	"    name = \"mqtt-sn.1\";\n"
	"    accept = \"[::1]:1883\";\n"
	"    connect = \"[2001:db8::1]:1884\";\n"
	"  }\n"
	");\n"								/* 20 */
	"\n"
	"meters = (\n"
	"  { identity = \"meter-0001\"; source = \"192.168.10.21\"; },\n"
	"  { identity = \"meter-0002\"; source = \"192.168.10.22:5683\"; },\n"
	"  { identity = \"meter-0003\"; source = \"fd00::3\"; }\n"	/* 25 */
	");\n"
	"\n"
	"dtls = {\n"
	"  priority = \"NORMAL:+PSK\";\n"
	"  mtu = 1152;\n"						/* 30 */
	"  retransmit_ms = 2000;\n"
	"  handshake_timeout_s = 60;\n"
	"  idle_timeout_s = 300;\n"
	"  max_sessions = 500;\n"
	"  max_handshakes = 50;\n"					/* 35 */
	"  queue_len = 4;\n"
	"  queue_bytes = 131072;\n"
	"};\n";

static void full_configuration_loads_every_setting(void **state)
{
	char buf[PSKTUN_ADDRSTRLEN];
	struct psktun_conf_tunnel *t;

	assert_int_equal(load(full), 0);
	expect_diag(0);
	assert_non_null(conf);
	assert_string_equal(conf->path, path);
	assert_string_equal(conf->dir, test_dir);
	assert_int_equal(conf->mode, PSKTUN_MODE_GATEWAY);
	assert_string_equal(conf->keys, in_dir("keys.psk"));
	assert_int_equal(conf->keys_line, 3);
	assert_string_equal(conf->control, in_dir("run/control"));
	assert_string_equal(conf->plugin_dir, "/opt/psktun/plugins");

	assert_int_equal(conf->n_tunnels, 2);
	t = &conf->tunnels[0];
	assert_string_equal(t->name, "coap");
	assert_string_equal(t->plugin, "coap");
	assert_string_equal(t->accept, "0.0.0.0:5683");
	assert_string_equal(t->connect, "coap.example.net:5684");
	assert_int_equal(t->line, 8);
	assert_int_equal(t->n_options, 6);
	assert_string_equal(t->options[0].key, "ep");
	assert_string_equal(t->options[0].value, "ep");
	assert_string_equal(t->options[1].key, "max_age");
	assert_string_equal(t->options[1].value, "60");
	assert_string_equal(t->options[2].key, "ratio");
	assert_string_equal(t->options[2].value, "0.5");
	assert_string_equal(t->options[3].key, "strict");
	assert_string_equal(t->options[3].value, "true");
	assert_string_equal(t->options[4].key, "big");
	assert_string_equal(t->options[4].value, "5000000000");
	assert_string_equal(t->options[5].key, "hex");
	assert_string_equal(t->options[5].value, "16");
	t = &conf->tunnels[1];
	assert_string_equal(t->name, "mqtt-sn.1");
	assert_null(t->plugin);
	assert_string_equal(t->accept, "[::1]:1883");
	assert_string_equal(t->connect, "[2001:db8::1]:1884");
	assert_int_equal(t->n_options, 0);
	assert_int_equal(t->line, 15);

	assert_int_equal(conf->n_meters, 3);
	assert_string_equal(conf->meters[0].identity, "meter-0001");
	assert_string_equal(conf->meters[0].source, "192.168.10.21");
	assert_false(conf->meters[0].has_port);
	assert_string_equal(psktun_addr_format((struct sockaddr *)&conf->meters[0].addr, buf, sizeof(buf)),
			    "192.168.10.21:0");
	assert_int_equal(conf->meters[0].line, 23);
	assert_true(conf->meters[1].has_port);
	assert_string_equal(psktun_addr_format((struct sockaddr *)&conf->meters[1].addr, buf, sizeof(buf)),
			    "192.168.10.22:5683");
	assert_int_equal(conf->meters[1].line, 24);
	assert_false(conf->meters[2].has_port);
	assert_int_equal(conf->meters[2].addr.ss_family, AF_INET6);

	assert_string_equal(conf->dtls.priority, "NORMAL:+PSK");
	assert_int_equal(conf->dtls.mtu, 1152);
	assert_int_equal(conf->dtls.retransmit_ms, 2000);
	assert_int_equal(conf->dtls.handshake_timeout_s, 60);
	assert_int_equal(conf->dtls.idle_timeout_s, 300);
	assert_int_equal(conf->dtls.max_sessions, 500);
	assert_int_equal(conf->dtls.max_handshakes, 50);
	assert_int_equal(conf->dtls.queue_len, 4);
	assert_int_equal(conf->dtls.queue_bytes, 131072);
}

static void a_gateway_shakes_hands_with_fewer_at_once_by_default(void **state)
{
	assert_int_equal(load("mode = \"gateway\";\nkeys = \"/etc/psktun/keys.psk\";\n" TUNNEL), 0);
	assert_int_equal(conf->dtls.max_handshakes, 100);
}

static void minimal_terminator_gets_the_defaults(void **state)
{
	assert_int_equal(load("mode = \"terminator\";\nkeys = \"/etc/psktun/keys.psk\";\n" TUNNEL), 0);
	assert_int_equal(conf->mode, PSKTUN_MODE_TERMINATOR);
	assert_string_equal(conf->keys, "/etc/psktun/keys.psk");
	assert_null(conf->control);
	assert_string_equal(conf->plugin_dir, PSKTUN_PLUGINDIR);
	assert_int_equal(conf->n_meters, 0);
	assert_null(conf->meters);
	assert_int_equal(conf->n_tunnels, 1);
	assert_null(conf->tunnels[0].plugin);
	assert_null(conf->tunnels[0].options);
	assert_int_equal(conf->tunnels[0].n_options, 0);
	assert_null(conf->dtls.priority);
	assert_int_equal(conf->dtls.mtu, 1280);
	assert_int_equal(conf->dtls.retransmit_ms, 9000);
	assert_int_equal(conf->dtls.handshake_timeout_s, 120);
	assert_int_equal(conf->dtls.idle_timeout_s, 600);
	assert_int_equal(conf->dtls.max_sessions, 10000);
	assert_int_equal(conf->dtls.max_handshakes, 1000);
	assert_int_equal(conf->dtls.queue_len, 8);
	assert_int_equal(conf->dtls.queue_bytes, 4u << 20);
	assert_int_equal(conf->dtls.handshake_rate, 100);
	assert_int_equal(conf->dtls.handshake_burst, 1000);
	assert_int_equal(conf->dtls.path_timeout_s, 0);
}

static void gateway_without_meters_is_fine(void **state)
{
	assert_int_equal(load(HEAD TUNNEL "meters = ();\n"), 0);
	assert_int_equal(conf->n_meters, 0);
}

static void relative_paths_resolve_against_the_config_directory_even_from_elsewhere(void **state)
{
	char want[PATH_MAX];

	assert_int_equal(mkdir(in_dir("etc"), 0755), 0);
	test_write_str("etc/psktun.conf",
		       "mode = \"gateway\";\nkeys = \"keys.psk\";\ncontrol = \"../run/ctl\";\n"
		       "plugin_dir = \"plugins\";\n" TUNNEL, 0644);
	assert_int_equal(chdir(test_dir), 0);

	assert_int_equal(psktun_config_load("etc/psktun.conf", &conf, &diag), 0);
	assert_string_equal(conf->path, "etc/psktun.conf");
	assert_string_equal(conf->dir, in_dir("etc"));
	FMT(want, "%s/etc/keys.psk", test_dir);
	assert_string_equal(conf->keys, want);
	FMT(want, "%s/etc/../run/ctl", test_dir);
	assert_string_equal(conf->control, want);
	FMT(want, "%s/etc/plugins", test_dir);
	assert_string_equal(conf->plugin_dir, want);
	psktun_config_free(conf);
	conf = NULL;

	assert_int_equal(psktun_config_load("./etc/psktun.conf", &conf, &diag), 0);
	assert_string_equal(conf->dir, in_dir("etc"));
	psktun_config_free(conf);
	conf = NULL;

	assert_int_equal(chdir("etc"), 0);
	assert_int_equal(psktun_config_load("psktun.conf", &conf, &diag), 0);
	assert_string_equal(conf->dir, in_dir("etc"));
	FMT(want, "%s/etc/keys.psk", test_dir);
	assert_string_equal(conf->keys, want);
	expect_diag(0);
}

static void absolute_paths_are_kept(void **state)
{
	assert_int_equal(load("mode = \"gateway\";\nkeys = \"/etc/psktun/keys.psk\";\n"
			      "control = \"/run/psktun/control\";\n" TUNNEL), 0);
	assert_string_equal(conf->keys, "/etc/psktun/keys.psk");
	assert_string_equal(conf->control, "/run/psktun/control");
}

static void missing_file_is_enoent(void **state)
{
	FMT(path, "%s", in_dir("nope.conf"));
	assert_int_equal(psktun_config_load(path, &conf, &diag), -ENOENT);
	assert_null(conf);
	expect_diag(1, 0, "cannot open: No such file or directory");
}

static void syntax_error_names_its_line(void **state)
{
	expect_one(HEAD "\ncontrol = ;\n", 4, "syntax error");
}

static void setting_given_twice_names_the_second_line(void **state)
{
	expect_one(HEAD TUNNEL "mode = \"terminator\";\n", 4, "duplicate setting name");
}

static void unknown_settings_are_errors_at_every_level(void **state)
{
	assert_int_equal(load(HEAD
			      "colour = \"blue\";\n"						/* 3 */
			      "tunnels = ( { name = \"t\"; accept = \"127.0.0.1:1\";\n"
			      "  connect = \"127.0.0.1:2\"; acept = \"x\"; } );\n"		/* 5 */
			      "meters = ( { identity = \"m\"; source = \"10.0.0.1\";\n"
			      "  ip = \"10.0.0.1\"; } );\n"					/* 7 */
			      "dtls = { mtu = 1280;\n"
			      "  mtu_bytes = 1280; };\n"),					/* 9 */
			 -EINVAL);
	expect_diag(4,
		    3, "unknown setting 'colour'",
		    5, "unknown setting 'acept' in 'tunnels'",
		    7, "unknown setting 'ip' in 'meters'",
		    9, "unknown setting 'mtu_bytes' in 'dtls'");
}

static void string_settings_must_be_strings(void **state)
{
	expect_one("mode = 1;\nkeys = \"keys.psk\";\n" TUNNEL, 1, "'mode' must be a string");
}

static void integer_settings_must_be_integers(void **state)
{
	assert_int_equal(load(HEAD TUNNEL
			      "dtls = {\n"
			      "  mtu = \"1280\";\n"		/* 5 */
			      "  queue_len = 8.0;\n"
			      "  max_sessions = true;\n"
			      "};\n"), -EINVAL);
	expect_diag(3, 5, "'mtu' must be an integer", 6, "'queue_len' must be an integer",
		    7, "'max_sessions' must be an integer");
}

static void groups_and_lists_must_be_groups_and_lists(void **state)
{
	assert_int_equal(load(HEAD
			      "tunnels = { name = \"t\"; };\n"		/* 3 */
			      "meters = \"none\";\n"
			      "dtls = ( 1 );\n"), -EINVAL);		/* 5 */
	expect_diag(3, 3, "'tunnels' must be a list", 4, "'meters' must be a list", 5, "'dtls' must be a group");
}

static void list_entries_must_be_groups(void **state)
{
	assert_int_equal(load(HEAD
			      "tunnels = ( \"coap\" );\n"
			      "meters = ( 1 );\n"), -EINVAL);
	expect_diag(2, 3, "each entry in 'tunnels' must be a group", 4, "each entry in 'meters' must be a group");
}

static void options_must_be_a_group_of_scalars(void **state)
{
	assert_int_equal(load(HEAD
			      "tunnels = ( { name = \"a\"; accept = \"127.0.0.1:1\"; connect = \"127.0.0.1:2\";\n"
			      "  options = ( 1 ); },\n"					/* 4 */
			      "  { name = \"b\"; accept = \"127.0.0.1:3\"; connect = \"127.0.0.1:4\";\n"
			      "    options = {\n"
			      "      nested = { x = 1; };\n"				/* 7 */
			      "      list = ( 1 );\n"
			      "      array = [ 1, 2 ];\n"
			      "      fine = \"yes\"; }; } );\n"),			/* 10 */
			 -EINVAL);
	expect_diag(4,
		    4, "'options' must be a group",
		    7, "option 'nested' must be a string, number or boolean",
		    8, "option 'list' must be a string, number or boolean",
		    9, "option 'array' must be a string, number or boolean");
}

static void empty_file_lacks_mode_keys_and_tunnels(void **state)
{
	assert_int_equal(load("# nothing yet\n"), -EINVAL);
	expect_diag(3, 0, "missing setting 'mode'", 0, "missing setting 'keys'", 0, "missing setting 'tunnels'");
}

static void tunnel_lacking_name_accept_and_connect_names_the_tunnel_line(void **state)
{
	assert_int_equal(load(HEAD
			      "tunnels = (\n"
			      "  { plugin = \"coap\"; }\n"		/* 4 */
			      ");\n"), -EINVAL);
	expect_diag(3, 4, "missing setting 'name' in 'tunnels'", 4, "missing setting 'accept' in 'tunnels'",
		    4, "missing setting 'connect' in 'tunnels'");
}

static void meter_lacking_identity_and_source_names_the_meter_line(void **state)
{
	assert_int_equal(load(HEAD TUNNEL
			      "meters = (\n"
			      "  { }\n"					/* 5 */
			      ");\n"), -EINVAL);
	expect_diag(2, 5, "missing setting 'identity' in 'meters'", 5, "missing setting 'source' in 'meters'");
}

static void tunnels_must_not_be_empty(void **state)
{
	expect_one(HEAD "tunnels = ();\n", 3, "'tunnels' must not be empty");
}

static void empty_strings_are_errors(void **state)
{
	expect_one("mode = \"gateway\";\nkeys = \"\";\n" TUNNEL, 2, "'keys' must not be empty");
}

static void mode_must_be_gateway_or_terminator(void **state)
{
	expect_one("mode = \"client\";\nkeys = \"k\";\n" TUNNEL, 1,
		   "'mode' must be \"gateway\" or \"terminator\", not \"client\"");
}

static void accept_and_connect_must_be_host_and_port(void **state)
{
	assert_int_equal(load(HEAD
			      "tunnels = (\n"
			      "  { name = \"a\"; accept = \"0.0.0.0\"; connect = \"::1:5684\"; },\n"	/* 4 */
			      "  { name = \"b\"; accept = \"host:0\"; connect = \"host:65536\"; },\n"	/* 5 */
			      "  { name = \"c\"; accept = \"[::1]:x\"; connect = \"[nothost]:1\"; },\n"	/* 6 */
			      "  { name = \"d\"; accept = \"bad host:1\"; connect = \"[::1]:5684\"; }\n"	/* 7 */
			      ");\n"), -EINVAL);
	expect_diag(7,
		    4, "'accept' must be host:port or [v6]:port, not \"0.0.0.0\"",
		    4, "'connect' must be host:port or [v6]:port, not \"::1:5684\"",
		    5, "'accept' must be host:port or [v6]:port, not \"host:0\"",
		    5, "'connect' must be host:port or [v6]:port, not \"host:65536\"",
		    6, "'accept' must be host:port or [v6]:port, not \"[::1]:x\"",
		    6, "'connect' must be host:port or [v6]:port, not \"[nothost]:1\"",
		    7, "'accept' must be host:port or [v6]:port, not \"bad host:1\"");
}

static void meter_source_must_be_a_numeric_ip_or_ip_and_port(void **state)
{
	assert_int_equal(load(HEAD TUNNEL
			      "meters = (\n"
			      "  { identity = \"a\"; source = \"meter.lan\"; },\n"		/* 5 */
			      "  { identity = \"b\"; source = \"192.168.1.1:abc\"; },\n"
			      "  { identity = \"c\"; source = \"192.168.1.1:0\"; },\n"
			      "  { identity = \"d\"; source = \"[fd00::1]:5683\"; }\n"		/* 8: fine */
			      ");\n"), -EINVAL);
	expect_diag(3,
		    5, "'source' must be a numeric IP or IP:port, not \"meter.lan\"",
		    6, "'source' must be a numeric IP or IP:port, not \"192.168.1.1:abc\"",
		    7, "'source' must be a numeric IP or IP:port, not \"192.168.1.1:0\"");
}

static void numbers_out_of_range_are_errors(void **state)
{
	assert_int_equal(load(HEAD TUNNEL
			      "dtls = {\n"
			      "  mtu = 100;\n"				/* 5 */
			      "  retransmit_ms = 60001;\n"
			      "  handshake_timeout_s = 0;\n"
			      "  idle_timeout_s = 604801;\n"
			      "  max_sessions = -1;\n"
			      "  max_handshakes = 99999999999;\n"		/* 10 */
			      "  queue_len = 65;\n"
			      "  queue_bytes = 65535;\n"
			      "};\n"), -EINVAL);
	expect_diag(8,
		    5, "'mtu' must be between 256 and 65535",
		    6, "'retransmit_ms' must be between 100 and 60000",
		    7, "'handshake_timeout_s' must be between 1 and 3600",
		    8, "'idle_timeout_s' must be between 1 and 604800",
		    9, "'max_sessions' must be between 1 and 10000000",
		    10, "'max_handshakes' must be between 1 and 10000000",
		    11, "'queue_len' must be between 1 and 64",
		    12, "'queue_bytes' must be between 65536 and 1073741824");
}

static void range_limits_themselves_are_allowed(void **state)
{
	assert_int_equal(load(HEAD TUNNEL "dtls = { mtu = 65535; queue_len = 1; retransmit_ms = 100; };\n"), 0);
	assert_int_equal(conf->dtls.mtu, 65535);
	assert_int_equal(conf->dtls.queue_len, 1);
	assert_int_equal(conf->dtls.retransmit_ms, 100);
}

static void rate_limit_and_path_timeout_can_be_off_but_not_out_of_range(void **state)
{
	assert_int_equal(load(HEAD TUNNEL "dtls = { handshake_rate = 0; path_timeout_s = 0; handshake_burst = 1; };\n"),
			 0);
	assert_int_equal(conf->dtls.handshake_rate, 0);
	assert_int_equal(conf->dtls.handshake_burst, 1);
	psktun_config_free(conf);
	conf = NULL;

	assert_int_equal(load(HEAD TUNNEL
			      "dtls = {\n"
			      "  handshake_rate = 1000001;\n"		/* 5 */
			      "  handshake_burst = 0;\n"
			      "  path_timeout_s = 86401;\n"
			      "};\n"), -EINVAL);
	expect_diag(3,
		    5, "'handshake_rate' must be between 0 and 1000000",
		    6, "'handshake_burst' must be between 1 and 1000000",
		    7, "'path_timeout_s' must be between 0 and 86400");
}

static void tickets_are_a_boolean_and_a_key_file_needs_them(void **state)
{
	assert_int_equal(load(HEAD TUNNEL "dtls = { tickets = true; ticket_key_file = \"ticket.key\"; };\n"), 0);
	assert_true(conf->dtls.tickets);
	assert_string_equal(conf->dtls.ticket_key_file + strlen(conf->dir), "/ticket.key");
	psktun_config_free(conf);
	conf = NULL;

	assert_int_equal(load(HEAD TUNNEL
			      "dtls = {\n"
			      "  tickets = 1;\n"
			      "  ticket_key_file = \"ticket.key\";\n"
			      "};\n"), -EINVAL);
	expect_diag(2,
		    5, "'tickets' must be true or false",
		    6, "'ticket_key_file' needs 'tickets = true'");
}

static void duplicate_tunnel_names_are_errors(void **state)
{
	assert_int_equal(load(HEAD
			      "tunnels = (\n"
			      "  { name = \"coap\"; accept = \"127.0.0.1:1\"; connect = \"127.0.0.1:2\"; },\n"	/* 4 */
			      "  { name = \"mqttsn\"; accept = \"127.0.0.1:3\"; connect = \"127.0.0.1:2\"; },\n"
			      "  { name = \"coap\"; accept = \"127.0.0.1:5\"; connect = \"127.0.0.1:2\"; }\n"		/* 6 */
			      ");\n"), -EINVAL);
	expect_diag(1, 6, "duplicate tunnel name 'coap' (first at line 4)");
}

static void two_tunnels_cannot_accept_on_one_address(void **state)
{
	assert_int_equal(load(HEAD
			      "tunnels = (\n"
			      "  { name = \"a\"; accept = \"127.0.0.1:1\"; connect = \"127.0.0.1:2\"; },\n"	/* 4 */
			      "  { name = \"b\"; accept = \"127.0.0.1:1\"; connect = \"127.0.0.1:3\"; }\n"	/* 5 */
			      ");\n"), -EINVAL);
	expect_diag(1, 5, "accept address '127.0.0.1:1' is already used by the tunnel at line 4");
}

static void tunnel_names_and_plugin_names_have_a_charset(void **state)
{
	assert_int_equal(load(HEAD
			      "tunnels = (\n"
			      "  { name = \"co ap\"; plugin = \"CoAP\"; accept = \"127.0.0.1:1\"; connect = \"127.0.0.1:2\"; },\n"
			      "  { name = \"ok\"; plugin = \"../evil\"; accept = \"127.0.0.1:3\"; connect = \"127.0.0.1:2\"; }\n"
			      ");\n"), -EINVAL);
	expect_diag(3,
		    4, "'name' must be 1 to 63 characters from A-Z a-z 0-9 _ . -, not \"co ap\"",
		    4, "'plugin' must be 1 to 63 characters from a-z 0-9 _, not \"CoAP\"",
		    5, "'plugin' must be 1 to 63 characters from a-z 0-9 _, not \"../evil\"");
}

static void duplicate_meter_identities_are_errors(void **state)
{
	assert_int_equal(load(HEAD TUNNEL
			      "meters = (\n"
			      "  { identity = \"meter-0001\"; source = \"10.0.0.1\"; },\n"	/* 5 */
			      "  { identity = \"meter-0002\"; source = \"10.0.0.2\"; },\n"
			      "  { identity = \"meter-0001\"; source = \"10.0.0.3\"; }\n"	/* 7 */
			      ");\n"), -EINVAL);
	expect_diag(1, 7, "duplicate meter identity 'meter-0001' (first at line 5)");
}

static void duplicate_meter_sources_are_errors_across_address_spellings(void **state)
{
	assert_int_equal(load(HEAD TUNNEL
			      "meters = (\n"
			      "  { identity = \"a\"; source = \"10.0.0.1\"; },\n"		/* 5 */
			      "  { identity = \"b\"; source = \"10.0.0.1:5683\"; },\n"	/* IP:port is not IP */
			      "  { identity = \"c\"; source = \"::ffff:10.0.0.1\"; },\n"	/* 7: same as line 5 */
			      "  { identity = \"d\"; source = \"10.0.0.1:5684\"; },\n"
			      "  { identity = \"e\"; source = \"[::ffff:10.0.0.1]:5683\"; }\n"	/* 9: same as line 6 */
			      ");\n"), -EINVAL);
	expect_diag(2,
		    7, "duplicate meter source '::ffff:10.0.0.1' (first at line 5)",
		    9, "duplicate meter source '[::ffff:10.0.0.1]:5683' (first at line 6)");
}

static void meter_identity_must_be_a_key_file_identity(void **state)
{
	expect_one(HEAD TUNNEL "meters = ( { identity = \"a:b\"; source = \"10.0.0.1\"; } );\n", 4,
		   "'identity' must be 1 to 128 bytes without ':' or control characters");
}

static void meters_in_terminator_mode_are_an_error(void **state)
{
	expect_one("mode = \"terminator\";\nkeys = \"k\";\n" TUNNEL
		   "meters = ( { identity = \"a\"; source = \"10.0.0.1\"; } );\n", 4,
		   "'meters' is only allowed in gateway mode");
}

static void priority_must_be_a_valid_gnutls_priority_string(void **state)
{
	expect_one(HEAD TUNNEL "dtls = { priority = \"NONE:+VERS-DTLS1.2:+BOGUS\"; };\n", 4,
		   "'priority' is not a valid GnuTLS priority string (at \"+BOGUS\")");
}

static void default_priority_is_a_valid_priority_string(void **state)
{
	assert_int_equal(load(HEAD TUNNEL "dtls = { priority = \"" PSKTUN_DEFAULT_PRIORITY "\"; };\n"), 0);
	assert_string_equal(conf->dtls.priority, PSKTUN_DEFAULT_PRIORITY);
}

static void control_path_must_fit_a_unix_socket(void **state)
{
	char text[1024];
	char longname[120];

	memset(longname, 'c', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	FMT(text, HEAD "control = \"/run/%s\";\n" TUNNEL, longname);
	expect_one(text, 3, "'control' is too long for a unix socket path (at most 107 bytes)");
}

static void many_problems_are_reported_in_one_pass(void **state)
{
	assert_int_equal(load("mode = \"router\";\n"						/* 1 */
			      "tunnels = (\n"
			      "  { name = \"x\"; accept = \"nope\"; connect = \"h:1\"; colour = 1; }\n"	/* 3 */
			      ");\n"
			      "dtls = { mtu = 1; };\n"),					/* 5 */
			 -EINVAL);
	expect_diag(5,
		    0, "missing setting 'keys'",
		    1, "'mode' must be \"gateway\" or \"terminator\", not \"router\"",
		    3, "unknown setting 'colour' in 'tunnels'",
		    3, "'accept' must be host:port or [v6]:port, not \"nope\"",
		    5, "'mtu' must be between 256 and 65535");
}

static void user_text_in_messages_is_made_printable(void **state)
{
	expect_one("mode = \"gate\\nway\";\nkeys = \"k\";\n" TUNNEL, 1,
		   "'mode' must be \"gateway\" or \"terminator\", not \"gate?way\"");
}

static void every_gateway_meter_must_be_in_the_key_file(void **state)
{
	struct psktun_keys *keys = NULL;
	char msg[PATH_MAX + 100];

	assert_int_equal(load(HEAD TUNNEL
			      "meters = (\n"
			      "  { identity = \"meter-0001\"; source = \"10.0.0.1\"; },\n"	/* 5 */
			      "  { identity = \"meter-0002\"; source = \"10.0.0.2\"; },\n"	/* 6 */
			      "  { identity = \"meter-0003\"; source = \"10.0.0.3\"; }\n"	/* 7 */
			      ");\n"), 0);
	test_write_str("keys.psk", "meter-0002:00112233445566778899aabbccddeeff\n", 0600);
	assert_int_equal(psktun_keys_load(conf->keys, true, &keys, &diag), 0);

	assert_int_equal(psktun_config_check_keys(conf, keys, &diag), -EINVAL);
	FMT(msg, "meter 'meter-0001' is not in the key file %s", in_dir("keys.psk"));
	assert_int_equal(diag.n, 2);
	{
		char want[PATH_MAX + 200];

		FMT(want, "%s:5: %s", path, msg);
		assert_string_equal(diag.line[0], want);
		FMT(want, "%s:7: meter 'meter-0003' is not in the key file %s", path,
			 in_dir("keys.psk"));
		assert_string_equal(diag.line[1], want);
	}
	psktun_keys_free(keys);
}

static void check_keys_passes_when_every_meter_has_a_key(void **state)
{
	struct psktun_keys *keys = NULL;

	assert_int_equal(load(HEAD TUNNEL "meters = ( { identity = \"m\"; source = \"10.0.0.1\"; } );\n"), 0);
	test_write_str("keys.psk", "m:00112233445566778899aabbccddeeff\n", 0600);
	assert_int_equal(psktun_keys_load(conf->keys, true, &keys, &diag), 0);
	assert_int_equal(psktun_config_check_keys(conf, keys, &diag), 0);
	expect_diag(0);
	psktun_keys_free(keys);
}

static void free_null_is_fine(void **state)
{
	psktun_config_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(full_configuration_loads_every_setting),
		T(minimal_terminator_gets_the_defaults),
		T(tickets_are_a_boolean_and_a_key_file_needs_them),
		T(a_gateway_shakes_hands_with_fewer_at_once_by_default),
		T(gateway_without_meters_is_fine),
		T(relative_paths_resolve_against_the_config_directory_even_from_elsewhere),
		T(absolute_paths_are_kept),
		T(missing_file_is_enoent),
		T(syntax_error_names_its_line),
		T(setting_given_twice_names_the_second_line),
		T(unknown_settings_are_errors_at_every_level),
		T(string_settings_must_be_strings),
		T(integer_settings_must_be_integers),
		T(groups_and_lists_must_be_groups_and_lists),
		T(list_entries_must_be_groups),
		T(options_must_be_a_group_of_scalars),
		T(empty_file_lacks_mode_keys_and_tunnels),
		T(tunnel_lacking_name_accept_and_connect_names_the_tunnel_line),
		T(meter_lacking_identity_and_source_names_the_meter_line),
		T(tunnels_must_not_be_empty),
		T(empty_strings_are_errors),
		T(mode_must_be_gateway_or_terminator),
		T(accept_and_connect_must_be_host_and_port),
		T(meter_source_must_be_a_numeric_ip_or_ip_and_port),
		T(numbers_out_of_range_are_errors),
		T(range_limits_themselves_are_allowed),
		T(rate_limit_and_path_timeout_can_be_off_but_not_out_of_range),
		T(duplicate_tunnel_names_are_errors),
		T(two_tunnels_cannot_accept_on_one_address),
		T(tunnel_names_and_plugin_names_have_a_charset),
		T(duplicate_meter_identities_are_errors),
		T(duplicate_meter_sources_are_errors_across_address_spellings),
		T(meter_identity_must_be_a_key_file_identity),
		T(meters_in_terminator_mode_are_an_error),
		T(priority_must_be_a_valid_gnutls_priority_string),
		T(default_priority_is_a_valid_priority_string),
		T(control_path_must_fit_a_unix_socket),
		T(many_problems_are_reported_in_one_pass),
		T(user_text_in_messages_is_made_printable),
		T(every_gateway_meter_must_be_in_the_key_file),
		T(check_keys_passes_when_every_meter_has_a_key),
		T(free_null_is_fine),
#undef T
	};

	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
