/* uringrx: session sockets' receives kept armed in io_uring: multishot recvmsg into a ring of provided buffers. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include "uringrx.h"

#ifndef HAVE_LIBURING

int uring_rx_new(uv_loop_t *loop, size_t max_dgram, uint8_t *scratch, size_t scratch_len,
		 uint64_t *nobufs, struct uring_rx **out, const char **why)
{
	*why = "built without liburing";
	return -ENOSYS;
}

void uring_rx_describe(const struct uring_rx *u, unsigned *bufs, unsigned *max, unsigned *bytes)
{
	*bufs = *max = *bytes = 0;
}

int uring_rx_arm(struct uring_rx *u, struct uring_rx_sock *rs)
{
	return -ENOSYS;
}

bool uring_rx_cancel(struct uring_rx *u, struct uring_rx_sock *rs)
{
	return false;
}

void uring_rx_close(struct uring_rx *u)
{
}

#else
#include <sys/mman.h>
#include <liburing.h>
#include "uringloop.h"

#define BGID 0
#define IGNORED NULL		/* user_data of cancellations: their results need no reading */

struct uring_rx {
	struct uring_loop lp;	/* submits after the loop's I/O phase; the ring's descriptor */
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	size_t br_bytes;
	struct msghdr msg;	/* the template of every recvmsg: no name, no control */
	uint8_t *chunk[32768 / URING_RX_CHUNK];	/* URING_RX_CHUNK buffers each */
	unsigned nbufs, max_bufs, buf_bytes;
	bool short_of_bufs;	/* a receive found none since the last reap */
	unsigned armed;		/* sockets the kernel holds */
	uint8_t *scratch;
	size_t scratch_len;
	uint64_t *nobufs;
};

static int submit(struct uring_rx *u)
{
	int r = 0;

	while (io_uring_sq_ready(&u->ring)) {
		r = io_uring_submit(&u->ring);
		if (r != -EINTR && r != -EAGAIN && r != -EBUSY)
			break;
	}
	return r < 0 ? r : 0;
}

static struct io_uring_sqe *get_sqe(struct uring_rx *u)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

	if (!sqe) {		/* a full queue: submit it now */
		submit(u);
		sqe = io_uring_get_sqe(&u->ring);
	}
	return sqe;
}


