/* notify: systemd's sd_notify protocol, written directly. */
#ifndef PSKTUN_NOTIFY_H
#define PSKTUN_NOTIFY_H

void notify_systemd(const char *state);
#endif
