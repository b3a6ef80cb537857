/* test_mqttsn_plugin: the MQTT-SN plugin's verdicts and host calls, driven through a fake host table. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fake_host.h"

#define VEC(...) ((const uint8_t[]){ __VA_ARGS__ })
#define VLEN(...) sizeof((const uint8_t[]){ __VA_ARGS__ })
#define METER1 0x6d, 0x65, 0x74, 0x65, 0x72, 0x2d, 0x30, 0x30, 0x30, 0x31	/* meter-0001 */
#define METER2 0x6d, 0x65, 0x74, 0x65, 0x72, 0x2d, 0x30, 0x30, 0x30, 0x32	/* meter-0002 */

/* One tunnel with session a open: what a test drives. */
struct rig {
	void *td;
	void *sd;
	struct psktun_dgram ctx;
	uint8_t buf[2048];
	size_t len;
};

static const struct psktun_plugin *P = &psktun_plugin;

static int rig_init(struct rig *r, enum psktun_role role,
		    const struct psktun_option *opts, size_t n)
{
	int rc;

	fake_host_reset(role);
	F.now = 1000000;
	memset(r, 0, sizeof(*r));
	rc = P->init(&fake_host, &F.tunnel, opts, n, &r->td);
	if (rc < 0)
		return rc;
	return P->session_open(r->td, &F.a, &r->sd);
}

static void rig_fini(struct rig *r)
{
	P->session_close(r->td, &F.a, r->sd);
	P->fini(r->td);
}

/* Put a datagram in the buffer and make a context for session s. */
static void rig_load(struct rig *r, struct psktun_session *s, const uint8_t *b, size_t n)
{
	memset(&r->ctx, 0, sizeof(r->ctx));
	r->ctx.tunnel = &F.tunnel;
	r->ctx.tunnel_data = r->td;
	r->ctx.session = s;
	r->ctx.session_data = s == &F.a ? r->sd : NULL;
	memcpy(r->buf, b, n);
	r->len = n;
}

#define PLAIN(r, s, ...) (rig_load((r), (s), VEC(__VA_ARGS__), VLEN(__VA_ARGS__)), \
			  P->on_plain(&(r)->ctx, (r)->buf, &(r)->len, sizeof((r)->buf)))
#define TUNNEL(r, s, ...) (rig_load((r), (s), VEC(__VA_ARGS__), VLEN(__VA_ARGS__)), \
			   P->on_tunnel(&(r)->ctx, (r)->buf, &(r)->len, sizeof((r)->buf)))
#define ASSERT_BUF(r, ...) do { \
		assert_int_equal((r)->len, VLEN(__VA_ARGS__)); \
		assert_memory_equal((r)->buf, VEC(__VA_ARGS__), VLEN(__VA_ARGS__)); \
	} while (0)

#define OPT(k, v) { .key = (k), .value = (v) }

/* --- the exported struct --- */

static void exports_abi_size_name_and_callbacks(void **state)
{
	assert_int_equal(P->abi, PSKTUN_PLUGIN_ABI);
	assert_int_equal(P->size, sizeof(struct psktun_plugin));
	assert_string_equal(P->name, "mqttsn");
	assert_non_null(P->version);
	assert_non_null(P->init);
	assert_non_null(P->fini);
	assert_non_null(P->identify);
	assert_non_null(P->on_plain);
	assert_non_null(P->on_tunnel);
	assert_non_null(P->session_open);
	assert_non_null(P->session_close);
	assert_non_null(P->on_session_timer);
	assert_non_null(P->on_tunnel_timer);
}

/* --- discovery --- */

static void searchgw_is_answered_locally_with_gwinfo(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x03, 0x01, 0x00), PSKTUN_REPLY);
	ASSERT_BUF(&r, 0x03, 0x02, 0x01);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_NONE);
	assert_int_equal(F.tunnel_sent.n, 0);
	assert_int_equal(F.n_session_timer, 0);
	rig_fini(&r);
}

static void gwinfo_carries_option_gateway_id(void **state)
{
	const struct psktun_option o[] = { OPT("gateway_id", "42") };
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, o, 1), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x03, 0x01, 0x01), PSKTUN_REPLY);
	ASSERT_BUF(&r, 0x03, 0x02, 0x2a);
	rig_fini(&r);
}

