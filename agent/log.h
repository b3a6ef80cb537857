/* log: one place that writes log lines, to stderr (-f) or syslog. */
#ifndef PSKTUN_LOG_H
#define PSKTUN_LOG_H
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

/*
 * Levels are syslog's. The default threshold is LOG_NOTICE; each -v lowers it.
 * A stderr line starts with an ISO 8601 time unless stderr is the journal
 * (JOURNAL_STREAM names fd 2), which adds its own.
 */
void psktun_log_init(bool to_stderr, int verbosity);
void psktun_log_deinit(void);
bool psktun_log_enabled(int level);
void psktun_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void psktun_vlog(int level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/*
 * A name that came from a key file or a datagram (an identity), as one
 * token in a log line or a `key=value` control answer, so that no name can
 * pass for more fields: bare when every byte is printable ASCII other than
 * space, '"', '\\' and '=' (and it is not "" or "-"), else in double quotes
 * with \" \\ \n \r \t and \xHH for any other byte below 0x20, 0x7f or
 * above (UTF-8 comes out as \xHH: the output stays ASCII). buf needs
 * PSKTUN_QUOTED_MAX(len) bytes; a longer name is cut (its quote still closed).
 */
#define PSKTUN_QUOTED_MAX(len) (4 * (len) + 3)
const char *psktun_quote(const char *s, size_t len, char *buf, size_t cap);

#define log_err(...)     psktun_log(LOG_ERR, __VA_ARGS__)
#define log_warn(...)    psktun_log(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  psktun_log(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    psktun_log(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   do { if (psktun_log_enabled(LOG_DEBUG)) psktun_log(LOG_DEBUG, __VA_ARGS__); } while (0)
#endif
