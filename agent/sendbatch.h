/* sendbatch: datagrams for one shared socket, collected during a loop iteration and sent with one sendmmsg. */
#ifndef PSKTUN_SENDBATCH_H
#define PSKTUN_SENDBATCH_H
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <uv.h>

#define SENDBATCH_MAX 32
#define SENDBATCH_BYTES 32768

struct sendbatch {
	uv_check_t check;	/* first: flushes after the loop's I/O phase; its close frees the batch */
	uv_idle_t idle;		/* flushes what a timer or signal added: with an idle handle
				 * active the loop does not wait in poll, where the check
				 * phase would come only after the next event */
	uv_close_cb close_cb;
	uv_udp_t *sock;
	unsigned n;
	size_t used;
	uint64_t *dropped;	/* counter for datagrams the kernel refused */
	struct mmsghdr msg[SENDBATCH_MAX];
	struct iovec iov[SENDBATCH_MAX];
	struct sockaddr_storage addr[SENDBATCH_MAX];
	uint8_t bytes[SENDBATCH_BYTES];
};

void sendbatch_init(struct sendbatch *b, uv_loop_t *loop, uv_udp_t *sock, uint64_t *dropped);
/* Copies the datagram; sends at once when it does not fit. 0 or a negative errno. */
int sendbatch_add(struct sendbatch *b, const struct sockaddr *to, const void *data, size_t len);
void sendbatch_flush(struct sendbatch *b);
/* Flushes, then closes its handles; close_cb gets the check handle, the last. */
void sendbatch_deinit(struct sendbatch *b, uv_close_cb close_cb);
#endif