static void searchgw_without_session_is_answered_too(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, NULL, 0x03, 0x01, 0x00), PSKTUN_REPLY);
	ASSERT_BUF(&r, 0x03, 0x02, 0x01);
	assert_int_equal(PLAIN(&r, NULL, 0x02, 0x16), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_UNKNOWN);
	rig_fini(&r);
}

static void lan_discovery_does_not_cross_the_tunnel(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x05, 0x00, 0x01, 0x03, 0x84), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_NONE);
	assert_int_equal(PLAIN(&r, &F.a, 0x03, 0x02, 0x05), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_NONE);
	rig_fini(&r);
}

static void advertise_goes_out_every_advertise_s(void **state)
{
	const struct psktun_option o[] = {
		OPT("advertise_s", "900"),
		OPT("advertise_to", "192.168.10.255:1883"),
		OPT("gateway_id", "7"),
	};
	struct sockaddr_in *to = (struct sockaddr_in *)&F.plain_to_addr;
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, o, 3), 0);
	/* The first right after start. */
	assert_int_equal(F.n_tunnel_timer, 1);
	assert_int_equal(F.tunnel_timer_ms, 1);
	P->on_tunnel_timer(r.td);
	assert_int_equal(F.plain_to.n, 1);
	assert_int_equal(F.plain_to.len, 5);
	assert_memory_equal(F.plain_to.buf, VEC(0x05, 0x00, 0x07, 0x03, 0x84), 5);
	assert_int_equal(to->sin_family, AF_INET);
	assert_int_equal(ntohs(to->sin_port), 1883);
	assert_int_equal(ntohl(to->sin_addr.s_addr), 0xc0a80aff);
	assert_int_equal(F.n_tunnel_timer, 2);
	assert_int_equal(F.tunnel_timer_ms, 900000);
	rig_fini(&r);
}

static void advertise_to_takes_ipv6(void **state)
{
	const struct psktun_option o[] = {
		OPT("advertise_s", "60"),
		OPT("advertise_to", "[ff02::1]:1883"),
	};
	struct sockaddr_in6 *to = (struct sockaddr_in6 *)&F.plain_to_addr;
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, o, 2), 0);
	P->on_tunnel_timer(r.td);
	assert_int_equal(to->sin6_family, AF_INET6);
	assert_int_equal(ntohs(to->sin6_port), 1883);
	assert_int_equal(to->sin6_addr.s6_addr[0], 0xff);
	assert_int_equal(to->sin6_addr.s6_addr[15], 0x01);
	assert_memory_equal(F.plain_to.buf, VEC(0x05, 0x00, 0x01, 0x00, 0x3c), 5);
	rig_fini(&r);
}

static void no_advertise_by_default(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(F.n_tunnel_timer, 0);
	P->on_tunnel_timer(r.td);
	assert_int_equal(F.plain_to.n, 0);
	rig_fini(&r);
}

/* --- identity --- */

static void identify_names_the_connect_clientid(void **state)
{
	const uint8_t connect[] = { 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER2 };
	const uint8_t pingreq[] = { 0x0c, 0x16, METER1 };
	char id[64];
	size_t id_len = sizeof(id);
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(P->identify(r.td, NULL, connect, sizeof(connect), id, &id_len), 0);
	assert_int_equal(id_len, 10);
	assert_memory_equal(id, "meter-0002", 10);

	/* A sleeping client waking up names itself in PINGREQ. */
	id_len = sizeof(id);
	assert_int_equal(P->identify(r.td, NULL, pingreq, sizeof(pingreq), id, &id_len), 0);
	assert_int_equal(id_len, 10);
	assert_memory_equal(id, "meter-0001", 10);

	/* Room too small: names nobody it can hold. */
	id_len = 9;
	assert_int_equal(P->identify(r.td, NULL, connect, sizeof(connect), id, &id_len), -ENOENT);
	rig_fini(&r);
}

static void identify_others_name_nobody(void **state)
{
	char id[64];
	size_t id_len = sizeof(id);
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(P->identify(r.td, NULL, VEC(0x02, 0x16), 2, id, &id_len), -ENOENT);
	assert_int_equal(P->identify(r.td, NULL, VEC(0x03, 0x01, 0x00), 3, id, &id_len), -ENOENT);
	assert_int_equal(P->identify(r.td, NULL,
				     VEC(0x0b, 0x0c, 0x20, 0x00, 0x05, 0x00, 0x02, '2', '1', '.', '5'),
				     11, id, &id_len), -ENOENT);
	assert_int_equal(P->identify(r.td, NULL, VEC(0x05, 0xfe, 0x00, 'n', 'x'), 5, id, &id_len),
			 -EBADMSG);
	assert_int_equal(P->identify(r.td, NULL, VEC(0x10, 0x04, 0x04, 0x01), 4, id, &id_len),
			 -EBADMSG);
	assert_int_equal(P->identify(r.td, NULL, VEC(0x02), 1, id, &id_len), -EBADMSG);
	rig_fini(&r);
}

