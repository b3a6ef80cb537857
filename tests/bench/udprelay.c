/* udprelay: the bench's plain yardsticks: a per-flow UDP relay (optionally logging DTLS records) and an echo server. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_LEN 65536
#define HASH_BITS 16

/* One client source and the upstream socket that carries its datagrams. */
struct flow {
	struct sockaddr_in client;
	int fd;
	struct flow *next;		/* hash chain */
};

static struct flow *table[1u << HASH_BITS];
static int listen_fd = -1;
static struct sockaddr_in upstream;
static bool log_records;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: udprelay echo -l IP:PORT\n"
		"       udprelay relay -l IP:PORT -c IP:PORT [-v]\n"
		"  relay: each new source gets its own upstream socket; one datagram per syscall\n"
		"  -v     print one line a datagram: u|d LENGTH RECORDS (DTLS records: hN = handshake\n"
		"         message N in epoch 0, H = encrypted handshake, c = ChangeCipherSpec,\n"
		"         a = application data, x = alert)\n");
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
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -EINVAL;
}

static int bind_udp(const struct sockaddr_in *sa)
{
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
		perror("udprelay: bind");
		exit(1);
	}
	return fd;
}

/* Echo every datagram to its sender, one recvfrom and one sendto each. */
static int run_echo(void)
{
	static unsigned char buf[BUF_LEN];

	while (!stop) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(listen_fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("udprelay: recvfrom");
			return 1;
		}
		(void)sendto(listen_fd, buf, (size_t)n, 0, (struct sockaddr *)&from, fl);
	}
	return 0;
}

/* What the bytes are, record by record; a datagram may carry several DTLS records. */
static void log_datagram(char dir, const unsigned char *p, size_t n)
{
	char out[512];
	size_t off = 0, used;

	used = (size_t)snprintf(out, sizeof(out), "%c %zu", dir, n);
	while (off + 13 <= n && used < sizeof(out) - 8) {
		unsigned type = p[off];
		unsigned epoch = (unsigned)p[off + 3] << 8 | p[off + 4];
		size_t len = (size_t)p[off + 11] << 8 | p[off + 12];

		if (type == 22 && epoch == 0 && off + 13 < n)
			used += (size_t)snprintf(out + used, sizeof(out) - used, " h%u", p[off + 13]);
		else
			used += (size_t)snprintf(out + used, sizeof(out) - used, " %s",
						 type == 22 ? "H" : type == 20 ? "c" :
						 type == 23 ? "a" : type == 21 ? "x" : "?");
		off += 13 + len;
	}
	printf("%s\n", out);
	fflush(stdout);
}

static unsigned hash_addr(const struct sockaddr_in *sa)
{
	uint32_t h = sa->sin_addr.s_addr * 2654435761u ^ (uint32_t)sa->sin_port * 40503u;

	return (h ^ (h >> 16)) & ((1u << HASH_BITS) - 1);
}

static struct flow *flow_find(const struct sockaddr_in *sa)
{
	struct flow *f;

	for (f = table[hash_addr(sa)]; f; f = f->next)
		if (f->client.sin_port == sa->sin_port && f->client.sin_addr.s_addr == sa->sin_addr.s_addr)
			return f;
	return NULL;
}

static struct flow *flow_new(int ep, const struct sockaddr_in *sa)
{
	struct flow *f = calloc(1, sizeof(*f));
	struct epoll_event ev = { .events = EPOLLIN };
	unsigned h = hash_addr(sa);

	if (!f)
		return NULL;
	f->client = *sa;
	f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	ev.data.ptr = f;
	if (f->fd < 0 || connect(f->fd, (struct sockaddr *)&upstream, sizeof(upstream)) < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, f->fd, &ev) < 0) {
		perror("udprelay: new flow");
		if (f->fd >= 0)
			close(f->fd);
		free(f);
		return NULL;
	}
	f->next = table[h];
	table[h] = f;
	return f;
}

static void from_client(int ep, unsigned char *buf)
{
	for (;;) {
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n = recvfrom(listen_fd, buf, BUF_LEN, MSG_DONTWAIT, (struct sockaddr *)&from, &fl);
		struct flow *f;

		if (n < 0)
			return;
		f = flow_find(&from);
		if (!f && !(f = flow_new(ep, &from)))
			continue;
		if (log_records)
			log_datagram('u', buf, (size_t)n);
		(void)send(f->fd, buf, (size_t)n, 0);
	}
}

static void from_upstream(struct flow *f, unsigned char *buf)
{
	for (;;) {
		ssize_t n = recv(f->fd, buf, BUF_LEN, MSG_DONTWAIT);

		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
				return;
			continue;	/* ECONNREFUSED from an earlier send: keep the flow */
		}
		if (log_records)
			log_datagram('d', buf, (size_t)n);
		(void)sendto(listen_fd, buf, (size_t)n, 0, (struct sockaddr *)&f->client, sizeof(f->client));
	}
}

static int run_relay(void)
{
	static unsigned char buf[BUF_LEN];
	struct epoll_event evs[64], ev = { .events = EPOLLIN, .data.ptr = NULL };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
		perror("udprelay: epoll");
		return 1;
	}
	while (!stop) {
		int r = epoll_wait(ep, evs, 64, 200), i;

		if (r < 0 && errno != EINTR) {
			perror("udprelay: epoll_wait");
			return 1;
		}
		for (i = 0; i < r; i++) {
			if (evs[i].data.ptr)
				from_upstream(evs[i].data.ptr, buf);
			else
				from_client(ep, buf);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in listen_addr;
	struct sigaction sa = { .sa_handler = on_signal };
	struct rlimit rl;
	bool have_listen = false, have_up = false, echo;
	int c;

	if (argc < 2)
		usage();
	echo = strcmp(argv[1], "echo") == 0;
	if (!echo && strcmp(argv[1], "relay") != 0)
		usage();
	optind = 2;
	while ((c = getopt(argc, argv, "l:c:v")) != -1) {
		switch (c) {
		case 'l': have_listen = parse_addr(optarg, &listen_addr) == 0; break;
		case 'c': have_up = parse_addr(optarg, &upstream) == 0; break;
		case 'v': log_records = true; break;
		default: usage();
		}
	}
	if (!have_listen || (!echo && !have_up))
		usage();
	/* One socket per flow: 10,000 meters need 10,000 descriptors. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	listen_fd = bind_udp(&listen_addr);
	{
		/* The echo server is shared by both paths: it must not be the one that
		 * drops. A relay's listening socket gets what psktund's shared sockets
		 * get (1 MiB), so that a burst of new meters meets the same buffer. */
		int sz = echo ? 4 << 20 : 1 << 20;

		if (setsockopt(listen_fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) < 0)
			(void)setsockopt(listen_fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
	fprintf(stderr, "udprelay: ready\n");
	return echo ? run_echo() : run_relay();
}
