/* notify: tells systemd (Type=notify) that psktund is ready, reloading or stopping, without libsystemd. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include "notify.h"

void notify_systemd(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char msg[128];
	size_t len;
	int fd;

	if (!path || !*path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sun.sun_path))
		return;
	memcpy(sun.sun_path, path, strlen(path));
	if (sun.sun_path[0] == '@')
		sun.sun_path[0] = '\0';	/* abstract namespace */
	len = strlen(state);
	if (!strcmp(state, "RELOADING=1")) {
		/* systemd 253+ wants the time the reload began. */
		struct timespec ts;

		clock_gettime(CLOCK_MONOTONIC, &ts);
		snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
			 (unsigned long long)ts.tv_sec * 1000000ULL + ts.tv_nsec / 1000);
		state = msg;
		len = strlen(msg);
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *)&sun,
	       offsetof(struct sockaddr_un, sun_path) + strlen(path));
	close(fd);
}