static void gateway_connect_of_another_clientid_is_refused_with_connack_3(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER2), PSKTUN_REPLY);
	ASSERT_BUF(&r, 0x03, 0x05, 0x03);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(F.n_idle, 0);
	assert_int_equal(F.n_session_timer, 0);
	assert_int_equal(F.n_log, 1);
	rig_fini(&r);
}

/* The daemon refuses the identity (pinned to another source): a CONNECT
 * gets CONNACK 0x03 even though it names "the session's" identity, a
 * PINGREQ is dropped, a SEARCHGW is not answered. */
static void gateway_refused_identity_gets_the_protocols_refusal(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	rig_load(&r, NULL, VEC(0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1),
		 VLEN(0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1));
	r.ctx.flags = PSKTUN_DGRAM_IDENTITY_REFUSED;
	assert_int_equal(P->on_plain(&r.ctx, r.buf, &r.len, sizeof(r.buf)), PSKTUN_REPLY);
	ASSERT_BUF(&r, 0x03, 0x05, 0x03);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	rig_load(&r, NULL, VEC(0x0c, 0x16, METER1), VLEN(0x0c, 0x16, METER1));
	r.ctx.flags = PSKTUN_DGRAM_IDENTITY_REFUSED;
	assert_int_equal(P->on_plain(&r.ctx, r.buf, &r.len, sizeof(r.buf)), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(F.n_idle, 0);
	assert_int_equal(F.n_session_timer, 0);
	assert_int_equal(F.plain.n, 0);
	rig_fini(&r);
}

static void gateway_connect_of_own_clientid_is_forwarded(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1), PSKTUN_FORWARD);
	ASSERT_BUF(&r, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_NONE);
	rig_fini(&r);
}

static void terminator_connect_of_another_clientid_is_refused_with_connack_3(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, NULL, 0), 0);
	assert_null(r.sd);
	assert_int_equal(TUNNEL(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER2), PSKTUN_REPLY);
	ASSERT_BUF(&r, 0x03, 0x05, 0x03);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(F.plain.n, 0);
	rig_fini(&r);
}

static void terminator_connect_of_own_clientid_is_forwarded(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, NULL, 0), 0);
	assert_int_equal(TUNNEL(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1), PSKTUN_FORWARD);
	ASSERT_BUF(&r, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1);
	assert_int_equal(F.n_idle, 1);
	assert_int_equal(F.idle_s, 90);
	rig_fini(&r);
}

static void pingreq_of_another_clientid_is_dropped_at_both_roles(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x0c, 0x16, METER2), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(PLAIN(&r, &F.a, 0x0c, 0x16, METER1), PSKTUN_FORWARD);
	rig_fini(&r);

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, NULL, 0), 0);
	assert_int_equal(TUNNEL(&r, &F.a, 0x0c, 0x16, METER2), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	assert_int_equal(TUNNEL(&r, &F.a, 0x02, 0x16), PSKTUN_FORWARD);
	rig_fini(&r);
}

static void encapsulation_from_a_client_is_refused(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x0d, 0xfe, 0x00, METER2, 0x02, 0x16), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	rig_fini(&r);

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, NULL, 0), 0);
	assert_int_equal(TUNNEL(&r, &F.a, 0x0d, 0xfe, 0x00, METER2, 0x02, 0x16), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	rig_fini(&r);
}

static void malformed_is_dropped_in_every_direction(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x03, 0x16), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_MALFORMED);
	assert_int_equal(TUNNEL(&r, &F.a, 0x02, 0x05), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_MALFORMED);
	rig_fini(&r);

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, NULL, 0), 0);
	assert_int_equal(TUNNEL(&r, &F.a, 0x06, 0x04, 0x04, 0x01, 0x00, 0x3c), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_MALFORMED);
	assert_int_equal(PLAIN(&r, &F.a, 0x04, 0x05, 0x00), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_MALFORMED);
	rig_fini(&r);
}

