/* loadgen: N meters on 127.0.0.1, each its own UDP socket with K datagrams in flight; round trips and latency. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x7073746bu		/* "pstk" */
#define MIN_SIZE 32			/* struct probe */
#define MAX_SIZE 1200
#define MAX_K 64
#define HIST_US 1000000			/* 1 us buckets up to 1 s, */
#define HIST_MS 120000			/* then 1 ms buckets up to 121 s, then one overflow bucket */
#define HIST_LEN (HIST_US + HIST_MS + 1)
#define SCAN_NS 10000000ull		/* look for lost datagrams every 10 ms */

/* What each datagram carries; the rest of it is padding. */
struct probe {
	uint32_t magic;
	uint32_t meter;
	uint32_t slot;
	uint32_t pad;
	uint64_t seq;
	uint64_t sent_ns;
};

struct slot {
	uint64_t seq;			/* what we wait for on this slot */
	uint64_t sent_ns;		/* when it left; 0 = nothing in flight (once mode: done) */
};

struct meter {
	int fd;
	bool done;			/* once mode: the last of its rounds came back */
	unsigned rounds;		/* once mode: echoes so far */
	uint64_t first_ns;		/* once mode: first send */
};

struct opts {
	struct sockaddr_in target;
	struct in_addr meter_addr;	/* meters bind meter_addr:base_port+i */
	unsigned base_port;
	unsigned n;
	unsigned k;
	unsigned size;
	double warmup_s;
	double duration_s;
	unsigned loss_ms;
	bool once;
	double deadline_s;		/* once mode */
	unsigned rounds;		/* once mode: echoes a meter waits for, one after the other */
};

static struct opts o = {
	.base_port = 20000, .n = 10, .k = 4, .size = 64,
	.warmup_s = 1, .duration_s = 5, .loss_ms = 1000, .deadline_s = 60, .rounds = 1,
};
static struct meter *meters;
static struct slot *slots;
static uint32_t *hist;
static uint64_t hist_n;
static uint64_t sent_total, echoed_total, lost_total, stale_total, send_errors;
static uint64_t win_sent, win_echoed, win_lost;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen -t IP:PORT [-a METER_IP] [-b BASEPORT] [-n METERS] [-k INFLIGHT] [-s SIZE]\n"
		"               [-w WARMUP_S] [-d DURATION_S] [-l LOSS_MS] [-o [-D DEADLINE_S] [-r ROUNDS]]\n"
		"  -a  the meters' address (default 127.0.0.1): they bind METER_IP:BASEPORT+i\n"
		"  -o  once: each meter sends one datagram (re-sent after LOSS_MS) until its\n"
		"      first echo; reports the rate at which meters got through\n"
		"  -r  with -o: a meter is through after ROUNDS echoes, each datagram sent when\n"
		"      the echo of the one before came back (the datagrams of a handshake)\n");
	exit(2);
}

static int parse_addr(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	size_t hl;
	long port;
	char *end;

	if (!colon || (hl = (size_t)(colon - s)) >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, hl);
	host[hl] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || port <= 0 || port > 65535)
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -EINVAL;
	return 0;
}

static void parse_opts(int argc, char **argv)
{
	bool have_target = false;
	int c;

	o.meter_addr.s_addr = htonl(INADDR_LOOPBACK);
	while ((c = getopt(argc, argv, "t:a:b:n:k:s:w:d:l:oD:r:")) != -1) {
		switch (c) {
		case 'a':
			if (inet_pton(AF_INET, optarg, &o.meter_addr) != 1)
				usage();
			break;
		case 't':
			if (parse_addr(optarg, &o.target) < 0)
				usage();
			have_target = true;
			break;
		case 'b': o.base_port = (unsigned)atoi(optarg); break;
		case 'n': o.n = (unsigned)atoi(optarg); break;
		case 'k': o.k = (unsigned)atoi(optarg); break;
		case 's': o.size = (unsigned)atoi(optarg); break;
		case 'w': o.warmup_s = atof(optarg); break;
		case 'd': o.duration_s = atof(optarg); break;
		case 'l': o.loss_ms = (unsigned)atoi(optarg); break;
		case 'o': o.once = true; break;
		case 'D': o.deadline_s = atof(optarg); break;
		case 'r': o.rounds = (unsigned)atoi(optarg); break;
		default: usage();
		}
	}
	if (!have_target || o.n == 0 || o.k == 0 || o.k > MAX_K || o.size < MIN_SIZE ||
	    o.size > MAX_SIZE || o.base_port == 0 || o.base_port + o.n > 65536 || o.loss_ms == 0 ||
	    o.rounds == 0)
		usage();
	if (o.once)
		o.k = 1;
}

