/* psktun plugin ABI: what a protocol plugin exports and what the daemon offers it. */
#ifndef PSKTUN_PLUGIN_H
#define PSKTUN_PLUGIN_H

/*
 * Writing a plugin
 * ================
 * A plugin is a shared object `NAME.so` in the daemon's plugin directory
 * (`plugin = "NAME"` in a tunnel), built from one C file that includes only
 * this header (plugins/example/example.c is a whole one, about 100 lines).
 * It exports exactly one symbol, `psktun_plugin`, declared with
 *
 *	PSKTUN_PLUGIN_DECLARE(NAME, .version = "1.0", .check_options = ...,
 *			      .init = ..., .on_plain = ...);
 *
 * which fills in `abi`, `size` and `name`. The daemon dlopen()s the file,
 * looks up `psktun_plugin`, and refuses the plugin (with a log line naming
 * the file) unless `abi` equals the daemon's PSKTUN_PLUGIN_ABI, `size` is at
 * least the size the daemon knows, and `name` equals NAME. The plugin never
 * calls the daemon's own symbols: everything it may do is in the
 * `struct psktun_host` table handed to init().
 *
 * Build it with `cc -shared -fPIC -I$(includedir) NAME.c -o NAME.so`
 * (this header is installed as $(includedir)/psktun/plugin.h) and put it
 * in the plugin directory: the configured pkglibdir ($(libdir)/psktun)
 * unless the configuration's `plugin_dir` names another.
 *
 * Versioning
 *   PSKTUN_PLUGIN_ABI is one integer (as Knot DNS's module ABI), and the
 *   daemon loads only plugins built for exactly its own: a plugin names the
 *   one ABI it speaks by being built against this header (the declaring
 *   macro fills it in), so there is no list of versions to negotiate as in
 *   Mosquitto's mosquitto_plugin_version(). It goes up by one with every
 *   change that a plugin or a daemon built against the previous header
 *   would get wrong:
 *   - a member removed, moved, renamed or retyped, or a callback's
 *     arguments, result or meaning changed;
 *   - a new callback the daemon relies on (one whose absence changes what
 *     the daemon does, like check_options: without it a tunnel takes no
 *     options), or a new host function a plugin must check for;
 *   - a `reserved` slot taken for anything else than an optional callback
 *     or host function that a NULL (all reserved slots are zero) leaves
 *     harmless.
 * Growing the structs
 *   The three structs the ABI shares (psktun_plugin, psktun_host,
 *   psktun_dgram) grow only at their end, only into their `reserved` slots:
 *   a member is never moved, and a struct never grows past its reserved
 *   slots within one ABI. psktun_plugin and psktun_host begin with `abi`
 *   and `size` (the size their writer knew); psktun_dgram, which only the
 *   daemon makes, is zeroed before the daemon fills it in. A new
 *   optional member takes the first `reserved` slot of the same type, so
 *   `size` and every offset stay the same and the ABI keeps its number; a
 *   plugin reads a host function from a slot that was reserved only after
 *   checking that it is not NULL. Reserved slots are zero on both sides
 *   (the declaring macro's designated initialisers and the daemon's table
 *   leave them so); never write them.
 *   ABI 2 added check_options (ABI 1 plugins had no way to check options
 *   without opening a tunnel) and the host's worker().
 *
 * Threading
 *   Plugins are loaded once, before any worker thread starts (and, for a
 *   reload that names a new plugin, by the main thread before the workers
 *   prepare theirs), and stay loaded until the daemon exits.
 *   A terminator with `workers = N` runs N event loops on N threads, and
 *   each worker opens its own copy of every tunnel: init() runs once per
 *   worker, each with its own *tunnel_data. Every callback for one tunnel
 *   (its tunnel_data, its sessions, its timers) runs on that tunnel's
 *   worker thread, so per-tunnel and per-session state needs no lock;
 *   host->worker(t) says which worker (0 to N-1; always 0 for a gateway).
 *   State a plugin keeps outside tunnel_data (static variables) is shared
 *   by all workers: keep it read-only or lock it. check_options() may run
 *   on any thread. A callback must not block: it holds up every session of
 *   its worker.
 *
 * What a callback may do to the session it was given
 *   The session, its session_data and the tunnel's tunnel_data stay valid
 *   until the callback returns, whatever host functions it calls. Any host
 *   function may be called on it. report_silent() and rehandshake() only
 *   record the request: the daemon acts on it after the outermost callback
 *   has returned (the same datagram's verdict is applied after that). Then
 *   the session may be handshaking again on a fresh socket (its
 *   session_data and plugin timers are kept; datagrams sent to it are
 *   queued until the handshake completes) or, if the new handshake cannot
 *   start (its key has left the key file), closed, which calls
 *   session_close(). send_tunnel() on a session that has not yet begun its
 *   handshake starts it; should that fail at once in the same way, the
 *   session ends and session_close() runs before send_tunnel() returns.
 *   After session_close() a `struct psktun_session *` must not be used.
 *
 * Ownership
 *   Written at each member below. In short: what the daemon passes
 *   (buffers, options, contexts, addresses) belongs to the daemon and is
 *   valid only during the call; what the plugin stores in *tunnel_data and
 *   *session_data belongs to the plugin, which frees it in fini() and
 *   session_close(); strings the host returns are valid as stated there.
 *
 * Logging
 *   host->log() adds "tunnel NAME: plugin NAME: " to every line, and the
 *   daemon adds "tunnel NAME: plugin NAME: " (with file and line) to
 *   check_options()' message: write only what follows.
 *
 * Words used below
 *   tunnel side: the DTLS session (gateway: toward the cloud; terminator:
 *                toward the gateway or device). Datagrams seen here are
 *                already decrypted.
 *   plain side:  the cleartext UDP side (gateway: the meters on the LAN;
 *                terminator: the backend server).
 *
 * Datagram callbacks receive the datagram in a buffer the daemon owns:
 * `buf` holds `*len` bytes and has room for `cap` bytes (cap >= *len + 256,
 * and at least 2048). A plugin may rewrite it in place (and set `*len`) to
 * forward a changed datagram or to put a local reply there.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* See "Versioning" above. */