/* --- idle timeouts and closing --- */

static void disconnect_without_duration_closes_the_session(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x02, 0x18), PSKTUN_CLOSE);
	ASSERT_BUF(&r, 0x02, 0x18);
	/* Acknowledged to the meter, as the cloud's answer cannot return. */
	assert_int_equal(F.plain.n, 1);
	assert_ptr_equal(F.plain_session, &F.a);
	assert_memory_equal(F.plain.buf, VEC(0x02, 0x18), 2);
	assert_int_equal(F.n_idle, 0);
	/* Duration 0 is no sleep either. */
	assert_int_equal(PLAIN(&r, &F.a, 0x04, 0x18, 0x00, 0x00), PSKTUN_CLOSE);
	assert_int_equal(F.n_idle, 0);
	rig_fini(&r);
}

static void disconnect_with_duration_raises_idle_timeout(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x04, 0x18, 0x0e, 0x10), PSKTUN_FORWARD);
	ASSERT_BUF(&r, 0x04, 0x18, 0x0e, 0x10);
	assert_int_equal(F.n_idle, 1);
	assert_int_equal(F.idle_s, 5400);
	assert_int_equal(F.plain.n, 0);
	/* ceil(1.5 * 65535) */
	assert_int_equal(PLAIN(&r, &F.a, 0x04, 0x18, 0xff, 0xff), PSKTUN_FORWARD);
	assert_int_equal(F.idle_s, 98303);
	rig_fini(&r);
}

static void terminator_disconnect_is_forwarded_and_sleep_raises_idle(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, NULL, 0), 0);
	assert_int_equal(TUNNEL(&r, &F.a, 0x02, 0x18), PSKTUN_FORWARD);
	assert_int_equal(TUNNEL(&r, &F.a, 0x04, 0x18, 0x00, 0x0b), PSKTUN_FORWARD);
	assert_int_equal(F.n_idle, 1);
	assert_int_equal(F.idle_s, 17);
	rig_fini(&r);
}

static void connect_keepalive_raises_idle_timeout(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3d, METER1), PSKTUN_FORWARD);
	assert_int_equal(F.n_idle, 1);
	assert_int_equal(F.idle_s, 92);		/* ceil(1.5 * 61) */
	/* Keep-alive 0: none, nothing to raise. */
	assert_int_equal(PLAIN(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x00, METER1), PSKTUN_FORWARD);
	assert_int_equal(F.n_idle, 1);
	rig_fini(&r);
}

/* --- forwarder encapsulation (terminator) --- */

static const struct psktun_option fwd_opt[] = { OPT("forwarder", "127.0.0.1:10000") };

static void forwarder_opens_the_shared_socket(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, fwd_opt, 1), 0);
	assert_int_equal(F.n_shared, 1);
	assert_string_equal(F.shared, "127.0.0.1:10000");
	rig_fini(&r);
}

static void forwarder_wraps_with_the_psk_identity(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, fwd_opt, 1), 0);
	assert_int_equal(TUNNEL(&r, &F.a, 0x0b, 0x0c, 0x20, 0x00, 0x05, 0x00, 0x02, '2', '1', '.', '5'),
			 PSKTUN_FORWARD);
	ASSERT_BUF(&r, 0x0d, 0xfe, 0x00, METER1,
		   0x0b, 0x0c, 0x20, 0x00, 0x05, 0x00, 0x02, '2', '1', '.', '5');
	rig_fini(&r);
}

static void forwarder_refusal_is_not_wrapped(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, fwd_opt, 1), 0);
	assert_int_equal(TUNNEL(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER2), PSKTUN_REPLY);
	ASSERT_BUF(&r, 0x03, 0x05, 0x03);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_POLICY);
	rig_fini(&r);
}

static void forwarder_unwraps_a_reply_to_its_session(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, fwd_opt, 1), 0);
	assert_int_equal(PLAIN(&r, NULL, 0x0d, 0xfe, 0x00, METER2, 0x03, 0x05, 0x00), PSKTUN_FORWARD);
	assert_ptr_equal(r.ctx.target, &F.b);
	ASSERT_BUF(&r, 0x03, 0x05, 0x00);
	rig_fini(&r);
}