/* Each meter owns a socket; 10,000 meters need 10,000 descriptors. */
static void raise_nofile(unsigned need)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	if (rl.rlim_cur < need + 64) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			perror("loadgen: setrlimit");
	}
}

static int open_meter(unsigned i, int ep)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons((uint16_t)(o.base_port + i)),
		.sin_addr = o.meter_addr,
	};
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = i };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0) {
		perror("loadgen: socket");
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		char a[INET_ADDRSTRLEN];

		inet_ntop(AF_INET, &o.meter_addr, a, sizeof(a));
		fprintf(stderr, "loadgen: bind %s:%u: %s\n", a, o.base_port + i, strerror(errno));
		close(fd);
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&o.target, sizeof(o.target)) < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		perror("loadgen: connect/epoll_ctl");
		close(fd);
		return -1;
	}
	meters[i].fd = fd;
	return 0;
}

static bool in_window(uint64_t t, uint64_t w0, uint64_t w1)
{
	return t >= w0 && t < w1;
}

/* Arm slot s of meter m with a fresh sequence number and send it. */
static void send_slot(unsigned m, unsigned s, uint64_t t)
{
	unsigned char buf[MAX_SIZE];
	struct slot *sl = &slots[(size_t)m * o.k + s];
	struct probe p = {
		.magic = MAGIC, .meter = m, .slot = s, .seq = ++sl->seq, .sent_ns = t,
	};

	memset(buf, 0xa5, o.size);
	memcpy(buf, &p, sizeof(p));
	sl->sent_ns = t;
	sent_total++;
	/* A refused or dropped send is just a lost datagram: the loss scan re-arms it. */
	if (send(meters[m].fd, buf, o.size, 0) < 0)
		send_errors++;
}

static void record_latency(uint64_t ns)
{
	uint64_t us = ns / 1000, i;

	if (us < HIST_US)
		i = us;
	else if ((us - HIST_US) / 1000 < HIST_MS)
		i = HIST_US + (us - HIST_US) / 1000;
	else
		i = HIST_LEN - 1;
	hist[i]++;
	hist_n++;
}

static double percentile_ms(double q)
{
	uint64_t want, acc = 0;
	size_t i;

	if (hist_n == 0)
		return 0;
	want = (uint64_t)(q * (double)hist_n);
	if (want >= hist_n)
		want = hist_n - 1;
	for (i = 0; i < HIST_LEN; i++) {
		acc += hist[i];
		if (acc > want)
			return i < HIST_US ? (double)i / 1000.0 : (double)(HIST_US / 1000 + (i - HIST_US));
	}
	return (double)(HIST_US / 1000 + HIST_MS);
}

/* Drain meter m's socket; each echo re-arms its slot (or finishes the meter in once mode). */
static unsigned drain_meter(unsigned m, uint64_t w0, uint64_t w1)
{
	unsigned char buf[MAX_K][MAX_SIZE];
	struct mmsghdr msgs[MAX_K];
	struct iovec iov[MAX_K];
	unsigned done_now = 0;
	int r, j;

	for (;;) {
		for (j = 0; j < MAX_K; j++) {
			iov[j].iov_base = buf[j];
			iov[j].iov_len = sizeof(buf[j]);
			memset(&msgs[j], 0, sizeof(msgs[j]));
			msgs[j].msg_hdr.msg_iov = &iov[j];
			msgs[j].msg_hdr.msg_iovlen = 1;
		}
		r = recvmmsg(meters[m].fd, msgs, MAX_K, MSG_DONTWAIT, NULL);
		if (r <= 0)
			return done_now;
		uint64_t t = now_ns();
		for (j = 0; j < r; j++) {
			struct probe p;
			struct slot *sl;

			if (msgs[j].msg_len < sizeof(p))
				continue;
			memcpy(&p, buf[j], sizeof(p));
			if (p.magic != MAGIC || p.meter != m || p.slot >= o.k)
				continue;
			sl = &slots[(size_t)m * o.k + p.slot];
			if (o.once) {
				if (meters[m].done)
					continue;
				if (o.rounds > 1 && p.seq != sl->seq) {
					stale_total++;	/* an earlier round's late echo */
					continue;
				}
				if (++meters[m].rounds < o.rounds) {
					send_slot(m, p.slot, t);
					continue;
				}
				meters[m].done = true;
				sl->sent_ns = 0;
				echoed_total++;
				record_latency(t - meters[m].first_ns);
				done_now++;
				continue;
			}
			if (p.seq != sl->seq || sl->sent_ns == 0) {
				stale_total++;	/* the echo of a datagram already counted lost */
				continue;
			}
			echoed_total++;
			if (in_window(t, w0, w1)) {
				win_echoed++;
				record_latency(t - p.sent_ns);
			}
			if (t < w1) {
				if (in_window(t, w0, w1))
					win_sent++;
				send_slot(m, p.slot, t);
			} else {
				sl->sent_ns = 0;
			}
		}
	}
}

