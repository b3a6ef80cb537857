/* fake_host: the recording host table shared by the plugin tests. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fake_host.h"

struct fake F;

void fake_host_reset(enum psktun_role role)
{
	memset(&F, 0, sizeof(F));
	F.tunnel.role = role;
	F.a.identity = "meter-0001";
	F.b.identity = "meter-0002";
	F.now = 1000;
}

static void record(struct fake_sent *s, const uint8_t *buf, size_t len)
{
	if (F.no_sends)
		fail_msg("the plugin sends nothing itself");
	s->n++;
	s->len = len;
	memcpy(s->buf, buf, len < sizeof(s->buf) ? len : sizeof(s->buf));
}

__attribute__((format(printf, 3, 4)))
static void fake_log(struct psktun_tunnel *t, enum psktun_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(F.log, sizeof(F.log), fmt, ap);
	va_end(ap);
	F.log_level = level;
	F.n_log++;
}

static enum psktun_role fake_role(struct psktun_tunnel *t)
{
	return t->role;
}

static const char *fake_tunnel_name(struct psktun_tunnel *t)
{
	return "t1";
}

static uint64_t fake_now_ms(struct psktun_tunnel *t)
{
	return F.now;
}

static int fake_send_plain(struct psktun_session *s, const uint8_t *buf, size_t len)
{
	F.plain_session = s;
	record(&F.plain, buf, len);
	return 0;
}

static int fake_send_plain_to(struct psktun_tunnel *t, const struct sockaddr *to,
			      const uint8_t *buf, size_t len)
{
	memcpy(&F.plain_to_addr, to, to->sa_family == AF_INET6 ?
	       sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	record(&F.plain_to, buf, len);
	return 0;
}

static int fake_send_tunnel(struct psktun_session *s, const uint8_t *buf, size_t len)
{
	record(&F.tunnel_sent, buf, len);
	return 0;
}

static const char *fake_identity(struct psktun_session *s, size_t *len)
{
	*len = strlen(s->identity);
	return s->identity;
}

static struct psktun_session *fake_find_session(struct psktun_tunnel *t, const char *id, size_t len)
{
	if (len == strlen(F.a.identity) && !memcmp(id, F.a.identity, len))
		return &F.a;
	if (len == strlen(F.b.identity) && !memcmp(id, F.b.identity, len))
		return &F.b;
	return NULL;
}

static void fake_set_idle_timeout(struct psktun_session *s, uint32_t seconds)
{
	F.n_idle++;
	F.idle_s = seconds;
}

static void fake_report_silent(struct psktun_session *s)
{
	F.n_silent++;
}

static void fake_rehandshake(struct psktun_session *s)
{
	F.n_rehandshake++;
}

static int fake_session_timer(struct psktun_session *s, uint32_t ms)
{
	F.n_session_timer++;
	F.session_timer_ms = ms;
	return 0;
}

static int fake_tunnel_timer(struct psktun_tunnel *t, uint32_t ms)
{
	F.n_tunnel_timer++;
	F.tunnel_timer_ms = ms;
	return 0;
}

static int fake_use_shared_plain(struct psktun_tunnel *t, const char *local)
{
	F.n_shared++;
	snprintf(F.shared, sizeof(F.shared), "%s", local);
	return F.shared_rc;
}

static const char *fake_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	snprintf(buf, len, "?");
	return buf;
}

static unsigned fake_worker(struct psktun_tunnel *t)
{
	return 0;
}

const struct psktun_host fake_host = {
	.abi = PSKTUN_PLUGIN_ABI,
	.size = sizeof(struct psktun_host),
	.log = fake_log,
	.role = fake_role,
	.tunnel_name = fake_tunnel_name,
	.now_ms = fake_now_ms,
	.send_plain = fake_send_plain,
	.send_plain_to = fake_send_plain_to,
	.send_tunnel = fake_send_tunnel,
	.identity = fake_identity,
	.find_session = fake_find_session,
	.set_idle_timeout = fake_set_idle_timeout,
	.report_silent = fake_report_silent,
	.rehandshake = fake_rehandshake,
	.session_timer = fake_session_timer,
	.tunnel_timer = fake_tunnel_timer,
	.use_shared_plain = fake_use_shared_plain,
	.addr_str = fake_addr_str,
	.worker = fake_worker,
};