static void forwarder_round_trip(void **state)
{
	struct rig r;
	uint8_t wrapped[64];
	size_t n;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, fwd_opt, 1), 0);
	assert_int_equal(TUNNEL(&r, &F.a, 0x08, 0x12, 0x20, 0x00, 0x04, 'a', '/', 'b'), PSKTUN_FORWARD);
	n = r.len;
	memcpy(wrapped, r.buf, n);
	/* The backend echoes the wrapper around its answer. */
	memcpy(wrapped + 13, VEC(0x08, 0x13, 0x20, 0x00, 0x05, 0x00, 0x04, 0x00), 8);
	rig_load(&r, NULL, wrapped, n);
	assert_int_equal(P->on_plain(&r.ctx, r.buf, &r.len, sizeof(r.buf)), PSKTUN_FORWARD);
	assert_ptr_equal(r.ctx.target, &F.a);
	ASSERT_BUF(&r, 0x08, 0x13, 0x20, 0x00, 0x05, 0x00, 0x04, 0x00);
	rig_fini(&r);
}

static void forwarder_unknown_node_id_is_dropped(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, fwd_opt, 1), 0);
	assert_int_equal(PLAIN(&r, NULL, 0x0d, 0xfe, 0x00, 'm', 'e', 't', 'e', 'r', '-', '9', '9', '9', '9',
			       0x03, 0x05, 0x00), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_UNKNOWN);
	assert_null(r.ctx.target);
	/* Not encapsulated: nobody is named. */
	assert_int_equal(PLAIN(&r, NULL, 0x03, 0x05, 0x00), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_UNKNOWN);
	rig_fini(&r);
}

static void forwarder_malformed_reply_is_dropped(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_TERMINATOR, fwd_opt, 1), 0);
	assert_int_equal(PLAIN(&r, NULL, 0x0d, 0xfe, 0x00, METER1, 0x04, 0x05, 0x00), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_MALFORMED);
	assert_null(r.ctx.target);
	assert_int_equal(PLAIN(&r, NULL, 0x0d, 0xfe, 0x00, METER1), PSKTUN_DROP);
	assert_int_equal(r.ctx.reason, PSKTUN_REASON_MALFORMED);
	rig_fini(&r);
}

/* --- silence (gateway) --- */

static void connect_without_connack_reports_silence(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	assert_non_null(r.sd);
	PLAIN(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1);
	assert_int_equal(F.n_session_timer, 1);
	assert_int_equal(F.session_timer_ms, 30000);
	F.now += 30000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	assert_int_equal(F.n_session_timer, 1);		/* nothing left to wait for */
	rig_fini(&r);
}

static void connect_answered_by_connack_is_not_silence(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	PLAIN(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1);
	F.now += 2000;
	assert_int_equal(TUNNEL(&r, &F.a, 0x03, 0x05, 0x00), PSKTUN_FORWARD);
	ASSERT_BUF(&r, 0x03, 0x05, 0x00);
	F.now += 28000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 0);
	assert_int_equal(F.n_session_timer, 1);
	rig_fini(&r);
}

static void pingreq_answered_by_pingresp_is_not_silence(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	PLAIN(&r, &F.a, 0x02, 0x16);
	assert_int_equal(F.n_session_timer, 1);
	TUNNEL(&r, &F.a, 0x02, 0x17);
	F.now += 30000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 0);
	rig_fini(&r);
}

static void pingreq_without_pingresp_reports_silence(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	PLAIN(&r, &F.a, 0x02, 0x16);
	F.now += 30000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	rig_fini(&r);
}

static void subscribe_needs_suback_with_its_msgid(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	PLAIN(&r, &F.a, 0x08, 0x12, 0x20, 0x00, 0x04, 'a', '/', 'b');
	TUNNEL(&r, &F.a, 0x08, 0x13, 0x20, 0x00, 0x05, 0x00, 0x09, 0x00);	/* other msg id */
	F.now += 30000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);

	PLAIN(&r, &F.a, 0x08, 0x12, 0x20, 0x00, 0x04, 'a', '/', 'b');
	TUNNEL(&r, &F.a, 0x08, 0x13, 0x20, 0x00, 0x05, 0x00, 0x04, 0x00);
	F.now += 30000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	rig_fini(&r);
}