#define PSKTUN_PLUGIN_ABI 2

/* Opaque handles owned by the daemon. */
struct psktun_session;	/* one DTLS session: one meter on one tunnel */
struct psktun_tunnel;	/* one `tunnels` entry of the configuration */

enum psktun_role {
	PSKTUN_ROLE_GATEWAY = 1,
	PSKTUN_ROLE_TERMINATOR = 2,
};

/* What the daemon does with a datagram after a datagram callback. */
enum psktun_verdict {
	PSKTUN_FORWARD = 0,	/* send buf[0..*len) on to the other side */
	PSKTUN_DROP = 1,	/* discard; ctx->reason picks the counter */
	PSKTUN_REPLY = 2,	/* send buf[0..*len) back to where it came from
				 * (gateway plain side: the meter; terminator
				 * tunnel side: into the session); if
				 * ctx->reason is set it is also counted */
	PSKTUN_CLOSE = 3,	/* forward buf[0..*len) if *len > 0, then close
				 * the session (close_notify) */
};

/* Which drop counter a dropped (or locally refused) datagram increments. */
enum psktun_reason {
	PSKTUN_REASON_NONE = 0,
	PSKTUN_REASON_MALFORMED = 1,	/* dropped_malformed */
	PSKTUN_REASON_POLICY = 2,	/* dropped_policy */
	PSKTUN_REASON_UNKNOWN = 3,	/* dropped_unknown */
};

enum psktun_log_level {
	PSKTUN_LOG_ERR = 3,
	PSKTUN_LOG_WARNING = 4,
	PSKTUN_LOG_NOTICE = 5,
	PSKTUN_LOG_INFO = 6,
	PSKTUN_LOG_DEBUG = 7,
};

/* One `options = { key = value; }` entry; numbers and booleans arrive as
 * their text ("30", "true"). */
struct psktun_option {
	const char *key;
	const char *value;
};

/* psktun_dgram.flags, set by the daemon. */
/* Gateway on_plain, session NULL: the identity the datagram claims (what
 * identify() returned) may not be spoken for from its source: a `meters`
 * entry pins it to another. The plugin may put the protocol's refusal in
 * buf and return PSKTUN_REPLY (it goes back to the source); any other
 * verdict drops the datagram. The daemon counts dropped_policy either way. */
#define PSKTUN_DGRAM_IDENTITY_REFUSED	0x1u

/* Per-datagram context, filled by the daemon; `reason` and `target` are
 * written by the plugin. Owned by the daemon, valid during the call. */
struct psktun_dgram {
	struct psktun_tunnel *tunnel;
	void *tunnel_data;		/* what init() stored */
	struct psktun_session *session;	/* NULL: not known (see on_plain) */
	void *session_data;		/* what session_open() stored */
	const struct sockaddr *from;	/* where the datagram came from */
	enum psktun_reason reason;	/* out: counter for DROP/REPLY */
	struct psktun_session *target;	/* out: on_plain with session NULL,
					 * the session to forward into */
	uint32_t flags;			/* PSKTUN_DGRAM_* */
	uint32_t reserved32;
	uint64_t reserved[3];
};

