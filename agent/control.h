/* control: the control socket (psktunctl's commands). */
#ifndef PSKTUN_CONTROL_H
#define PSKTUN_CONTROL_H
#include <stddef.h>

struct daemon;

int control_start(struct daemon *d, const char *path);
void control_stop(struct daemon *d);
void control_sessions_text(struct daemon *d, char **out, size_t *len);
void control_gathered(struct daemon *d);
/* The leader's reload number `seq` has ended: r == 0 applied, else `why`. */
void control_reloaded(struct daemon *d, unsigned seq, int r, const char *why);

#endif