static int arm(struct uring_rx *u, struct uring_rx_sock *rs)
{
	struct io_uring_sqe *sqe = get_sqe(u);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_recvmsg_multishot(sqe, rs->fd, &u->msg, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data(sqe, rs);
	if (!rs->armed)
		u->armed++;
	rs->armed = true;
	uring_loop_want(&u->lp);
	return 0;
}

static uint8_t *buf_of(struct uring_rx *u, unsigned bid)
{
	return u->chunk[bid / URING_RX_CHUNK] + (size_t)(bid % URING_RX_CHUNK) * u->buf_bytes;
}

static void give_back(struct uring_rx *u, unsigned bid)
{
	io_uring_buf_ring_add(u->br, buf_of(u, bid), u->buf_bytes, bid,
			      io_uring_buf_ring_mask(u->max_bufs), 0);
	io_uring_buf_ring_advance(u->br, 1);
}

/* URING_RX_CHUNK more buffers (fewer up to max_bufs) for the kernel: 0 or -ENOMEM. */
static int grow(struct uring_rx *u)
{
	unsigned n = u->max_bufs - u->nbufs, mask = io_uring_buf_ring_mask(u->max_bufs);
	uint8_t *c;

	if (n > URING_RX_CHUNK)
		n = URING_RX_CHUNK;
	if (!n || !(c = malloc((size_t)n * u->buf_bytes)))
		return -ENOMEM;
	u->chunk[u->nbufs / URING_RX_CHUNK] = c;
	for (unsigned i = 0; i < n; i++)
		io_uring_buf_ring_add(u->br, c + (size_t)i * u->buf_bytes, u->buf_bytes, u->nbufs + i,
				      mask, i);
	io_uring_buf_ring_advance(u->br, n);
	u->nbufs += n;
	return 0;
}

/* One completion: a datagram (or an error) for rs, or the end of its recvmsg. */
static void complete(struct uring_rx *u, struct uring_rx_sock *rs, int res, unsigned flags)
{
	bool more = flags & IORING_CQE_F_MORE, truncated = false, ending = rs->ending;
	ssize_t len = res;

	if (flags & IORING_CQE_F_BUFFER) {
		unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
		uint8_t *buf = buf_of(u, bid);
		struct io_uring_recvmsg_out *o = io_uring_recvmsg_validate(buf, res, &u->msg);

		len = -EINVAL;
		if (o) {
			len = io_uring_recvmsg_payload_length(o, res, &u->msg);
			truncated = o->flags & MSG_TRUNC;
			if ((size_t)len > u->scratch_len) {
				len = u->scratch_len;
				truncated = true;
			}
			memcpy(u->scratch, io_uring_recvmsg_payload(o, &u->msg), len);
		}
		give_back(u, bid);
	}
	if (!more) {
		rs->armed = false;
		u->armed--;
	}
	if (ending) {
		if (!more && rs->on_ended)
			rs->on_ended(rs);	/* rs may be gone now */
		return;
	}
	if (res == -ENOBUFS) {	/* not read: it waits in the socket */
		(*u->nobufs)++;
		u->short_of_bufs = true;
	} else if (res != -ECANCELED && len != -EINVAL) {
		rs->on_recv(rs, len, u->scratch, truncated);
	}
	/* Ended without a cancel (no buffer, a socket error, the kernel's own
	 * reasons): armed again, unless the callback closed it. */
	if (!more && !rs->ending && (res >= 0 || res == -ENOBUFS || res == -ECONNREFUSED ||
				     res == -EHOSTUNREACH || res == -ENETUNREACH || res == -EMSGSIZE))
		arm(u, rs);
}

/* At most `max` completions: the rest wait for the next loop iteration (the
 * ring's descriptor stays readable), after the shared sockets had their turn. */
static void reap(struct uring_rx *u, unsigned max)
{
	struct io_uring_cqe *cqe;

	/* One at a time: a delivery may submit (a socket closes), and the
	 * kernel may add completions meanwhile. */
	while (max-- && io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		void *rs = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		unsigned flags = cqe->flags;

		io_uring_cqe_seen(&u->ring, cqe);
		if (rs)
			complete(u, rs, res, flags);
	}
	/* More datagrams came between two reaps than there were buffers: more
	 * buffers, once a reap, up to the bound (the re-arms take them). */
	if (u->short_of_bufs) {
		u->short_of_bufs = false;
		grow(u);
	}
}

static void turn(void *arg)
{
	struct uring_rx *u = arg;

	submit(u);
	reap(u, URING_RX_REAP);	/* what the submission completed at once */
	if (!io_uring_sq_ready(&u->ring))	/* else re-arms: the next turn, without waiting */
		uring_loop_rest(&u->lp);
}

static void on_ring(void *arg)
{
	reap(arg, URING_RX_REAP);
}

static int env_bufs(void)
{
	const char *env = getenv("PSKTUN_IO_URING_RX_BUFS");
	long n;

	if (!env)
		return URING_RX_BUFS_MAX;
	n = strtol(env, NULL, 10);
	if (n < 1 || n > 32768 || (n & (n - 1)))
		return -EINVAL;
	return (int)n;
}

static bool kernel_has_multishot_recvmsg(struct io_uring *ring)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	bool yes;

	/* Both came with Linux 6.0; liburing has no probe for the flag itself. */
	yes = p && io_uring_opcode_supported(p, IORING_OP_SEND_ZC);
	if (p)
		io_uring_free_probe(p);
	return yes;
}

static void rx_free(struct uring_rx *u)
{
	if (u->br)
		munmap(u->br, u->br_bytes);
	for (unsigned i = 0; i * URING_RX_CHUNK < u->nbufs; i++)
		free(u->chunk[i]);
	free(u);
}

