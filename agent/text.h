/* text: a growing buffer of formatted text, for the control socket's answers. */
#ifndef PSKTUN_TEXT_H
#define PSKTUN_TEXT_H
#include <stddef.h>

struct text {
	char *p;		/* malloc'd, NUL-terminated once anything was written; owned */
	size_t len, cap;
};

/* Appends; on failure (out of memory) the text stays as it was. */
void text_printf(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
