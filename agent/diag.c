/* diag: collects "FILE:LINE: message" problem lines for the caller to print. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diag.h"

void psktun_diag_init(struct psktun_diag *d)
{
	memset(d, 0, sizeof(*d));
}

void psktun_diag_deinit(struct psktun_diag *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->line[i]);
	memset(d, 0, sizeof(*d));
}

void psktun_diag_vadd(struct psktun_diag *d, const char *file, int line, const char *fmt, va_list ap)
{
	char msg[1024];
	char *s;
	int r;

	if (!d)
		return;
	if (d->n >= PSKTUN_DIAG_MAX) {
		d->lost++;
		return;
	}
	vsnprintf(msg, sizeof(msg), fmt, ap);

	if (!file)
		r = asprintf(&s, "%s", msg);
	else if (line > 0)
		r = asprintf(&s, "%s:%d: %s", file, line, msg);
	else
		r = asprintf(&s, "%s: %s", file, msg);
	if (r < 0) {
		d->lost++;	/* out of memory: count it, the caller still fails */
		return;
	}
	d->line[d->n++] = s;
}

void psktun_diag_add(struct psktun_diag *d, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	psktun_diag_vadd(d, file, line, fmt, ap);
	va_end(ap);
}