int uring_rx_new(uv_loop_t *loop, size_t max_dgram, uint8_t *scratch, size_t scratch_len,
		 uint64_t *nobufs, struct uring_rx **out, const char **why)
{
	const char *env = getenv("PSKTUN_IO_URING");
	struct io_uring_params p;
	struct io_uring_buf_reg reg;
	struct uring_rx *u;
	int n = env_bufs(), r;

	if (env && !strcmp(env, "0")) {
		*why = "PSKTUN_IO_URING=0";
		return -ENOTSUP;
	}
	if (n < 0) {
		*why = "PSKTUN_IO_URING_RX_BUFS is not a power of two from 1 to 32768";
		return n;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		*why = "out of memory";
		return -ENOMEM;
	}
	u->max_bufs = n;
	u->buf_bytes = URING_RX_BUF_BYTES;
	while (u->buf_bytes < max_dgram + sizeof(struct io_uring_recvmsg_out))
		u->buf_bytes *= 2;
	u->scratch = scratch;
	u->scratch_len = scratch_len;
	u->nobufs = nobufs;
	/* Every completion that carries a datagram holds a buffer until it is
	 * taken: the completion queue holds them all, and the ends of recvmsgs. */
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN;
	p.cq_entries = 2 * (n + URING_RX_DEPTH);
	r = io_uring_queue_init_params(URING_RX_DEPTH, &u->ring, &p);
	if (r == -EINVAL) {	/* before 5.19: no COOP_TASKRUN (nor buffer rings) */
		p.flags &= ~IORING_SETUP_COOP_TASKRUN;
		r = io_uring_queue_init_params(URING_RX_DEPTH, &u->ring, &p);
	}
	if (r < 0) {
		rx_free(u);
		*why = r == -ENOSYS ? "the kernel has no io_uring" :
		       r == -EPERM ? "the kernel refuses io_uring (kernel.io_uring_disabled, or a seccomp filter)" :
				     "io_uring_queue_init failed";
		return r;
	}
	if (!kernel_has_multishot_recvmsg(&u->ring)) {
		*why = "the kernel has no multishot recvmsg (Linux 6.0)";
		r = -ENOTSUP;
		goto fail;
	}
	u->br_bytes = (size_t)n * sizeof(struct io_uring_buf);
	u->br = mmap(NULL, u->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (u->br == MAP_FAILED) {
		if (u->br == MAP_FAILED)
			u->br = NULL;
		*why = "out of memory";
		r = -ENOMEM;
		goto fail;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (uintptr_t)u->br;
	reg.ring_entries = n;
	reg.bgid = BGID;
	r = io_uring_register_buf_ring(&u->ring, &reg, 0);
	if (r < 0) {
		*why = "the kernel has no provided buffer rings (Linux 5.19)";
		goto fail;
	}
	io_uring_buf_ring_init(u->br);
	if (grow(u) < 0) {
		*why = "out of memory";
		r = -ENOMEM;
		goto fail;
	}
	uring_loop_init(&u->lp, loop, u->ring.ring_fd, turn, on_ring, u);
	*out = u;
	return 0;
fail:
	io_uring_queue_exit(&u->ring);
	rx_free(u);
	return r;
}

void uring_rx_describe(const struct uring_rx *u, unsigned *bufs, unsigned *max, unsigned *bytes)
{
	*bufs = u->nbufs;
	*max = u->max_bufs;
	*bytes = u->buf_bytes;
}

int uring_rx_arm(struct uring_rx *u, struct uring_rx_sock *rs)
{
	rs->ending = false;
	return arm(u, rs);
}

bool uring_rx_cancel(struct uring_rx *u, struct uring_rx_sock *rs)
{
	struct io_uring_sqe *sqe;

	rs->ending = true;
	if (!rs->armed)
		return false;
	/* A queued arm names the descriptor by number: submitted before it
	 * closes, it holds the socket (the cancellation below lets go of it). */
	submit(u);
	sqe = get_sqe(u);
	if (sqe) {
		io_uring_prep_cancel(sqe, rs, 0);
		io_uring_sqe_set_data(sqe, IGNORED);
		uring_loop_want(&u->lp);
	}
	/* No room even after submitting (it never happens with 256 entries):
	 * the recvmsg ends with the ring, at the latest. */
	return true;
}

static void on_closed(void *arg)
{
	struct uring_rx *u = arg;

	io_uring_queue_exit(&u->ring);
	rx_free(u);
}

void uring_rx_close(struct uring_rx *u)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
	struct io_uring_cqe *cqe;

	if (!u)
		return;
	submit(u);
	reap(u, UINT_MAX);
	while (u->armed && io_uring_wait_cqe_timeout(&u->ring, &cqe, &ts) == 0)
		reap(u, UINT_MAX);
	uring_loop_close(&u->lp, on_closed);
}
#endif
