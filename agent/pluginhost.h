/* pluginhost: the daemon's side of the plugin ABI: plugin.c loads plugins and calls into them, host.c is what they call. */
#ifndef PSKTUN_PLUGINHOST_H
#define PSKTUN_PLUGINHOST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include "config.h"
#include "diag.h"
#include "psktun/plugin.h"

struct plugin;
struct session;
struct tunnel;

int plugin_load(const char *dir, const char *name, const struct plugin **out);
const struct plugin *plugin_find(const char *name);	/* loaded already, or NULL */
/* Every tunnel's plugin loaded (load) or found, and its options checked;
 * problems go to diag as FILE:LINE. */
int plugin_check_config(const struct psktun_config *cfg, bool load, struct psktun_diag *diag);
void plugin_unload_all(void);
int plugin_tunnel_init(struct tunnel *t, const struct psktun_config *cfg, struct psktun_diag *diag);
void plugin_tunnel_timer_start(struct tunnel *t);
void plugin_tunnel_fini(struct tunnel *t);
int plugin_identify(struct tunnel *t, const struct sockaddr *from, const uint8_t *buf,
		    size_t len, char *id, size_t *id_len);
enum psktun_verdict plugin_on_plain(struct tunnel *t, struct session *s, const struct sockaddr *from,
				    uint8_t *buf, size_t *len, size_t cap, enum psktun_reason *reason,
				    struct session **target);
/* Gateway: the protocol's refusal of a datagram whose claimed identity its
 * source may not speak for; true with buf[0..*len) to send back, or false. */
bool plugin_refusal(struct tunnel *t, const struct sockaddr *from, uint8_t *buf, size_t *len,
		    size_t cap);
enum psktun_verdict plugin_on_tunnel(struct session *s, uint8_t *buf, size_t *len, size_t cap,
				     enum psktun_reason *reason);
void plugin_session_open(struct session *s);
void plugin_session_close(struct session *s);
/* Around every call into a plugin: what it asks of a session (report_silent,
 * rehandshake) runs when the outermost call on this thread ends. */
void plugin_call_begin(void);
void plugin_call_end(void);
/* What a plugin asks of a session (report_silent, rehandshake): deferred while a call runs. */
void plugin_report_silent(struct session *s);
void plugin_rehandshake(struct session *s);
/* A plugin's timers: 0 stops one. */
int plugin_session_timer(struct session *s, uint32_t ms);
int plugin_tunnel_timer(struct tunnel *t, uint32_t ms);
const char *plugin_name(const struct plugin *pl);	/* "?" for none */
/* host.c: the table every plugin gets (psktun/plugin.h); its entries call down into the tunnel. */
extern const struct psktun_host plugin_host;

#endif