static void publish_qos1_needs_puback_qos2_needs_pubrec(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	PLAIN(&r, &F.a, 0x0b, 0x0c, 0x20, 0x00, 0x05, 0x00, 0x02, '2', '1', '.', '5');
	PLAIN(&r, &F.a, 0x0b, 0x0c, 0x40, 0x00, 0x05, 0x00, 0x03, '2', '1', '.', '5');
	TUNNEL(&r, &F.a, 0x07, 0x0d, 0x00, 0x05, 0x00, 0x02, 0x00);
	TUNNEL(&r, &F.a, 0x04, 0x0f, 0x00, 0x03);
	F.now += 30000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 0);

	PLAIN(&r, &F.a, 0x0b, 0x0c, 0x20, 0x00, 0x05, 0x00, 0x04, '2', '1', '.', '5');
	TUNNEL(&r, &F.a, 0x04, 0x0f, 0x00, 0x05);	/* PUBREC for another */
	F.now += 30000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	rig_fini(&r);
}

static void publish_qos0_and_minus1_need_no_answer(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	PLAIN(&r, &F.a, 0x0b, 0x0c, 0x00, 0x00, 0x05, 0x00, 0x00, '2', '1', '.', '5');
	PLAIN(&r, &F.a, 0x07, 0x0c, 0x61, 0x00, 0x07, 0x00, 0x00);
	assert_int_equal(F.n_session_timer, 0);
	rig_fini(&r);
}

static void silence_timer_rearms_for_the_next_deadline(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	PLAIN(&r, &F.a, 0x10, 0x04, 0x04, 0x01, 0x00, 0x3c, METER1);
	F.now += 10000;
	PLAIN(&r, &F.a, 0x02, 0x16);
	assert_int_equal(F.n_session_timer, 1);
	F.now += 20000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	assert_int_equal(F.n_session_timer, 2);
	assert_int_equal(F.session_timer_ms, 10000);
	TUNNEL(&r, &F.a, 0x02, 0x17);
	F.now += 10000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	assert_int_equal(F.n_session_timer, 2);
	rig_fini(&r);
}

static void retransmission_keeps_the_first_deadline(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	PLAIN(&r, &F.a, 0x0b, 0x0c, 0x20, 0x00, 0x05, 0x00, 0x02, '2', '1', '.', '5');
	F.now += 15000;
	PLAIN(&r, &F.a, 0x0b, 0x0c, 0xa0, 0x00, 0x05, 0x00, 0x02, '2', '1', '.', '5');	/* DUP */
	F.now += 15000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	assert_int_equal(F.n_session_timer, 1);
	rig_fini(&r);
}

static void pending_answers_are_bounded(void **state)
{
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, NULL, 0), 0);
	for (uint8_t id = 1; id <= 20; id++) {
		rig_load(&r, &F.a, VEC(0x08, 0x12, 0x20, 0x00, id, 'a', '/', 'b'), 8);
		assert_int_equal(P->on_plain(&r.ctx, r.buf, &r.len, sizeof(r.buf)), PSKTUN_FORWARD);
	}
	assert_int_equal(F.n_session_timer, 1);
	F.now += 30000;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	assert_int_equal(F.n_session_timer, 1);
	rig_fini(&r);
}

static void answer_timeout_option_and_zero_turns_it_off(void **state)
{
	const struct psktun_option five[] = { OPT("answer_timeout_ms", "5000") };
	const struct psktun_option off[] = { OPT("answer_timeout_ms", "0") };
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, five, 1), 0);
	PLAIN(&r, &F.a, 0x02, 0x16);
	assert_int_equal(F.session_timer_ms, 5000);
	F.now += 4999;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 0);
	assert_int_equal(F.session_timer_ms, 1);
	F.now += 1;
	P->on_session_timer(r.td, &F.a, r.sd);
	assert_int_equal(F.n_silent, 1);
	rig_fini(&r);

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, off, 1), 0);
	assert_null(r.sd);
	PLAIN(&r, &F.a, 0x02, 0x16);
	assert_int_equal(F.n_session_timer, 0);
	rig_fini(&r);
}

/* --- options --- */

static void expect_refused(enum psktun_role role, const char *key, const char *value)
{
	const struct psktun_option o[] = { OPT(key, value) };
	void *td = NULL;

	fake_host_reset(role);
	print_message("%s = \"%s\"\n", key, value ? value : "(null)");
	assert_int_equal(P->init(&fake_host, &F.tunnel, o, 1, &td), -EINVAL);
	assert_null(td);
	assert_int_equal(F.n_log, 1);
}