/* Datagrams not back within loss_ms count as lost and go out again. */
static void scan_lost(uint64_t t, uint64_t w0, uint64_t w1)
{
	uint64_t limit = (uint64_t)o.loss_ms * 1000000ull;
	unsigned m, s;

	for (m = 0; m < o.n; m++) {
		if (o.once && meters[m].done)
			continue;
		for (s = 0; s < o.k; s++) {
			struct slot *sl = &slots[(size_t)m * o.k + s];

			if (sl->sent_ns == 0 || t - sl->sent_ns < limit)
				continue;
			lost_total++;
			if (in_window(t, w0, w1))
				win_lost++;
			if (o.once || t < w1)
				send_slot(m, s, t);
			else
				sl->sent_ns = 0;
		}
	}
}

int main(int argc, char **argv)
{
	struct epoll_event evs[256];
	uint64_t t0, w0, w1, t_end, next_scan, t_last = 0;
	uint64_t stagger_ns;
	unsigned m, s, done = 0, started = 0;
	int ep;

	parse_opts(argc, argv);
	raise_nofile(o.n);
	meters = calloc(o.n, sizeof(*meters));
	slots = calloc((size_t)o.n * o.k, sizeof(*slots));
	hist = calloc(HIST_LEN, sizeof(*hist));
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (!meters || !slots || !hist || ep < 0) {
		perror("loadgen");
		return 1;
	}
	for (m = 0; m < o.n; m++)
		if (open_meter(m, ep) < 0)
			return 1;

	t0 = now_ns();
	if (o.once) {
		w0 = t0;
		w1 = t_end = t0 + (uint64_t)(o.deadline_s * 1e9);
	} else {
		w0 = t0 + (uint64_t)(o.warmup_s * 1e9);
		w1 = w0 + (uint64_t)(o.duration_s * 1e9);
		t_end = w1 + 100000000ull;	/* stop a little after the window */
	}
	/* Once mode: every meter at once (that burst is the point). Load mode: the
	 * meters start spread over the first half of the warm-up, so that the
	 * start-up burst's losses do not fall into the window. */
	stagger_ns = o.once ? 0 : (uint64_t)(o.warmup_s * 0.5e9) / o.n;
	next_scan = now_ns() + SCAN_NS;

	for (;;) {
		uint64_t t = now_ns();
		int r, i;

		while (started < o.n && t >= t0 + started * stagger_ns) {
			meters[started].first_ns = t;
			for (s = 0; s < o.k; s++)
				send_slot(started, s, t);
			started++;
		}
		if (t >= t_end || (o.once && done == o.n))
			break;
		if (t >= next_scan) {
			scan_lost(t, w0, w1);
			next_scan = t + SCAN_NS;
		}
		r = epoll_wait(ep, evs, 256, started < o.n ? 1 : 5);
		if (r < 0 && errno != EINTR) {
			perror("loadgen: epoll_wait");
			return 1;
		}
		for (i = 0; i < r; i++) {
			unsigned got = drain_meter(evs[i].data.u32, w0, w1);

			if (got) {
				done += got;
				t_last = now_ns();
			}
		}
	}

	if (o.once) {
		double el = t_last > t0 ? (double)(t_last - t0) / 1e9 : 0;

		printf("mode=once\nmeters=%u\ndone=%u\nelapsed_s=%.4f\nrate=%.1f\n", o.n, done, el,
		       el > 0 ? done / el : 0.0);
	} else {
		printf("mode=load\nmeters=%u\ninflight=%u\nsize=%u\nduration_s=%.3f\n", o.n, o.k,
		       o.size, o.duration_s);
		printf("round_trips=%" PRIu64 "\nrate=%.1f\n", win_echoed, (double)win_echoed / o.duration_s);
	}
	printf("p50_ms=%.3f\np99_ms=%.3f\nmax_ms=%.3f\n", percentile_ms(0.50), percentile_ms(0.99),
	       percentile_ms(1.0));
	printf("sent=%" PRIu64 "\nechoed=%" PRIu64 "\nlost=%" PRIu64 "\nlost_window=%" PRIu64
	       "\nstale=%" PRIu64 "\nsend_errors=%" PRIu64 "\n",
	       sent_total, echoed_total, lost_total, win_lost, stale_total, send_errors);
	return o.once && done < o.n ? 3 : 0;
}
