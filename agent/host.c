/* host: the table plugins call (psktun_host); each entry goes down into tunnel.c, session.c or plugin.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include "addr.h"
#include "daemon.h"
#include "log.h"
#include "pluginhost.h"
#include "role.h"
#include "session.h"
#include "tunnel.h"

#define T(x) ((struct tunnel *)(x))
#define S(x) ((struct session *)(x))
#define PS(x) ((struct psktun_session *)(x))

static void host_log(struct psktun_tunnel *pt, enum psktun_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	if (!psktun_log_enabled((int)level))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* The one prefix: plugins write only what follows it. */
	psktun_log((int)level, "tunnel %s: plugin %s: %s", T(pt)->conf.name, plugin_name(T(pt)->plugin), line);
}

static enum psktun_role host_role(struct psktun_tunnel *pt)
{
	return T(pt)->mode == PSKTUN_MODE_GATEWAY ? PSKTUN_ROLE_GATEWAY : PSKTUN_ROLE_TERMINATOR;
}

static const char *host_tunnel_name(struct psktun_tunnel *pt)
{
	return T(pt)->conf.name;
}

static uint64_t host_now_ms(struct psktun_tunnel *pt)
{
	return daemon_now_ms(T(pt)->d);
}

static int host_send_plain(struct psktun_session *ps, const uint8_t *buf, size_t len)
{
	return session_send_plain(S(ps), buf, len);
}

static int host_send_plain_to(struct psktun_tunnel *pt, const struct sockaddr *to, const uint8_t *buf,
			      size_t len)
{
	return tunnel_send_plain(T(pt), NULL, to, buf, len);
}

static int host_send_tunnel(struct psktun_session *ps, const uint8_t *buf, size_t len)
{
	return session_send_tunnel(S(ps), buf, len);
}

static const char *host_identity(struct psktun_session *ps, size_t *len)
{
	*len = S(ps)->identity_len;
	return S(ps)->identity;
}

static struct psktun_session *host_find_session(struct psktun_tunnel *pt, const char *id, size_t len)
{
	struct session *s = session_find_identity(T(pt), id, len);

	return s && s->state == SESSION_ESTABLISHED ? PS(s) : NULL;
}

static void host_set_idle_timeout(struct psktun_session *ps, uint32_t seconds)
{
	session_set_idle(S(ps), seconds);
}

static void host_report_silent(struct psktun_session *ps)
{
	plugin_report_silent(S(ps));
}

static void host_rehandshake(struct psktun_session *ps)
{
	plugin_rehandshake(S(ps));
}

static int host_session_timer(struct psktun_session *ps, uint32_t ms)
{
	return plugin_session_timer(S(ps), ms);
}

static int host_tunnel_timer(struct psktun_tunnel *pt, uint32_t ms)
{
	return plugin_tunnel_timer(T(pt), ms);
}

static unsigned host_worker(struct psktun_tunnel *pt)
{
	return T(pt)->d->worker;
}

static int host_use_shared_plain(struct psktun_tunnel *pt, const char *local)
{
	struct sockaddr_storage ss;

	if (!T(pt)->ops->use_shared_plain)
		return -ENOTSUP;
	if (psktun_addr_parse(local, true, &ss, NULL) < 0) {
		log_err("tunnel %s: '%s' is not a numeric host:port", T(pt)->conf.name, local);
		return -EINVAL;
	}
	return T(pt)->ops->use_shared_plain(T(pt), (struct sockaddr *)&ss);
}

static const char *host_addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	return psktun_addr_format(sa, buf, len);
}

const struct psktun_host plugin_host = {
	.abi = PSKTUN_PLUGIN_ABI,
	.size = sizeof(struct psktun_host),
	.log = host_log,
	.role = host_role,
	.tunnel_name = host_tunnel_name,
	.now_ms = host_now_ms,
	.send_plain = host_send_plain,
	.send_plain_to = host_send_plain_to,
	.send_tunnel = host_send_tunnel,
	.identity = host_identity,
	.find_session = host_find_session,
	.set_idle_timeout = host_set_idle_timeout,
	.report_silent = host_report_silent,
	.rehandshake = host_rehandshake,
	.session_timer = host_session_timer,
	.tunnel_timer = host_tunnel_timer,
	.use_shared_plain = host_use_shared_plain,
	.addr_str = host_addr_str,
	.worker = host_worker,
};