static void bad_options_are_refused(void **state)
{
	expect_refused(PSKTUN_ROLE_GATEWAY, "gateway", "1");
	expect_refused(PSKTUN_ROLE_TERMINATOR, "colour", "blue");
	expect_refused(PSKTUN_ROLE_GATEWAY, "gateway_id", "256");
	expect_refused(PSKTUN_ROLE_GATEWAY, "gateway_id", "-1");
	expect_refused(PSKTUN_ROLE_GATEWAY, "gateway_id", "");
	expect_refused(PSKTUN_ROLE_GATEWAY, "gateway_id", "1x");
	expect_refused(PSKTUN_ROLE_GATEWAY, "gateway_id", NULL);
	expect_refused(PSKTUN_ROLE_GATEWAY, "gateway_id", "99999999999999999999999");
	expect_refused(PSKTUN_ROLE_GATEWAY, "advertise_s", "65536");
	expect_refused(PSKTUN_ROLE_GATEWAY, "advertise_s", "60");	/* no advertise_to */
	expect_refused(PSKTUN_ROLE_GATEWAY, "advertise_to", "192.168.10.255");
	expect_refused(PSKTUN_ROLE_GATEWAY, "advertise_to", "192.168.10.255:0");
	expect_refused(PSKTUN_ROLE_GATEWAY, "advertise_to", "192.168.10.255:65536");
	expect_refused(PSKTUN_ROLE_GATEWAY, "advertise_to", "lan:1883");
	expect_refused(PSKTUN_ROLE_GATEWAY, "advertise_to", "[ff02::1:1883");
	expect_refused(PSKTUN_ROLE_GATEWAY, "advertise_to", "ff02::1:1883");
	expect_refused(PSKTUN_ROLE_GATEWAY, "answer_timeout_ms", "30s");
	expect_refused(PSKTUN_ROLE_GATEWAY, "answer_timeout_ms", "86400001");
	expect_refused(PSKTUN_ROLE_GATEWAY, "forwarder", "127.0.0.1:10000");
	expect_refused(PSKTUN_ROLE_TERMINATOR, "forwarder", "");
	expect_refused(PSKTUN_ROLE_TERMINATOR, "gateway_id", "1");
	expect_refused(PSKTUN_ROLE_TERMINATOR, "advertise_s", "60");
	expect_refused(PSKTUN_ROLE_TERMINATOR, "answer_timeout_ms", "1000");
}

static void forwarder_socket_failure_fails_init(void **state)
{
	void *td = NULL;

	fake_host_reset(PSKTUN_ROLE_TERMINATOR);
	F.shared_rc = -EADDRINUSE;
	assert_int_equal(P->init(&fake_host, &F.tunnel, fwd_opt, 1, &td), -EADDRINUSE);
	assert_null(td);
	assert_int_equal(F.n_log, 1);
}

static void host_of_another_abi_is_refused(void **state)
{
	struct psktun_host old = fake_host;
	void *td = NULL;

	fake_host_reset(PSKTUN_ROLE_GATEWAY);
	old.abi = PSKTUN_PLUGIN_ABI + 1;
	assert_int_equal(P->init(&old, &F.tunnel, NULL, 0, &td), -EINVAL);
	old.abi = PSKTUN_PLUGIN_ABI;
	old.size = 8;
	assert_int_equal(P->init(&old, &F.tunnel, NULL, 0, &td), -EINVAL);
	assert_null(td);
}

static void good_options_are_accepted(void **state)
{
	const struct psktun_option o[] = {
		OPT("gateway_id", "255"),
		OPT("advertise_s", "0"),
		OPT("advertise_to", "10.0.0.255:1883"),
		OPT("answer_timeout_ms", "86400000"),
	};
	struct rig r;

	assert_int_equal(rig_init(&r, PSKTUN_ROLE_GATEWAY, o, 4), 0);
	assert_int_equal(F.n_tunnel_timer, 0);
	assert_int_equal(F.n_log, 0);
	assert_int_equal(PLAIN(&r, &F.a, 0x03, 0x01, 0x00), PSKTUN_REPLY);
	ASSERT_BUF(&r, 0x03, 0x02, 0xff);
	rig_fini(&r);
}

