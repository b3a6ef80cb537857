/* test_addr: "host:port" splitting, numeric address parsing, formatting, equality and hashing. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"

static void split_ok(const char *s, const char *want_host, const char *want_port)
{
	char host[64], port[8];

	assert_int_equal(psktun_hostport_split(s, host, sizeof(host), port, sizeof(port)), 0);
	assert_string_equal(host, want_host);
	assert_string_equal(port, want_port);
}

static int split(const char *s)
{
	char host[64], port[8];

	return psktun_hostport_split(s, host, sizeof(host), port, sizeof(port));
}

static void split_takes_ipv4_hostname_and_bracketed_ipv6(void **state)
{
	split_ok("0.0.0.0:5683", "0.0.0.0", "5683");
	split_ok("coap.example.net:5684", "coap.example.net", "5684");
	split_ok("[::1]:5684", "::1", "5684");
	split_ok("[2001:db8::1]:1", "2001:db8::1", "1");
	split_ok("localhost:65535", "localhost", "65535");
}

static void split_requires_a_port(void **state)
{
	assert_int_equal(split("coap.example.net"), -EINVAL);
	assert_int_equal(split("coap.example.net:"), -EINVAL);
	assert_int_equal(split("[::1]"), -EINVAL);
	assert_int_equal(split("[::1]:"), -EINVAL);
}

static void split_rejects_port_0_65536_and_non_digits(void **state)
{
	assert_int_equal(split("host:0"), -EINVAL);
	assert_int_equal(split("host:65536"), -EINVAL);
	assert_int_equal(split("host:abc"), -EINVAL);
	assert_int_equal(split("host:+80"), -EINVAL);
	assert_int_equal(split("host:80 "), -EINVAL);
	assert_int_equal(split("host:000080"), -EINVAL);
}

static void split_rejects_bare_ipv6_empty_host_and_junk(void **state)
{
	assert_int_equal(split("::1:5684"), -EINVAL);
	assert_int_equal(split(":5684"), -EINVAL);
	assert_int_equal(split("[]:5684"), -EINVAL);
	assert_int_equal(split("[::1]5684"), -EINVAL);
	assert_int_equal(split("ho st:5684"), -EINVAL);
	assert_int_equal(split(""), -EINVAL);
}

static void split_reports_enametoolong_when_host_does_not_fit(void **state)
{
	char host[8], port[8];

	assert_int_equal(psktun_hostport_split("longhostname:1", host, sizeof(host), port, sizeof(port)),
			 -ENAMETOOLONG);
	assert_int_equal(psktun_hostport_split("12345678:1", host, sizeof(host), port, sizeof(port)),
			 -ENAMETOOLONG);
	assert_int_equal(psktun_hostport_split("1234567:1", host, sizeof(host), port, sizeof(port)), 0);
}

static void parse_ipv4_with_and_without_port(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	bool has_port = true;

	assert_int_equal(psktun_addr_parse("192.168.10.21", false, &ss, &has_port), 0);
	assert_false(has_port);
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0xc0a80a15);
	assert_int_equal(sin->sin_port, 0);

	assert_int_equal(psktun_addr_parse("192.168.10.22:5683", false, &ss, &has_port), 0);
	assert_true(has_port);
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 5683);
}

static void parse_ipv6_bare_bracketed_and_with_port(void **state)
{
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	struct in6_addr loop = IN6ADDR_LOOPBACK_INIT;
	bool has_port = true;

	assert_int_equal(psktun_addr_parse("::1", false, &ss, &has_port), 0);
	assert_false(has_port);
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_memory_equal(&sin6->sin6_addr, &loop, 16);

	assert_int_equal(psktun_addr_parse("[::1]", false, &ss, &has_port), 0);
	assert_false(has_port);
	assert_int_equal(sin6->sin6_family, AF_INET6);

	assert_int_equal(psktun_addr_parse("[::1]:5684", true, &ss, &has_port), 0);
	assert_true(has_port);
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_memory_equal(&sin6->sin6_addr, &loop, 16);
	assert_int_equal(ntohs(sin6->sin6_port), 5684);
}

static void parse_with_port_required_rejects_missing_port(void **state)
{
	struct sockaddr_storage ss;

	assert_int_equal(psktun_addr_parse("192.0.2.1", true, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("::1", true, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("[::1]", true, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("192.0.2.1:1", true, &ss, NULL), 0);
}

static void parse_rejects_bad_ports(void **state)
{
	struct sockaddr_storage ss;

	assert_int_equal(psktun_addr_parse("192.0.2.1:0", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("192.0.2.1:65536", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("192.0.2.1:abc", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("192.0.2.1:", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("[::1]:0", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("[::1]:65536", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("192.0.2.1:65535", false, &ss, NULL), 0);
}

static void parse_rejects_names_and_malformed_addresses(void **state)
{
	struct sockaddr_storage ss;

	assert_int_equal(psktun_addr_parse("localhost:5683", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("meter.lan", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("192.0.2", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("192.0.2.256", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("[192.0.2.1]:5", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("::1::2", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse("", false, &ss, NULL), -EINVAL);
	assert_int_equal(psktun_addr_parse(" 192.0.2.1", false, &ss, NULL), -EINVAL);
}

static void format_round_trips(const char *s)
{
	struct sockaddr_storage ss;
	char buf[PSKTUN_ADDRSTRLEN];

	assert_int_equal(psktun_addr_parse(s, true, &ss, NULL), 0);
	assert_string_equal(psktun_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), s);
}

static void format_is_the_parse_syntax(void **state)
{
	format_round_trips("192.0.2.1:5683");
	format_round_trips("255.255.255.255:65535");
	format_round_trips("[::1]:5684");
	format_round_trips("[2001:db8::1]:1");
	format_round_trips("[::ffff:192.0.2.1]:9");
	format_round_trips("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535");
}

static void format_truncates_to_the_buffer(void **state)
{
	struct sockaddr_storage ss;
	char buf[8];

	assert_int_equal(psktun_addr_parse("192.0.2.1:5683", true, &ss, NULL), 0);
	assert_string_equal(psktun_addr_format((struct sockaddr *)&ss, buf, sizeof(buf)), "192.0.2");
}

static struct sockaddr_storage A(const char *s)
{
	struct sockaddr_storage ss;

	assert_int_equal(psktun_addr_parse(s, false, &ss, NULL), 0);
	return ss;
}

#define SA(ss) ((const struct sockaddr *)&(ss))

static void equal_with_port_compares_ip_and_port(void **state)
{
	struct sockaddr_storage a = A("192.0.2.1:5683"), b = A("192.0.2.1:5683");
	struct sockaddr_storage c = A("192.0.2.1:5684"), d = A("192.0.2.2:5683");

	assert_true(psktun_addr_equal(SA(a), SA(b), true));
	assert_false(psktun_addr_equal(SA(a), SA(c), true));
	assert_false(psktun_addr_equal(SA(a), SA(d), true));
	assert_int_equal(psktun_addr_hash(SA(a), true), psktun_addr_hash(SA(b), true));
}

static void equal_without_port_ignores_the_port(void **state)
{
	struct sockaddr_storage a = A("192.0.2.1:5683"), c = A("192.0.2.1:5684"), d = A("192.0.2.2:5683");
	struct sockaddr_storage e = A("[2001:db8::1]:1"), f = A("[2001:db8::1]:2");

	assert_true(psktun_addr_equal(SA(a), SA(c), false));
	assert_false(psktun_addr_equal(SA(a), SA(d), false));
	assert_int_equal(psktun_addr_hash(SA(a), false), psktun_addr_hash(SA(c), false));
	assert_true(psktun_addr_equal(SA(e), SA(f), false));
	assert_false(psktun_addr_equal(SA(e), SA(f), true));
	assert_int_equal(psktun_addr_hash(SA(e), false), psktun_addr_hash(SA(f), false));
}

static void ipv4_mapped_ipv6_equals_its_ipv4_and_hashes_alike(void **state)
{
	struct sockaddr_storage v4 = A("192.0.2.1:5683"), mapped = A("[::ffff:192.0.2.1]:5683");
	struct sockaddr_storage other = A("[::192.0.2.1]:5683"), v4b = A("192.0.2.1");

	assert_true(psktun_addr_equal(SA(v4), SA(mapped), true));
	assert_true(psktun_addr_equal(SA(mapped), SA(v4), true));
	assert_int_equal(psktun_addr_hash(SA(v4), true), psktun_addr_hash(SA(mapped), true));
	assert_int_equal(psktun_addr_hash(SA(v4b), false), psktun_addr_hash(SA(mapped), false));
	assert_false(psktun_addr_equal(SA(v4), SA(other), true));
}

static void hash_tells_different_addresses_apart(void **state)
{
	struct sockaddr_storage a = A("192.0.2.1:5683"), b = A("192.0.2.2:5683"), c = A("192.0.2.1:5684");

	/* Not a promise for every pair, but a random 64-bit key makes these collisions absurd. */
	assert_int_not_equal(psktun_addr_hash(SA(a), true), psktun_addr_hash(SA(b), true));
	assert_int_not_equal(psktun_addr_hash(SA(a), true), psktun_addr_hash(SA(c), true));
}