/*
 * Functions the daemon offers. Every int result is 0 or a negative errno.
 * A `struct psktun_session *` stays valid until session_close() returns.
 */
struct psktun_host {
	uint32_t abi;			/* PSKTUN_PLUGIN_ABI */
	uint32_t size;			/* sizeof(struct psktun_host) */

	/* Log one line; the daemon prefixes "tunnel NAME: plugin NAME: ".
	 * Never log keys. */
	void (*log)(struct psktun_tunnel *t, enum psktun_log_level level,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

	/* The tunnel's role and name (valid until fini() returns). */
	enum psktun_role (*role)(struct psktun_tunnel *t);
	const char *(*tunnel_name)(struct psktun_tunnel *t);

	/* Milliseconds of a monotonic clock (the event loop's time). */
	uint64_t (*now_ms)(struct psktun_tunnel *t);

	/* Send a datagram on the plain side for this session (gateway: to the
	 * meter's most recent address; terminator: to the backend). */
	int (*send_plain)(struct psktun_session *s, const uint8_t *buf, size_t len);
	/* Send a datagram on the plain side of a tunnel to an explicit
	 * address (gateway: e.g. a LAN broadcast for ADVERTISE). */
	int (*send_plain_to)(struct psktun_tunnel *t, const struct sockaddr *to,
			     const uint8_t *buf, size_t len);
	/* Send a datagram into the DTLS session (queued while it handshakes). */
	int (*send_tunnel)(struct psktun_session *s, const uint8_t *buf, size_t len);

	/* The session's authenticated PSK identity (gateway: the meter's
	 * identity), not NUL-terminated; *len receives its length. The
	 * daemon owns it; valid until session_close() returns. */
	const char *(*identity)(struct psktun_session *s, size_t *len);
	/* Find a tunnel's session by identity; NULL if none is established. */
	struct psktun_session *(*find_session)(struct psktun_tunnel *t,
					       const char *identity, size_t len);

	/* Make the session's idle timeout at least `seconds` (never lowers
	 * it below the configured dtls.idle_timeout_s). */
	void (*set_idle_timeout)(struct psktun_session *s, uint32_t seconds);
	/* Report that something that needs an answer got none: the path may
	 * be dead; the daemon decides whether to re-handshake (gateway: it
	 * does, at most once a second). Called from a callback, it acts only
	 * after the callback returns (see "What a callback may do"). */
	void (*report_silent)(struct psktun_session *s);
	/* Ask for a new handshake on a fresh socket (gateway; ignored by a
	 * terminator and for a session not established). Deferred likewise. */
	void (*rehandshake)(struct psktun_session *s);

	/* One timer per session: on_session_timer() runs once after `ms`;
	 * arming again replaces the deadline; ms == 0 cancels. */
	int (*session_timer)(struct psktun_session *s, uint32_t ms);
	/* One timer per tunnel, likewise, calling on_tunnel_timer(). */
	int (*tunnel_timer)(struct psktun_tunnel *t, uint32_t ms);

	/* Terminator: talk to the backend from one shared UDP socket bound
	 * to `local` ("host:port") instead of one socket per session. Every
	 * datagram the backend sends there reaches on_plain() with
	 * session == NULL; the plugin names the session in ctx->target. */
	int (*use_shared_plain)(struct psktun_tunnel *t, const char *local);

	/* A plain-side peer's address in text, "1.2.3.4:5" or "[::1]:5",
	 * written into the caller's buf; returns buf. */
	const char *(*addr_str)(const struct sockaddr *sa, char *buf, size_t len);

	/* Which worker thread runs this tunnel's callbacks: 0 to workers-1
	 * (see "Threading"). */
	unsigned (*worker)(struct psktun_tunnel *t);

	void *reserved[7];		/* zero; see "Growing the structs" */
};

/*
 * The exported plugin. Unused callbacks may be NULL (NULL datagram
 * callbacks forward everything unchanged).
 */
struct psktun_plugin {
	uint32_t abi;			/* PSKTUN_PLUGIN_ABI */
	uint32_t size;			/* sizeof(struct psktun_plugin) */
	const char *name;		/* must equal the file name without .so */
	const char *version;		/* free text, logged at load */

	/*
	 * Checks a tunnel's options without opening anything (what Knot calls
	 * a module's config check): `psktund -n`,
	 * the start and every reload call it before any tunnel is touched, so
	 * a reload with options the plugin refuses leaves the running tunnels
	 * as they are. `role` is the daemon's mode. Returns 0, or -EINVAL after
	 * writing one sentence that names the option and says what is wrong
	 * into err[0..err_len) (NUL-terminated, cut to fit; the daemon adds
	 * file, line, tunnel and plugin name). `opts` belongs to the daemon. It
	 * keeps no state, calls no host
	 * function and may run on any thread, any number of times. NULL: the
	 * plugin takes no options, and the daemon refuses any.
	 * init() must accept whatever this accepts: let both use one parser.
	 */
	int (*check_options)(enum psktun_role role, const struct psktun_option *opts,
			     size_t n_opts, char *err, size_t err_len);