/* -n, start and reload ask check_options; init uses the same parser. */
static void check_options_refuses_what_init_refuses_with_one_sentence(void **state)
{
	const struct psktun_option good[] = { OPT("gateway_id", "7"), OPT("advertise_s", "0") };
	const struct psktun_option bad[] = { OPT("answer_timeout_ms", "banana") };
	const struct psktun_option gw_only[] = { OPT("gateway_id", "7") };
	const struct psktun_option lonely[] = { OPT("advertise_s", "60") };
	char err[256] = "";

	assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, good, 2, err, sizeof(err)), 0);
	assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, NULL, 0, err, sizeof(err)), 0);
	assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, bad, 1, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "option answer_timeout_ms = \"banana\": want milliseconds, 0..86400000 (0: off)");
	assert_int_equal(P->check_options(PSKTUN_ROLE_TERMINATOR, gw_only, 1, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "option gateway_id = \"7\": only for mode = \"gateway\"");
	assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, lonely, 1, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "option advertise_s needs advertise_to (\"ip:port\")");
	assert_int_equal(P->check_options(PSKTUN_ROLE_GATEWAY, bad, 1, err, 8), -EINVAL);
	assert_string_equal(err, "option ");	/* cut to fit, terminated */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(check_options_refuses_what_init_refuses_with_one_sentence),
		cmocka_unit_test(exports_abi_size_name_and_callbacks),
		cmocka_unit_test(searchgw_is_answered_locally_with_gwinfo),
		cmocka_unit_test(gwinfo_carries_option_gateway_id),
		cmocka_unit_test(searchgw_without_session_is_answered_too),
		cmocka_unit_test(lan_discovery_does_not_cross_the_tunnel),
		cmocka_unit_test(advertise_goes_out_every_advertise_s),
		cmocka_unit_test(advertise_to_takes_ipv6),
		cmocka_unit_test(no_advertise_by_default),
		cmocka_unit_test(identify_names_the_connect_clientid),
		cmocka_unit_test(identify_others_name_nobody),
		cmocka_unit_test(gateway_connect_of_another_clientid_is_refused_with_connack_3),
		cmocka_unit_test(gateway_refused_identity_gets_the_protocols_refusal),
		cmocka_unit_test(gateway_connect_of_own_clientid_is_forwarded),
		cmocka_unit_test(terminator_connect_of_another_clientid_is_refused_with_connack_3),
		cmocka_unit_test(terminator_connect_of_own_clientid_is_forwarded),
		cmocka_unit_test(pingreq_of_another_clientid_is_dropped_at_both_roles),
		cmocka_unit_test(encapsulation_from_a_client_is_refused),
		cmocka_unit_test(malformed_is_dropped_in_every_direction),
		cmocka_unit_test(disconnect_without_duration_closes_the_session),
		cmocka_unit_test(disconnect_with_duration_raises_idle_timeout),
		cmocka_unit_test(terminator_disconnect_is_forwarded_and_sleep_raises_idle),
		cmocka_unit_test(connect_keepalive_raises_idle_timeout),
		cmocka_unit_test(forwarder_opens_the_shared_socket),
		cmocka_unit_test(forwarder_wraps_with_the_psk_identity),
		cmocka_unit_test(forwarder_refusal_is_not_wrapped),
		cmocka_unit_test(forwarder_unwraps_a_reply_to_its_session),
		cmocka_unit_test(forwarder_round_trip),
		cmocka_unit_test(forwarder_unknown_node_id_is_dropped),
		cmocka_unit_test(forwarder_malformed_reply_is_dropped),
		cmocka_unit_test(connect_without_connack_reports_silence),
		cmocka_unit_test(connect_answered_by_connack_is_not_silence),
		cmocka_unit_test(pingreq_answered_by_pingresp_is_not_silence),
		cmocka_unit_test(pingreq_without_pingresp_reports_silence),
		cmocka_unit_test(subscribe_needs_suback_with_its_msgid),
		cmocka_unit_test(publish_qos1_needs_puback_qos2_needs_pubrec),
		cmocka_unit_test(publish_qos0_and_minus1_need_no_answer),
		cmocka_unit_test(silence_timer_rearms_for_the_next_deadline),
		cmocka_unit_test(retransmission_keeps_the_first_deadline),
		cmocka_unit_test(pending_answers_are_bounded),
		cmocka_unit_test(answer_timeout_option_and_zero_turns_it_off),
		cmocka_unit_test(bad_options_are_refused),
		cmocka_unit_test(forwarder_socket_failure_fails_init),
		cmocka_unit_test(host_of_another_abi_is_refused),
		cmocka_unit_test(good_options_are_accepted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