static void addr_len_follows_the_family(void **state)
{
	struct sockaddr_storage a = A("192.0.2.1"), b = A("::1"), u = { .ss_family = AF_UNIX };

	assert_int_equal(psktun_addr_len(SA(a)), sizeof(struct sockaddr_in));
	assert_int_equal(psktun_addr_len(SA(b)), sizeof(struct sockaddr_in6));
	assert_int_equal(psktun_addr_len(SA(u)), 0);
	assert_false(psktun_addr_equal(SA(u), SA(u), false));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(split_takes_ipv4_hostname_and_bracketed_ipv6),
		cmocka_unit_test(split_requires_a_port),
		cmocka_unit_test(split_rejects_port_0_65536_and_non_digits),
		cmocka_unit_test(split_rejects_bare_ipv6_empty_host_and_junk),
		cmocka_unit_test(split_reports_enametoolong_when_host_does_not_fit),
		cmocka_unit_test(parse_ipv4_with_and_without_port),
		cmocka_unit_test(parse_ipv6_bare_bracketed_and_with_port),
		cmocka_unit_test(parse_with_port_required_rejects_missing_port),
		cmocka_unit_test(parse_rejects_bad_ports),
		cmocka_unit_test(parse_rejects_names_and_malformed_addresses),
		cmocka_unit_test(format_is_the_parse_syntax),
		cmocka_unit_test(format_truncates_to_the_buffer),
		cmocka_unit_test(equal_with_port_compares_ip_and_port),
		cmocka_unit_test(equal_without_port_ignores_the_port),
		cmocka_unit_test(ipv4_mapped_ipv6_equals_its_ipv4_and_hashes_alike),
		cmocka_unit_test(hash_tells_different_addresses_apart),
		cmocka_unit_test(addr_len_follows_the_family),
	};

	return cmocka_run_group_tests_name("addr", tests, NULL, NULL);
}
