/* failure: why a handshake failed (or was refused): the names `show`, the metrics and psktunctl share. */
#ifndef PSKTUN_FAILURE_H
#define PSKTUN_FAILURE_H
#include <stdbool.h>

/*
 * Why a handshake failed (or was refused): X(slug, terminator text, gateway text).
 * The slug is what `show --dump` and the metrics' reason label carry; the
 * texts are the log's and `show`'s. Shared with psktunctl.
 */
#define PSKTUN_FAILURES(X) \
	X(unknown_identity, "unknown identity", "unknown identity") \
	X(wrong_key, "the client's Finished did not verify: wrong key?", \
	  "our Finished was not accepted: wrong key?") \
	X(silent, "the client went silent after the cookie", \
	  "the server stopped answering during the handshake") \
	X(no_answer, "no answer from the client", "no answer from the server") \
	X(too_many_handshakes, "too many handshakes", "too many handshakes") \
	X(no_cipher_suite, "no cipher suite in common (handshake_failure alert sent)", \
	  "no cipher suite in common") \
	X(peer_alert, "the client ended the handshake", "the server ended the handshake") \
	X(resolve, "cannot resolve the backend", "cannot resolve the server") \
	X(error, "handshake error", "handshake error")

enum psktun_failure {
#define X(slug, t, g) PSKTUN_FAIL_##slug,
	PSKTUN_FAILURES(X)
#undef X
	PSKTUN_FAIL_MAX
};

const char *psktun_failure_slug(enum psktun_failure f);
const char *psktun_failure_text(enum psktun_failure f, bool gateway);
#endif
