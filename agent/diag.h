/* diag: problems found while loading configuration or keys, as "FILE:LINE: message". */
#ifndef PSKTUN_DIAG_H
#define PSKTUN_DIAG_H
#include <stdarg.h>
#include <stddef.h>

#define PSKTUN_DIAG_MAX 64

struct psktun_diag {
	size_t n;			/* problems recorded (at most PSKTUN_DIAG_MAX kept) */
	size_t lost;			/* problems past PSKTUN_DIAG_MAX */
	char *line[PSKTUN_DIAG_MAX];	/* owned; "FILE:LINE: message" or "FILE: message" when line <= 0 */
};

void psktun_diag_init(struct psktun_diag *d);
void psktun_diag_deinit(struct psktun_diag *d);
void psktun_diag_add(struct psktun_diag *d, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The same with a va_list (addition). */
void psktun_diag_vadd(struct psktun_diag *d, const char *file, int line, const char *fmt, va_list ap)
	__attribute__((format(printf, 4, 0)));
#endif
