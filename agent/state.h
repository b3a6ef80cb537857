/* state: `state_file`, resumption state kept across a restart. */
#ifndef PSKTUN_STATE_H
#define PSKTUN_STATE_H

struct daemon;

void state_save(struct daemon *d);	/* at SIGTERM/SIGINT, before the sessions close */
void state_load(struct daemon *d);	/* at start, once the tunnels are open */

#endif
