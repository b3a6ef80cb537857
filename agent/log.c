/* log: formats one line per event and sends it to stderr (-f) or syslog. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static bool log_to_stderr = true;	/* until psktun_log_init says otherwise */
static long log_pid;			/* stderr is used only in the foreground: no fork after init */
static bool log_syslog_open;
static int log_threshold = LOG_NOTICE;
static int log_stamp = -1;		/* stderr lines get a time: 1, no: 0, not yet decided: -1 */

static const char *level_name(int level)
{
	static const char *const names[] = {
		[LOG_EMERG] = "emerg",	[LOG_ALERT] = "alert",
		[LOG_CRIT] = "crit",	[LOG_ERR] = "error",
		[LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
		[LOG_INFO] = "info",	[LOG_DEBUG] = "debug",
	};

	if (level < LOG_EMERG || level > LOG_DEBUG)
		return "?";
	return names[level];
}

/*
 * The journal stamps every line itself; a terminal or a file does not. systemd
 * names the stream it gave us in JOURNAL_STREAM ("dev:ino"), which is our stderr
 * only while fd 2 still is that stream (a child of a journaled shell may have
 * redirected it to a file, and inherits the variable all the same).
 */
static bool stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char end;

	if (!js || sscanf(js, "%llu:%llu%c", &dev, &ino, &end) != 2)
		return false;
	if (fstat(STDERR_FILENO, &st) < 0)
		return false;
	return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

/* ISO 8601 local time to the millisecond with the UTC offset: 2026-11-29T22:51:24.123+01:00 */
static void format_stamp(char *buf, size_t size)
{
	struct timespec ts;
	struct tm tm;
	char date[32], zone[8];

	buf[0] = '\0';
	if (clock_gettime(CLOCK_REALTIME, &ts) < 0 || !localtime_r(&ts.tv_sec, &tm))
		return;
	if (!strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) ||
	    strftime(zone, sizeof(zone), "%z", &tm) != 5)
		return;
	snprintf(buf, size, "%s.%03ld%.3s:%.2s ", date, ts.tv_nsec / 1000000L, zone, zone + 3);
}

void psktun_log_init(bool to_stderr, int verbosity)
{
	int t = LOG_NOTICE + verbosity;

	if (t > LOG_DEBUG)
		t = LOG_DEBUG;
	if (t < LOG_EMERG)
		t = LOG_EMERG;
	log_threshold = t;
	log_to_stderr = to_stderr;
	log_pid = getpid();	/* before any worker thread starts */
	log_stamp = !stderr_is_journal();
	tzset();		/* localtime_r needs the zone; read it once, before threads */
	if (!to_stderr && !log_syslog_open) {
		openlog("psktund", LOG_PID, LOG_DAEMON);
		log_syslog_open = true;
	}
}

void psktun_log_deinit(void)
{
	if (log_syslog_open)
		closelog();
	log_syslog_open = false;
	log_to_stderr = true;
	log_threshold = LOG_NOTICE;
	log_stamp = -1;
}

bool psktun_log_enabled(int level)
{
	return level <= log_threshold;
}

void psktun_vlog(int level, const char *fmt, va_list ap)
{
	int saved_errno = errno;	/* callers may log and then look at errno */
	char buf[1024];

	if (!psktun_log_enabled(level))
		return;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* One event, one line: a name from a datagram or a file must not forge more. */
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = ' ';

	if (log_to_stderr) {
		char stamp[64] = "";

		if (!log_pid)
			log_pid = getpid();
		if (log_stamp < 0)
			log_stamp = !stderr_is_journal();
		if (log_stamp)
			format_stamp(stamp, sizeof(stamp));
		fprintf(stderr, "%spsktund[%ld]: %s: %s\n", stamp, log_pid, level_name(level), buf);
		fflush(stderr);
	} else {
		syslog(level, "%s", buf);
	}
	errno = saved_errno;
}

static bool bare_ok(const char *s, size_t len)
{
	if (!len || (len == 1 && s[0] == '-'))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '=')
			return false;
	}
	return true;
}

const char *psktun_quote(const char *s, size_t len, char *buf, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	if (cap < 3)
		return "";
	if (bare_ok(s, len) && len < cap) {
		memcpy(buf, s, len);
		buf[len] = '\0';
		return buf;
	}
	buf[o++] = '"';
	for (size_t i = 0; i < len && o + 4 + 2 <= cap; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			buf[o++] = '\\';
			buf[o++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
		} else if (c < 0x20 || c >= 0x7f) {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		} else {
			buf[o++] = (char)c;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

void psktun_log(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	psktun_vlog(level, fmt, ap);
	va_end(ap);
}