	/* Once per tunnel that names this plugin, with options check_options
	 * accepted. It may still fail (-EINVAL, -ENOMEM, or what a host
	 * function returned) after logging why. `opts` is valid only during
	 * the call: copy what you keep. Store per-tunnel state in
	 * *tunnel_data: the plugin owns it and frees it in fini(), which runs
	 * once for every init() that succeeded (never after one that failed:
	 * init() frees what it made before failing). During a reload a tunnel is initialised before the one
	 * it replaces is closed: the host shares that one's sockets with it
	 * (use_shared_plain on the same address), and the new tunnel sees no
	 * datagram before the reload commits. */
	int (*init)(const struct psktun_host *host, struct psktun_tunnel *t,
		    const struct psktun_option *opts, size_t n_opts,
		    void **tunnel_data);
	void (*fini)(void *tunnel_data);

	/*
	 * Gateway only: a datagram (owned by the daemon, read-only) from a LAN
	 * source that no `meters` entry
	 * and no earlier binding names. Write the identity it claims (e.g. an
	 * MQTT-SN CONNECT's ClientId) into id[0..*id_len) (room: *id_len on
	 * entry) and return 0; return -ENOENT if the datagram names nobody
	 * (the daemon drops it, dropped_unknown) or -EBADMSG if it is
	 * malformed (dropped_malformed). The daemon then checks the identity
	 * against the key file and, if it is there, binds the source to it,
	 * unless a `meters` entry pins that identity to another source: then
	 * it binds nothing and calls on_plain() with session NULL and
	 * PSKTUN_DGRAM_IDENTITY_REFUSED for the protocol's refusal.
	 */
	int (*identify)(void *tunnel_data, const struct sockaddr *from,
			const uint8_t *buf, size_t len, char *id, size_t *id_len);

	/* Datagram from the plain side. Gateway: from a meter, before it
	 * enters the meter's session (ctx->session is set; it may still be
	 * handshaking), or from a source that names no meter (session NULL:
	 * only a REPLY is honoured, e.g. to discovery; see also
	 * PSKTUN_DGRAM_IDENTITY_REFUSED). Terminator: from the backend,
	 * before it enters the session (ctx->session is NULL for the shared
	 * socket, which takes datagrams from the `connect` address only). */
	enum psktun_verdict (*on_plain)(struct psktun_dgram *ctx, uint8_t *buf,
					size_t *len, size_t cap);
	/* Datagram decrypted from the session, before it goes to the plain
	 * side. */
	enum psktun_verdict (*on_tunnel)(struct psktun_dgram *ctx, uint8_t *buf,
					 size_t *len, size_t cap);

	/* A session is created (gateway: before its handshake; terminator:
	 * when the handshake completes) and when it ends. What session_open()
	 * stores in *session_data the plugin owns, and frees in
	 * session_close(), which runs once for each session_open() (even one
	 * that failed: then *session_data is whatever it left there). A
	 * session_timer() armed for the session is cancelled before
	 * session_close() is called. */
	int (*session_open)(void *tunnel_data, struct psktun_session *s,
			    void **session_data);
	void (*session_close)(void *tunnel_data, struct psktun_session *s,
			      void *session_data);

	void (*on_session_timer)(void *tunnel_data, struct psktun_session *s,
				 void *session_data);
	void (*on_tunnel_timer)(void *tunnel_data);

	void *reserved[8];		/* zero; see "Growing the structs" */
};

/* The one symbol a plugin exports. */
#define PSKTUN_PLUGIN_SYMBOL "psktun_plugin"

/*
 * Declares that symbol: PSKTUN_PLUGIN_DECLARE(NAME, .member = value, ...)
 * with NAME the file name without .so (an identifier) and the callbacks as
 * designated initialisers. abi, size and name are filled in here: give
 * them again and the compiler warns (-Woverride-init, in -Wextra).
 */
#define PSKTUN_PLUGIN_DECLARE(plugin_name, ...)					\
	__attribute__((visibility("default")))					\
	const struct psktun_plugin psktun_plugin = {				\
		.abi = PSKTUN_PLUGIN_ABI,					\
		.size = sizeof(struct psktun_plugin),				\
		.name = #plugin_name,						\
		__VA_ARGS__							\
	}

#ifdef __cplusplus
}
#endif
#endif
