/*-------------------------------------------------------------------------
 *
 * transport_test.c
 *	  Unit tests of src/net/transport.c: the mutual HMAC handshake over
 *	  socketpair() and loopback TCP (127.0.0.1, ephemeral ports only),
 *	  every way it must fail, framing under hostile or truncated input,
 *	  output backpressure, the handshake deadline and the reconnect backoff.
 *
 * Two kinds of peer appear: a real peer_conn on both ends, and a "raw"
 * peer, where the test holds the other end of a socket pair and writes
 * bytes itself (built with the codec and transport_handshake_mac(), or
 * random), so that anything a broken or hostile node could send can be
 * sent.  The raw end is a blocking socket with a receive timeout, so a
 * test that waits for a frame that never comes fails instead of hanging.
 *
 * Every connection allocates through a counting allocator, which must be
 * back at zero after each case; the sanitizers catch the rest.  Time is
 * passed in, never read, and randomness comes from fixed seeds
 * (TRANSPORT_TEST_SEED overrides the main one), so runs reproduce.
 *
 * test/unit/transport_test.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net/codec.h"
#include "net/hmac.h"
#include "net/transport.h"

#include "unit_test.h"

#define DEFAULT_SEED	UINT64_C(0x7a5eed2026c0ffee)
#define CLUSTER			UINT64_C(0xC1A57E12)
#define RANDOM_INPUTS	10000
#define MAX_RX			20000

static const uint8_t secret_a[32] = "0123456789abcdef0123456789abcdef";
static const uint8_t secret_b[32] = "0123456789abcdef0123456789abcdeX";

/*----------
 * Test bookkeeping
 *----------
 */
/* The transport's RNG callback: the same generator, so nonces reproduce. */
static int
test_rng(void *arg, uint8_t *buf, size_t len)
{
	size_t		i;

	(void) arg;
	for (i = 0; i < len; i++)
		buf[i] = (uint8_t) rnd();
	return 0;
}

static int
failing_rng(void *arg, uint8_t *buf, size_t len)
{
	(void) arg;
	(void) buf;
	(void) len;
	return -1;
}

/*----------
 * Counting allocator: every block carries its size in front
 *----------
 */
typedef struct counting
{
	long		live_blocks;
	size_t		live_bytes;
	size_t		peak_block;		/* largest single request */
} counting;

static counting counts;

#define HDR 16

static void
note_size(size_t size)
{
	if (size > counts.peak_block)
		counts.peak_block = size;
}

static void *
count_alloc(void *ctx, size_t size)
{
	uint8_t    *p;

	(void) ctx;
	p = malloc(size + HDR);
	if (p == NULL)
		return NULL;
	memcpy(p, &size, sizeof(size));
	counts.live_blocks++;
	counts.live_bytes += size;
	note_size(size);
	return p + HDR;
}

static void *
count_realloc(void *ctx, void *ptr, size_t size)
{
	uint8_t    *p;
	size_t		old;

	if (ptr == NULL)
		return count_alloc(ctx, size);
	p = (uint8_t *) ptr - HDR;
	memcpy(&old, p, sizeof(old));
	p = realloc(p, size + HDR);
	if (p == NULL)
		return NULL;
	memcpy(p, &size, sizeof(size));
	counts.live_bytes = counts.live_bytes - old + size;
	note_size(size);
	return p + HDR;
}

static void
count_free(void *ctx, void *ptr)
{
	uint8_t    *p;
	size_t		old;

	(void) ctx;
	if (ptr == NULL)
		return;
	p = (uint8_t *) ptr - HDR;
	memcpy(&old, p, sizeof(old));
	counts.live_blocks--;
	counts.live_bytes -= old;
	free(p);
}

static const raft_allocator counting_allocator = {
	count_alloc, count_realloc, count_free, NULL
};

static void
reset_alloc_counts(void)
{
	memset(&counts, 0, sizeof(counts));
}

/* every case must free everything it allocated */
static void
check_alloc_counts(void)
{
	CHECK(counts.live_blocks == 0 && counts.live_bytes == 0,
		  "%ld blocks (%zu bytes) still allocated", counts.live_blocks,
		  counts.live_bytes);
}

/*----------
 * Configurations
 *----------
 */
typedef struct allow_list
{
	raft_node_id ids[8];
	int			n;
} allow_list;

static bool
allow_check(void *arg, raft_node_id id)
{
	allow_list *l = arg;
	int			i;

	for (i = 0; i < l->n; i++)
		if (l->ids[i] == id)
			return true;
	return false;
}

static void
make_cfg(transport_config *cfg, raft_node_id self, uint64_t cluster,
		 const uint8_t *secret)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->cluster_id = cluster;
	cfg->self_id = self;
	cfg->secret = secret;
	cfg->secret_len = 32;
	cfg->handshake_timeout_ms = 1000;
	cfg->rng = test_rng;
	cfg->allocator = &counting_allocator;
}

/*----------
 * Frames and peers
 *----------
 */
static raft_message
heartbeat(raft_node_id from, raft_node_id to, uint64_t seq)
{
	raft_message m;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_HEARTBEAT;
	m.from = from;
	m.to = to;
	m.cluster_id = CLUSTER;
	m.term = 3;
	m.commit = seq;
	m.context = seq;
	return m;
}

/* Serialize a frame with its length prefix into out; returns the length. */
static size_t
wire_frame(const codec_frame *f, uint8_t *out, size_t cap)
{
	size_t		len = 0;

	if (cap < CODEC_FRAME_HEADER_SIZE ||
		codec_frame_encode_into(f, out + CODEC_FRAME_HEADER_SIZE,
								cap - CODEC_FRAME_HEADER_SIZE, &len) != CODEC_OK)
	{
		CHECK(false, "could not encode a test frame");
		return 0;
	}
	codec_put_frame_len(out, len);
	return CODEC_FRAME_HEADER_SIZE + len;
}

static size_t
wire_heartbeat(raft_node_id from, raft_node_id to, uint64_t seq,
			   uint8_t *out, size_t cap)
{
	codec_frame f;

	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_RAFT;
	f.u.raft = heartbeat(from, to, seq);
	return wire_frame(&f, out, cap);
}

/* What a connection received: the context of each Raft frame, in order. */
typedef struct rx_log
{
	int			n;
	int			other;			/* non-Raft frames */
	uint64_t	seq[MAX_RX];
	size_t		last_payload;	/* len of the last forward batch */
} rx_log;

static rx_log rx_a;
static rx_log rx_b;

static void
drain(peer_conn *c, rx_log *rx)
{
	codec_frame f;
	int			guard;

	for (guard = 0; guard < 100000; guard++)
	{
		if (conn_next_frame(c, &f) != 1)
			break;
		if (f.kind == CODEC_FRAME_RAFT && rx->n < MAX_RX)
			rx->seq[rx->n++] = f.u.raft.context;
		else
		{
			rx->other++;
			if (f.kind == CODEC_FRAME_FORWARD_BATCH)
				rx->last_payload = f.u.forward_batch.len;
		}
		codec_frame_free(&f, &counting_allocator);
	}
}

/* Drive two connections over a socket pair until quiet. */
static void
pump(peer_conn *a, peer_conn *b, int rounds)
{
	int			r;

	for (r = 0; r < rounds; r++)
	{
		if (conn_wants_write(a))
			conn_on_writable(a);
		if (conn_wants_write(b))
			conn_on_writable(b);
		conn_on_readable(a);
		drain(a, &rx_a);
		conn_on_readable(b);
		drain(b, &rx_b);
	}
}

/* a dials b over a socket pair (a outbound, b inbound). */
static void
make_pair(const transport_config *ca, const transport_config *cb,
		  raft_node_id expect, peer_conn **a, peer_conn **b)
{
	int			sv[2];
	char		err[TRANSPORT_REASON_LEN];

	*a = *b = NULL;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
	{
		CHECK(false, "socketpair: %s", strerror(errno));
		return;
	}
	*a = conn_new_outbound(ca, sv[0], expect, 1000, err, sizeof(err));
	CHECK(*a != NULL, "conn_new_outbound: %s", err);
	*b = conn_new_inbound(cb, sv[1], 1000, err, sizeof(err));
	CHECK(*b != NULL, "conn_new_inbound: %s", err);
}

/* One end a peer_conn, the other a raw blocking socket with a timeout. */
static peer_conn *
make_raw(const transport_config *cfg, bool outbound, int *raw)
{
	int			sv[2];
	char		err[TRANSPORT_REASON_LEN];
	struct timeval tv;
	peer_conn  *c;

	*raw = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
	{
		CHECK(false, "socketpair: %s", strerror(errno));
		return NULL;
	}
	tv.tv_sec = 2;
	tv.tv_usec = 0;
	(void) setsockopt(sv[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	c = outbound ? conn_new_outbound(cfg, sv[0], 0, 1000, err, sizeof(err))
		: conn_new_inbound(cfg, sv[0], 1000, err, sizeof(err));
	CHECK(c != NULL, "conn_new: %s", err);
	*raw = sv[1];
	return c;
}

static void
raw_write(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	ssize_t		n;

	while (len > 0)
	{
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			/* the connection may have closed on us: that is for the caller */
			return;
		}
		p += n;
		len -= (size_t) n;
	}
}

static bool
raw_read_exact(int fd, uint8_t *buf, size_t len)
{
	ssize_t		n;

	while (len > 0)
	{
		n = recv(fd, buf, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t) n;
	}
	return true;
}

/* Read one frame from the raw end (the connection has been flushed). */
static bool
raw_read_frame(int fd, codec_frame *f)
{
	uint8_t		hdr[CODEC_FRAME_HEADER_SIZE];
	uint8_t		body[4096];
	size_t		len;

	memset(f, 0, sizeof(*f));
	if (!raw_read_exact(fd, hdr, sizeof(hdr)) ||
		codec_get_frame_len(hdr, &len) != CODEC_OK || len > sizeof(body) ||
		!raw_read_exact(fd, body, len))
		return false;
	return codec_frame_decode(body, len, f, NULL) == CODEC_OK;
}

/* The raw peer's identity for a scripted handshake. */
typedef struct raw_identity
{
	raft_node_id id;
	uint64_t	cluster;
	const uint8_t *secret;
	uint8_t		nonce[CODEC_NONCE_LEN];
} raw_identity;

static void
raw_challenge_frame(const raw_identity *who, codec_frame *f)
{
	memset(f, 0, sizeof(*f));
	f->kind = CODEC_FRAME_CHALLENGE;
	f->u.challenge.cluster_id = who->cluster;
	f->u.challenge.node_id = who->id;
	f->u.challenge.min_version = 1;
	f->u.challenge.max_version = 1;
	memcpy(f->u.challenge.nonce, who->nonce, CODEC_NONCE_LEN);
}

/*
 * Run the handshake from the raw end against c, as a correct peer would
 * (the conn's challenge must be readable on raw).  Returns the conn's
 * challenge nonce through their_nonce.
 */
static bool
raw_handshake(peer_conn *c, int raw, const raw_identity *who,
			  raft_node_id their_id, uint8_t *their_nonce)
{
	codec_frame f;
	codec_frame got;
	uint8_t		buf[1024];
	size_t		len;

	conn_on_writable(c);
	if (!raw_read_frame(raw, &got) || got.kind != CODEC_FRAME_CHALLENGE)
		return false;
	memcpy(their_nonce, got.u.challenge.nonce, CODEC_NONCE_LEN);

	raw_challenge_frame(who, &f);
	len = wire_frame(&f, buf, sizeof(buf));
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_RESPONSE;
	f.u.response.cluster_id = who->cluster;
	f.u.response.node_id = who->id;
	f.u.response.peer_id = their_id;
	f.u.response.version = 1;
	transport_handshake_mac(who->secret, 32, who->cluster, their_id, who->id, 1,
							their_nonce, who->nonce, f.u.response.hmac);
	len += wire_frame(&f, buf + len, sizeof(buf) - len);
	raw_write(raw, buf, len);

	conn_on_readable(c);
	conn_on_writable(c);
	/* swallow the conn's response so the raw stream is clean */
	if (conn_get_state(c) == CONN_ESTABLISHED &&
		(!raw_read_frame(raw, &got) || got.kind != CODEC_FRAME_RESPONSE))
		return false;
	return conn_get_state(c) == CONN_ESTABLISHED;
}

static bool
reason_has(const peer_conn *c, const char *needle)
{
	const char *r = conn_close_reason(c);

	return r != NULL && strstr(r, needle) != NULL;
}

/* Established pair: a = node 1 (outbound), b = node 2 (inbound). */
static transport_config cfg1;
static transport_config cfg2;

static void
reset_rx(void)
{
	memset(&rx_a, 0, sizeof(rx_a));
	memset(&rx_b, 0, sizeof(rx_b));
}

static bool
in_order(const rx_log *rx, int n)
{
	int			i;

	if (rx->n != n)
		return false;
	for (i = 0; i < n; i++)
		if (rx->seq[i] != (uint64_t) i)
			return false;
	return true;
}

/*----------
 * Cases: handshake success
 *----------
 */
static void
test_handshake_socketpair(void)
{
	peer_conn  *a;
	peer_conn  *b;
	uint8_t    *buf;
	size_t		len;
	raft_message m;
	codec_frame f;
	int			i;

	reset_rx();
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	make_cfg(&cfg2, 2, CLUSTER, secret_a);
	make_pair(&cfg1, &cfg2, 2, &a, &b);
	if (a == NULL || b == NULL)
		goto out;

	CHECK(conn_get_state(a) == CONN_CONNECTING, "outbound starts connecting");
	CHECK(conn_get_state(b) == CONN_HANDSHAKE, "inbound starts in handshake");
	CHECK(conn_deadline(a) == 2000, "deadline %llu",
		  (unsigned long long) conn_deadline(a));
	m = heartbeat(1, 2, 0);
	CHECK(raft_msg_encode(&m, &buf, &len) == CODEC_OK, "encode");
	CHECK(conn_queue_frame(a, buf, len) == CONN_ERR_NOT_ESTABLISHED,
		  "no frame before the handshake");
	codec_buf_free(buf);

	pump(a, b, 5);
	CHECK(conn_get_state(a) == CONN_ESTABLISHED, "a: %s (%s)",
		  conn_state_name(conn_get_state(a)), conn_close_reason(a));
	CHECK(conn_get_state(b) == CONN_ESTABLISHED, "b: %s (%s)",
		  conn_state_name(conn_get_state(b)), conn_close_reason(b));
	CHECK(conn_peer_id(a) == 2 && conn_peer_id(b) == 1, "peer ids");
	CHECK(conn_version(a) == 1 && conn_version(b) == 1, "version");
	CHECK(conn_deadline(a) == 0, "no deadline once established");
	CHECK(strcmp(conn_peer_addr(a), "local") == 0, "addr %s", conn_peer_addr(a));
	CHECK(conn_is_outbound(a) && !conn_is_outbound(b), "directions");

	/* a -> b with encoded bytes, b -> a with frame structs */
	for (i = 0; i < 300; i++)
	{
		m = heartbeat(1, 2, (uint64_t) i);
		CHECK(raft_msg_encode(&m, &buf, &len) == CODEC_OK, "encode");
		CHECK(conn_queue_frame(a, buf, len) == CONN_OK, "queue a %d", i);
		codec_buf_free(buf);
		memset(&f, 0, sizeof(f));
		f.kind = CODEC_FRAME_RAFT;
		f.u.raft = heartbeat(2, 1, (uint64_t) i);
		CHECK(conn_queue_codec_frame(b, &f) == CONN_OK, "queue b %d", i);
		if (i % 50 == 0)
			pump(a, b, 1);
	}
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_FORWARD_RESULT;
	f.u.forward_result.batch_id = 7;
	f.u.forward_result.origin = 1;
	f.u.forward_result.outcome = CODEC_FORWARD_COMMITTED;
	CHECK(conn_queue_codec_frame(b, &f) == CONN_OK, "queue forward result");
	f.kind = CODEC_FRAME_CHALLENGE;
	CHECK(conn_queue_codec_frame(b, &f) == CONN_ERR_INVALID,
		  "the caller may not send handshake frames");
	pump(a, b, 10);
	CHECK(in_order(&rx_b, 300), "b got %d frames in order", rx_b.n);
	CHECK(in_order(&rx_a, 300), "a got %d frames in order", rx_a.n);
	CHECK(rx_a.other == 1 && rx_b.other == 0, "forward result delivered");
	CHECK(conn_close_reason(a) == NULL && conn_close_reason(b) == NULL,
		  "still open");

out:
	conn_free(a);
	conn_free(b);
}

/* Poll both ends of a TCP connection until cond holds or time runs out. */
static void
pump_tcp(peer_conn *a, peer_conn *b, int max_iter, bool (*done) (void))
{
	struct pollfd p[2];
	peer_conn  *cs[2];
	int			it;
	int			i;

	cs[0] = a;
	cs[1] = b;
	for (it = 0; it < max_iter; it++)
	{
		if (done != NULL && done())
			return;
		for (i = 0; i < 2; i++)
		{
			p[i].fd = conn_fd(cs[i]);
			p[i].events = 0;
			p[i].revents = 0;
			if (conn_wants_read(cs[i]))
				p[i].events |= POLLIN;
			if (conn_wants_write(cs[i]))
				p[i].events |= POLLOUT;
		}
		(void) poll(p, 2, 10);
		for (i = 0; i < 2; i++)
		{
			if (p[i].fd < 0)
				continue;
			if (p[i].revents & (POLLOUT | POLLERR | POLLHUP))
				conn_on_writable(cs[i]);
			if (p[i].revents & (POLLIN | POLLERR | POLLHUP))
				conn_on_readable(cs[i]);
			drain(cs[i], i == 0 ? &rx_a : &rx_b);
		}
	}
}

static int	tcp_expect;

static bool
tcp_all_received(void)
{
	return rx_a.n >= tcp_expect && rx_b.n >= tcp_expect && rx_b.other >= 1;
}

static void
test_handshake_tcp(void)
{
	int			lfd = -1;
	int			cfd = -1;
	int			sfd = -1;
	int			port;
	int			i;
	int			rc;
	char		err[TRANSPORT_REASON_LEN];
	peer_conn  *a = NULL;
	peer_conn  *b = NULL;
	codec_frame f;
	uint8_t    *payload;
	char		want_addr[32];

	reset_rx();
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	make_cfg(&cfg2, 2, CLUSTER, secret_a);
	cfg1.rng = NULL;			/* the /dev/urandom default */
	cfg1.tcp_user_timeout_ms = 10000;
	payload = malloc(3 * 1024 * 1024);
	if (payload == NULL)
		return;
	for (i = 0; i < 3 * 1024 * 1024; i++)
		payload[i] = (uint8_t) (i * 131);

	CHECK(transport_listen("127.0.0.1", 0, &lfd, err, sizeof(err)) == 0,
		  "listen: %s", err);
	port = transport_local_port(lfd);
	CHECK(port > 0, "ephemeral port %d", port);
	CHECK(transport_accept(lfd, &sfd, err, sizeof(err)) == 0,
		  "nothing to accept yet");
	CHECK(transport_connect_start("127.0.0.1", port, &cfd, err, sizeof(err)) == 0,
		  "connect: %s", err);
	a = conn_new_outbound(&cfg1, cfd, 2, 0, err, sizeof(err));
	CHECK(a != NULL, "outbound: %s", err);
	for (i = 0; i < 200; i++)
	{
		rc = transport_accept(lfd, &sfd, err, sizeof(err));
		if (rc != 0)
			break;
		(void) poll(NULL, 0, 5);
	}
	CHECK(rc == 1, "accept: %s", err);
	b = conn_new_inbound(&cfg2, sfd, 0, err, sizeof(err));
	CHECK(b != NULL, "inbound: %s", err);
	if (a == NULL || b == NULL)
		goto out;

	/* frames queued as soon as each side is established */
	for (i = 0; i < 500 && (conn_get_state(a) != CONN_ESTABLISHED ||
							conn_get_state(b) != CONN_ESTABLISHED); i++)
		pump_tcp(a, b, 1, NULL);
	CHECK(conn_get_state(a) == CONN_ESTABLISHED, "a: %s",
		  conn_close_reason(a) ? conn_close_reason(a) : conn_state_name(conn_get_state(a)));
	CHECK(conn_get_state(b) == CONN_ESTABLISHED, "b: %s",
		  conn_close_reason(b) ? conn_close_reason(b) : conn_state_name(conn_get_state(b)));
	snprintf(want_addr, sizeof(want_addr), "127.0.0.1:%d", port);
	CHECK(strcmp(conn_peer_addr(a), want_addr) == 0, "addr %s", conn_peer_addr(a));
	CHECK(strncmp(conn_peer_addr(b), "127.0.0.1:", 10) == 0, "addr %s",
		  conn_peer_addr(b));
	if (conn_get_state(a) != CONN_ESTABLISHED || conn_get_state(b) != CONN_ESTABLISHED)
		goto out;

	tcp_expect = 2000;
	for (i = 0; i < tcp_expect; i++)
	{
		memset(&f, 0, sizeof(f));
		f.kind = CODEC_FRAME_RAFT;
		f.u.raft = heartbeat(1, 2, (uint64_t) i);
		CHECK(conn_queue_codec_frame(a, &f) == CONN_OK, "queue a");
		f.u.raft = heartbeat(2, 1, (uint64_t) i);
		CHECK(conn_queue_codec_frame(b, &f) == CONN_OK, "queue b");
		if (i == tcp_expect / 2)
		{
			/* a 3 MiB frame: partial writes, input growth and shrink */
			memset(&f, 0, sizeof(f));
			f.kind = CODEC_FRAME_FORWARD_BATCH;
			f.u.forward_batch.batch_id = 1;
			f.u.forward_batch.origin = 1;
			f.u.forward_batch.payload = payload;
			f.u.forward_batch.len = 3 * 1024 * 1024;
			CHECK(conn_queue_codec_frame(a, &f) == CONN_OK, "queue big");
		}
	}
	pump_tcp(a, b, 1000, tcp_all_received);
	CHECK(in_order(&rx_a, tcp_expect), "a got %d", rx_a.n);
	CHECK(in_order(&rx_b, tcp_expect), "b got %d", rx_b.n);
	CHECK(rx_b.other == 1 && rx_b.last_payload == 3 * 1024 * 1024,
		  "big frame: %d, %zu bytes", rx_b.other, rx_b.last_payload);

	/* closing one end: the other sees a clean EOF */
	conn_close(b, "test closes b");
	CHECK(conn_fd(b) == -1 && strcmp(conn_close_reason(b), "test closes b") == 0,
		  "closed b");
	pump_tcp(a, a, 100, NULL);
	CHECK(reason_has(a, "peer closed the connection"), "a: %s",
		  conn_close_reason(a) ? conn_close_reason(a) : "open");

out:
	conn_free(a);
	conn_free(b);
	if (lfd >= 0)
		close(lfd);
	free(payload);
}

static void
test_connect_refused(void)
{
	int			lfd = -1;
	int			cfd = -1;
	int			port;
	int			i;
	char		err[TRANSPORT_REASON_LEN];
	peer_conn  *a = NULL;
	struct pollfd p;

	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	/* a port that was just free on 127.0.0.1: bind, note it, close */
	CHECK(transport_listen("127.0.0.1", 0, &lfd, err, sizeof(err)) == 0, "%s", err);
	port = transport_local_port(lfd);
	close(lfd);

	if (transport_connect_start("127.0.0.1", port, &cfd, err, sizeof(err)) != 0)
	{
		/* refused at once: fine, that is a failure reported with a reason */
		CHECK(strstr(err, "connect") != NULL, "reason: %s", err);
		return;
	}
	a = conn_new_outbound(&cfg1, cfd, 2, 0, err, sizeof(err));
	CHECK(a != NULL, "%s", err);
	for (i = 0; a != NULL && i < 200 && conn_get_state(a) != CONN_CLOSED; i++)
	{
		p.fd = conn_fd(a);
		p.events = POLLOUT;
		p.revents = 0;
		(void) poll(&p, 1, 10);
		conn_on_writable(a);
	}
	CHECK(a != NULL && reason_has(a, "connect failed"), "reason: %s",
		  a && conn_close_reason(a) ? conn_close_reason(a) : "open");
	conn_free(a);

	CHECK(transport_connect_start("127.0.0.1", 0, &cfd, err, sizeof(err)) == -1,
		  "port 0 is not dialable");
	CHECK(transport_listen("127.0.0.1", 70000, &lfd, err, sizeof(err)) == -1,
		  "bad port");
}

/*----------
 * Cases: handshake failures
 *----------
 */

/* Run a pair that must fail; returns with both closed or a check failed. */
static void
failing_pair(const transport_config *ca, const transport_config *cb,
			 raft_node_id expect, peer_conn **a, peer_conn **b)
{
	reset_rx();
	make_pair(ca, cb, expect, a, b);
	if (*a == NULL || *b == NULL)
		return;
	pump(*a, *b, 10);
	CHECK(conn_get_state(*a) == CONN_CLOSED, "a still %s",
		  conn_state_name(conn_get_state(*a)));
	CHECK(conn_get_state(*b) == CONN_CLOSED, "b still %s",
		  conn_state_name(conn_get_state(*b)));
	CHECK(rx_a.n == 0 && rx_b.n == 0 && rx_a.other == 0 && rx_b.other == 0,
		  "no frame delivered");
}

static void
test_wrong_secret(void)
{
	peer_conn  *a;
	peer_conn  *b;
	int			side;

	for (side = 0; side < 2; side++)
	{
		make_cfg(&cfg1, 1, CLUSTER, side == 0 ? secret_b : secret_a);
		make_cfg(&cfg2, 2, CLUSTER, side == 0 ? secret_a : secret_b);
		failing_pair(&cfg1, &cfg2, 2, &a, &b);
		CHECK(reason_has(a, "HMAC") || reason_has(b, "HMAC"),
			  "side %d: a: %s / b: %s", side, conn_close_reason(a),
			  conn_close_reason(b));
		CHECK(reason_has(a, "HMAC") || reason_has(a, "peer closed") ||
			  reason_has(a, "failed"), "a: %s", conn_close_reason(a));
		CHECK(reason_has(b, "HMAC") || reason_has(b, "peer closed") ||
			  reason_has(b, "failed"), "b: %s", conn_close_reason(b));
		conn_free(a);
		conn_free(b);
	}
}

static void
test_wrong_cluster(void)
{
	peer_conn  *a;
	peer_conn  *b;

	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	make_cfg(&cfg2, 2, CLUSTER + 1, secret_a);
	failing_pair(&cfg1, &cfg2, 2, &a, &b);
	CHECK(reason_has(a, "cluster"), "a: %s", conn_close_reason(a));
	CHECK(reason_has(b, "cluster"), "b: %s", conn_close_reason(b));
	conn_free(a);
	conn_free(b);
}

static void
test_unknown_node(void)
{
	peer_conn  *a;
	peer_conn  *b;
	allow_list	allowed;

	/* b accepts only nodes 1 and 3; a is node 9 */
	allowed.ids[0] = 1;
	allowed.ids[1] = 3;
	allowed.n = 2;
	make_cfg(&cfg1, 9, CLUSTER, secret_a);
	make_cfg(&cfg2, 2, CLUSTER, secret_a);
	cfg2.peer_allowed = allow_check;
	cfg2.peer_allowed_arg = &allowed;
	failing_pair(&cfg1, &cfg2, 2, &a, &b);
	CHECK(reason_has(b, "node 9 is not an allowed member"), "b: %s",
		  conn_close_reason(b));
	CHECK(reason_has(a, "peer closed") || reason_has(a, "failed"), "a: %s",
		  conn_close_reason(a));
	conn_free(a);
	conn_free(b);

	/* a dialed node 3, but node 2 answered */
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	failing_pair(&cfg1, &cfg2, 3, &a, &b);
	CHECK(reason_has(a, "dialed node 3 but the peer is node 2"), "a: %s",
		  conn_close_reason(a));
	conn_free(a);
	conn_free(b);

	/* both claim the same id (a node connected to itself) */
	make_cfg(&cfg1, 2, CLUSTER, secret_a);
	make_cfg(&cfg2, 2, CLUSTER, secret_a);
	failing_pair(&cfg1, &cfg2, 0, &a, &b);
	CHECK(reason_has(a, "our own node id"), "a: %s", conn_close_reason(a));
	conn_free(a);
	conn_free(b);
}

/*
 * A scripted peer sends frame(s) after (or instead of) a correct challenge;
 * the connection must close with a reason containing want and deliver
 * nothing.
 */
static void
expect_raw_close(const uint8_t *bytes, size_t len, const char *want)
{
	peer_conn  *c;
	int			raw;
	codec_frame f;
	int			i;

	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	c = make_raw(&cfg1, false, &raw);
	if (c == NULL)
		return;
	raw_write(raw, bytes, len);
	for (i = 0; i < 3; i++)
	{
		conn_on_writable(c);
		conn_on_readable(c);
		CHECK(conn_next_frame(c, &f) != 1, "no frame may be delivered");
	}
	CHECK(conn_get_state(c) == CONN_CLOSED, "still %s",
		  conn_state_name(conn_get_state(c)));
	CHECK(reason_has(c, want), "reason \"%s\", want \"%s\"",
		  conn_close_reason(c) ? conn_close_reason(c) : "open", want);
	conn_free(c);
	close(raw);
}

static void
test_version_mismatch(void)
{
	raw_identity who;
	codec_frame f;
	uint8_t		buf[512];
	size_t		len;
	peer_conn  *c;
	int			raw;
	uint8_t		their_nonce[CODEC_NONCE_LEN];

	memset(&who, 0, sizeof(who));
	who.id = 2;
	who.cluster = CLUSTER;
	who.secret = secret_a;
	memset(who.nonce, 0x5a, sizeof(who.nonce));

	/* the peer speaks only version 2 */
	raw_challenge_frame(&who, &f);
	f.u.challenge.min_version = 2;
	f.u.challenge.max_version = 2;
	len = wire_frame(&f, buf, sizeof(buf));
	expect_raw_close(buf, len, "no common protocol version");

	/* a correct challenge, then a response naming another version */
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	c = make_raw(&cfg1, true, &raw);
	if (c == NULL)
		return;
	conn_on_writable(c);
	CHECK(raw_read_frame(raw, &f) && f.kind == CODEC_FRAME_CHALLENGE, "challenge");
	memcpy(their_nonce, f.u.challenge.nonce, CODEC_NONCE_LEN);
	CHECK(f.u.challenge.node_id == 1 && f.u.challenge.cluster_id == CLUSTER &&
		  f.u.challenge.min_version == 1 && f.u.challenge.max_version == 1,
		  "challenge fields");
	raw_challenge_frame(&who, &f);
	len = wire_frame(&f, buf, sizeof(buf));
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_RESPONSE;
	f.u.response.cluster_id = CLUSTER;
	f.u.response.node_id = 2;
	f.u.response.peer_id = 1;
	f.u.response.version = 2;
	transport_handshake_mac(secret_a, 32, CLUSTER, 1, 2, 2, their_nonce,
							who.nonce, f.u.response.hmac);
	len += wire_frame(&f, buf + len, sizeof(buf) - len);
	raw_write(raw, buf, len);
	conn_on_readable(c);
	CHECK(reason_has(c, "chose protocol version 2, expected 1"), "reason %s",
		  conn_close_reason(c));
	conn_free(c);
	close(raw);
}

static void
test_frames_before_handshake(void)
{
	raw_identity who;
	codec_frame f;
	uint8_t		buf[1024];
	size_t		len;

	memset(&who, 0, sizeof(who));
	who.id = 2;
	who.cluster = CLUSTER;
	who.secret = secret_a;
	memset(who.nonce, 0x33, sizeof(who.nonce));

	/* a Raft frame as the very first frame */
	len = wire_heartbeat(2, 1, 0, buf, sizeof(buf));
	expect_raw_close(buf, len, "raft frame before the handshake completed");

	/* a correct challenge, then a Raft frame instead of the response */
	raw_challenge_frame(&who, &f);
	len = wire_frame(&f, buf, sizeof(buf));
	len += wire_heartbeat(2, 1, 0, buf + len, sizeof(buf) - len);
	expect_raw_close(buf, len, "raft frame before the handshake completed");

	/* a forward batch first */
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_FORWARD_BATCH;
	f.u.forward_batch.origin = 2;
	len = wire_frame(&f, buf, sizeof(buf));
	expect_raw_close(buf, len, "forward batch frame before the handshake");

	/* a response first */
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_RESPONSE;
	f.u.response.cluster_id = CLUSTER;
	f.u.response.node_id = 2;
	f.u.response.peer_id = 1;
	f.u.response.version = 1;
	len = wire_frame(&f, buf, sizeof(buf));
	expect_raw_close(buf, len, "response before the peer's challenge");

	/* two challenges */
	raw_challenge_frame(&who, &f);
	len = wire_frame(&f, buf, sizeof(buf));
	len += wire_frame(&f, buf + len, sizeof(buf) - len);
	expect_raw_close(buf, len, "second handshake challenge");

	/* garbage that has a valid length prefix */
	memcpy(buf, "\0\0\0\5\xff\xff\xff\xff\xff", 9);
	expect_raw_close(buf, 9, "undecodable frame during the handshake");
}

/* Responses that are well formed but wrong in one field each. */
static void
test_bad_responses(void)
{
	static const struct
	{
		int			field;
		const char *want;
	}			cases[] = {
		{0, "names cluster"},
		{1, "response from node 5"},
		{2, "addressed to node 4"},
		{3, "does not verify"},
		{4, "does not verify"},
	};
	raw_identity who;
	codec_frame f;
	uint8_t		buf[1024];
	uint8_t		their_nonce[CODEC_NONCE_LEN];
	size_t		len;
	peer_conn  *c;
	int			raw;
	size_t		i;

	memset(&who, 0, sizeof(who));
	who.id = 2;
	who.cluster = CLUSTER;
	who.secret = secret_a;
	memset(who.nonce, 0x44, sizeof(who.nonce));
	make_cfg(&cfg1, 1, CLUSTER, secret_a);

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		c = make_raw(&cfg1, false, &raw);
		if (c == NULL)
			return;
		conn_on_writable(c);
		CHECK(raw_read_frame(raw, &f), "challenge");
		memcpy(their_nonce, f.u.challenge.nonce, CODEC_NONCE_LEN);
		raw_challenge_frame(&who, &f);
		len = wire_frame(&f, buf, sizeof(buf));
		memset(&f, 0, sizeof(f));
		f.kind = CODEC_FRAME_RESPONSE;
		f.u.response.cluster_id = cases[i].field == 0 ? CLUSTER + 1 : CLUSTER;
		f.u.response.node_id = cases[i].field == 1 ? 5 : 2;
		f.u.response.peer_id = cases[i].field == 2 ? 4 : 1;
		f.u.response.version = 1;
		if (cases[i].field == 3)
		{
			/* roles swapped: the MAC a reflection would carry */
			transport_handshake_mac(secret_a, 32, CLUSTER, 2, 1, 1, who.nonce,
									their_nonce, f.u.response.hmac);
		}
		else
			transport_handshake_mac(secret_a, 32, CLUSTER, 1, 2, 1, their_nonce,
									who.nonce, f.u.response.hmac);
		if (cases[i].field == 4)
			f.u.response.hmac[31] ^= 1;
		len += wire_frame(&f, buf + len, sizeof(buf) - len);
		/* and a Raft frame right behind it, which must never surface */
		len += wire_heartbeat(2, 1, 0, buf + len, sizeof(buf) - len);
		raw_write(raw, buf, len);
		conn_on_readable(c);
		CHECK(conn_next_frame(c, &f) == -1, "closed");
		CHECK(reason_has(c, cases[i].want), "case %zu: \"%s\", want \"%s\"", i,
			  conn_close_reason(c), cases[i].want);
		conn_free(c);
		close(raw);
	}
}

/*
 * A genuine response recorded on one connection does not open another:
 * the nonces differ.  Also: our own challenge reflected back is refused.
 */
static void
test_replay_and_reflection(void)
{
	raw_identity who;
	codec_frame f;
	codec_frame recorded;
	uint8_t		buf[1024];
	size_t		len;
	peer_conn  *b;
	peer_conn  *c;
	int			raw;

	memset(&who, 0, sizeof(who));
	who.id = 1;
	who.cluster = CLUSTER;
	who.secret = secret_a;
	memset(who.nonce, 0x66, sizeof(who.nonce));
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	make_cfg(&cfg2, 2, CLUSTER, secret_a);

	/* session 1: the raw end poses as node 1 to node 2 and records */
	b = make_raw(&cfg2, false, &raw);
	if (b == NULL)
		return;
	conn_on_writable(b);
	CHECK(raw_read_frame(raw, &f), "b's challenge");
	raw_challenge_frame(&who, &f);
	len = wire_frame(&f, buf, sizeof(buf));
	raw_write(raw, buf, len);
	conn_on_readable(b);
	conn_on_writable(b);
	CHECK(raw_read_frame(raw, &recorded) && recorded.kind == CODEC_FRAME_RESPONSE,
		  "b's genuine response");
	conn_free(b);
	close(raw);

	/* session 2: replay it, as node 2, to node 1 */
	c = make_raw(&cfg1, false, &raw);
	if (c == NULL)
		return;
	who.id = 2;
	raw_challenge_frame(&who, &f);
	len = wire_frame(&f, buf, sizeof(buf));
	len += wire_frame(&recorded, buf + len, sizeof(buf) - len);
	raw_write(raw, buf, len);
	conn_on_readable(c);
	CHECK(reason_has(c, "does not verify"), "replay: %s", conn_close_reason(c));
	conn_free(c);
	close(raw);

	/* our own challenge echoed back */
	c = make_raw(&cfg1, false, &raw);
	if (c == NULL)
		return;
	conn_on_writable(c);
	CHECK(raw_read_frame(raw, &f), "challenge");
	len = wire_frame(&f, buf, sizeof(buf));
	raw_write(raw, buf, len);
	conn_on_readable(c);
	CHECK(reason_has(c, "our own node id"), "echo: %s", conn_close_reason(c));
	conn_free(c);
	close(raw);

	/* our nonce under another node id */
	c = make_raw(&cfg1, false, &raw);
	if (c == NULL)
		return;
	conn_on_writable(c);
	CHECK(raw_read_frame(raw, &f), "challenge");
	f.u.challenge.node_id = 2;
	len = wire_frame(&f, buf, sizeof(buf));
	raw_write(raw, buf, len);
	conn_on_readable(c);
	CHECK(reason_has(c, "reflected our own handshake nonce"), "nonce: %s",
		  conn_close_reason(c));
	conn_free(c);
	close(raw);
}

/*----------
 * Cases: framing
 *----------
 */

/* An established conn (node 1) whose peer (node 2) is the raw end. */
static peer_conn *
established_raw(const transport_config *cfg, int *raw)
{
	raw_identity who;
	uint8_t		their_nonce[CODEC_NONCE_LEN];
	peer_conn  *c;

	memset(&who, 0, sizeof(who));
	who.id = 2;
	who.cluster = CLUSTER;
	who.secret = secret_a;
	test_rng(NULL, who.nonce, sizeof(who.nonce));
	c = make_raw(cfg, false, raw);
	if (c == NULL)
		return NULL;
	if (!raw_handshake(c, *raw, &who, cfg->self_id, their_nonce))
	{
		CHECK(false, "scripted handshake failed: %s",
			  conn_close_reason(c) ? conn_close_reason(c) : "no reason");
		conn_free(c);
		close(*raw);
		return NULL;
	}
	return c;
}

static void
test_one_byte_reads(void)
{
	uint8_t		buf[8192];
	size_t		ends[40];
	size_t		len = 0;
	size_t		pos;
	int			nframes = 0;
	int			complete = 0;
	peer_conn  *c;
	int			raw;
	codec_frame f;
	int			i;

	reset_rx();
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	c = established_raw(&cfg1, &raw);
	if (c == NULL)
		return;

	/* heartbeats, plus forward batches of a few sizes */
	for (i = 0; i < 40; i++)
	{
		if (i % 8 == 7)
		{
			uint8_t		payload[300];

			memset(payload, i, sizeof(payload));
			memset(&f, 0, sizeof(f));
			f.kind = CODEC_FRAME_FORWARD_BATCH;
			f.u.forward_batch.origin = 2;
			f.u.forward_batch.payload = payload;
			f.u.forward_batch.len = (size_t) (i * 7);
			len += wire_frame(&f, buf + len, sizeof(buf) - len);
		}
		else
			len += wire_heartbeat(2, 1, (uint64_t) nframes++, buf + len,
								  sizeof(buf) - len);
		ends[i] = len;
	}

	for (pos = 0; pos < len; pos++)
	{
		raw_write(raw, buf + pos, 1);
		conn_on_readable(c);
		drain(c, &rx_a);
		while (complete < 40 && ends[complete] <= pos + 1)
			complete++;
		CHECK(rx_a.n + rx_a.other == complete,
			  "after byte %zu: %d delivered, %d complete", pos,
			  rx_a.n + rx_a.other, complete);
	}
	CHECK(in_order(&rx_a, nframes), "%d heartbeats in order", rx_a.n);
	CHECK(rx_a.other == 5, "5 forward batches, got %d", rx_a.other);
	CHECK(conn_get_state(c) == CONN_ESTABLISHED, "still open: %s",
		  conn_close_reason(c));
	conn_free(c);
	close(raw);
}

static void
test_many_frames_one_read(void)
{
	static uint8_t buf[60000];
	size_t		len = 0;
	peer_conn  *c;
	int			raw;
	int			i;

	reset_rx();
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	c = established_raw(&cfg1, &raw);
	if (c == NULL)
		return;
	for (i = 0; i < 2000; i++)
		len += wire_heartbeat(2, 1, (uint64_t) i, buf + len, sizeof(buf) - len);
	raw_write(raw, buf, len);

	/* one call reads it all (it fits the 64 kB buffer) */
	conn_on_readable(c);
	drain(c, &rx_a);
	CHECK(in_order(&rx_a, 2000), "got %d in order", rx_a.n);

	/* a frame whose from is not the authenticated peer */
	len = wire_heartbeat(3, 1, 0, buf, sizeof(buf));
	raw_write(raw, buf, len);
	conn_on_readable(c);
	drain(c, &rx_a);
	CHECK(reason_has(c, "raft message from node 3 to node 1"), "%s",
		  conn_close_reason(c));
	conn_free(c);
	close(raw);
}

static void
test_bad_frames_after_handshake(void)
{
	static const char *const want[] = {
		"above the limit of 1048576",
		"above the limit of 1048576",
		"empty frame",
		"undecodable frame",
		"handshake challenge after the handshake",
	};
	uint8_t		buf[512];
	size_t		len;
	peer_conn  *c;
	int			raw;
	int			i;
	codec_frame f;
	raw_identity who;

	memset(&who, 0, sizeof(who));
	who.id = 2;
	who.cluster = CLUSTER;
	for (i = 0; i < 5; i++)
	{
		reset_rx();
		make_cfg(&cfg1, 1, CLUSTER, secret_a);
		cfg1.max_frame_size = 1024 * 1024;
		c = established_raw(&cfg1, &raw);
		if (c == NULL)
			return;
		counts.peak_block = 0;
		len = wire_heartbeat(2, 1, 0, buf, sizeof(buf));
		switch (i)
		{
			case 0:
				codec_put_frame_len(buf + len, 1024 * 1024 + 1);
				len += 4;
				break;
			case 1:
				memcpy(buf + len, "\xff\xff\xff\xff", 4);
				len += 4;
				break;
			case 2:
				memcpy(buf + len, "\0\0\0\0", 4);
				len += 4;
				break;
			case 3:
				memcpy(buf + len, "\0\0\0\3\x08\x01\x12", 7);
				len += 7;
				break;
			case 4:
				raw_challenge_frame(&who, &f);
				len += wire_frame(&f, buf + len, sizeof(buf) - len);
				break;
		}
		raw_write(raw, buf, len);
		conn_on_readable(c);
		drain(c, &rx_a);
		CHECK(rx_a.n == 1, "case %d: the good frame in front is delivered", i);
		CHECK(reason_has(c, want[i]), "case %d: \"%s\", want \"%s\"", i,
			  conn_close_reason(c), want[i]);
		CHECK(counts.peak_block <= 64 * 1024, "case %d: allocated %zu bytes",
			  i, counts.peak_block);
		conn_free(c);
		close(raw);
	}
}

static void
test_oversized_before_auth(void)
{
	static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff};
	static const uint8_t just_over[] = {0x00, 0x00, 0x02, 0x01};	/* 513 */

	counts.peak_block = 0;
	expect_raw_close(huge, 4, "above the limit of 512 before authentication");
	expect_raw_close(just_over, 4, "above the limit of 512 before authentication");
	CHECK(counts.peak_block <= 4096, "allocated %zu bytes for an unauthenticated peer",
		  counts.peak_block);
}

static void
test_truncated_then_eof(void)
{
	uint8_t		buf[512];
	size_t		len;
	size_t		one;
	peer_conn  *c;
	int			raw;
	int			i;
	codec_frame f;
	raw_identity who;

	/* two good frames, then half of a third, then EOF */
	reset_rx();
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	c = established_raw(&cfg1, &raw);
	if (c == NULL)
		return;
	len = wire_heartbeat(2, 1, 0, buf, sizeof(buf));
	len += wire_heartbeat(2, 1, 1, buf + len, sizeof(buf) - len);
	one = wire_heartbeat(2, 1, 2, buf + len, sizeof(buf) - len);
	raw_write(raw, buf, len + one / 2);
	shutdown(raw, SHUT_WR);
	for (i = 0; i < 3; i++)
	{
		conn_on_readable(c);
		drain(c, &rx_a);
	}
	CHECK(in_order(&rx_a, 2), "frames before the cut are delivered: %d", rx_a.n);
	CHECK(reason_has(c, "in the middle of a frame"), "%s", conn_close_reason(c));
	CHECK(conn_fd(c) == -1 && !conn_wants_read(c) && !conn_wants_write(c),
		  "closed conn wants nothing");
	conn_free(c);
	close(raw);

	/* EOF inside the length prefix */
	c = established_raw(&cfg1, &raw);
	if (c == NULL)
		return;
	raw_write(raw, "\0\0", 2);
	shutdown(raw, SHUT_WR);
	conn_on_readable(c);
	CHECK(conn_next_frame(c, &f) == -1, "closed");
	CHECK(reason_has(c, "after 2 bytes of a length prefix"), "%s",
		  conn_close_reason(c));
	conn_free(c);
	close(raw);

	/* EOF in the middle of the peer's challenge */
	memset(&who, 0, sizeof(who));
	who.id = 2;
	who.cluster = CLUSTER;
	raw_challenge_frame(&who, &f);
	len = wire_frame(&f, buf, sizeof(buf));
	c = make_raw(&cfg1, false, &raw);
	if (c == NULL)
		return;
	raw_write(raw, buf, len - 3);
	shutdown(raw, SHUT_WR);
	conn_on_readable(c);
	CHECK(reason_has(c, "in the middle of a frame") &&
		  reason_has(c, "during the handshake"), "%s", conn_close_reason(c));
	conn_free(c);
	close(raw);
}

/*
 * Random input from an unauthenticated peer: pure noise, noise behind a
 * plausible length prefix, a valid challenge followed by noise, a valid
 * challenge and a response with a random MAC followed by Raft frames, and
 * valid handshake frames with random bit flips.  Nothing may be delivered,
 * the connection must never become established, and EOF must close it.
 */
static void
test_random_input(void)
{
	static uint8_t buf[2048];
	raw_identity who;
	codec_frame f;
	size_t		len;
	size_t		n;
	size_t		k;
	peer_conn  *c;
	int			raw;
	int			i;
	int			mode;
	int			delivered = 0;
	int			established = 0;
	int			open_after_eof = 0;
	int			by_mode[5] = {0};

	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	memset(&who, 0, sizeof(who));
	who.id = 2;
	who.cluster = CLUSTER;
	who.secret = secret_a;

	for (i = 0; i < RANDOM_INPUTS; i++)
	{
		mode = (int) rnd_below(5);
		len = 0;
		test_rng(NULL, who.nonce, sizeof(who.nonce));
		if (mode >= 2)
		{
			raw_challenge_frame(&who, &f);
			len = wire_frame(&f, buf, sizeof(buf));
		}
		if (mode == 1)
		{
			n = 1 + rnd_below(600);
			codec_put_frame_len(buf, n);
			len = 4;
		}
		if (mode == 3)
		{
			memset(&f, 0, sizeof(f));
			f.kind = CODEC_FRAME_RESPONSE;
			f.u.response.cluster_id = CLUSTER;
			f.u.response.node_id = 2;
			f.u.response.peer_id = 1;
			f.u.response.version = 1;
			test_rng(NULL, f.u.response.hmac, CODEC_HMAC_LEN);
			len += wire_frame(&f, buf + len, sizeof(buf) - len);
			for (k = 0; k < 3; k++)
				len += wire_heartbeat(2, 1, k, buf + len, sizeof(buf) - len);
		}
		if (mode == 4)
		{
			for (k = 0; k < 1 + rnd_below(4); k++)
				buf[rnd_below(len)] ^= (uint8_t) (1 << rnd_below(8));
		}
		else
		{
			n = rnd_below(mode == 0 ? 700 : 400);
			for (k = 0; k < n; k++)
				buf[len++] = (uint8_t) rnd();
		}
		by_mode[mode]++;

		c = make_raw(&cfg1, (i & 1) != 0, &raw);
		if (c == NULL)
			return;
		conn_on_writable(c);
		raw_write(raw, buf, len);
		conn_on_readable(c);
		if (conn_next_frame(c, &f) == 1)
		{
			delivered++;
			codec_frame_free(&f, &counting_allocator);
		}
		if (conn_get_state(c) == CONN_ESTABLISHED)
			established++;
		shutdown(raw, SHUT_WR);
		conn_on_readable(c);
		if (conn_next_frame(c, &f) == 1)
		{
			delivered++;
			codec_frame_free(&f, &counting_allocator);
		}
		if (conn_get_state(c) != CONN_CLOSED)
			open_after_eof++;
		conn_free(c);
		close(raw);
	}
	CHECK(delivered == 0, "%d frames delivered from unauthenticated peers", delivered);
	CHECK(established == 0, "%d connections established", established);
	CHECK(open_after_eof == 0, "%d connections survived EOF", open_after_eof);
	printf("# random input: %d inputs (modes %d/%d/%d/%d/%d)\n", RANDOM_INPUTS,
		   by_mode[0], by_mode[1], by_mode[2], by_mode[3], by_mode[4]);
}

/*----------
 * Cases: output, deadline, backoff, API edges
 *----------
 */
static void
test_backpressure(void)
{
	peer_conn  *a;
	peer_conn  *b;
	codec_frame f;
	uint8_t		payload[1000];
	int			queued = 0;
	int			rc = CONN_OK;
	int			i;
	size_t		max_pending = 0;

	reset_rx();
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	make_cfg(&cfg2, 2, CLUSTER, secret_a);
	cfg1.max_output = 64 * 1024;
	make_pair(&cfg1, &cfg2, 2, &a, &b);
	if (a == NULL || b == NULL)
		goto out;
	pump(a, b, 5);
	CHECK(conn_get_state(a) == CONN_ESTABLISHED, "established");

	/* b never reads: a fills the socket, then its own buffer */
	memset(payload, 0xab, sizeof(payload));
	for (i = 0; i < 100000; i++)
	{
		memset(&f, 0, sizeof(f));
		f.kind = CODEC_FRAME_RAFT;
		f.u.raft = heartbeat(1, 2, (uint64_t) queued);
		rc = conn_queue_codec_frame(a, &f);
		if (rc != CONN_OK)
			break;
		queued++;
		memset(&f, 0, sizeof(f));
		f.kind = CODEC_FRAME_FORWARD_BATCH;
		f.u.forward_batch.origin = 1;
		f.u.forward_batch.payload = payload;
		f.u.forward_batch.len = sizeof(payload);
		rc = conn_queue_codec_frame(a, &f);
		if (rc != CONN_OK)
			break;
		conn_on_writable(a);
		if (conn_output_pending(a) > max_pending)
			max_pending = conn_output_pending(a);
	}
	CHECK(rc == CONN_ERR_BACKPRESSURE, "got %s after %d frames",
		  conn_status_name(rc), queued);
	CHECK(max_pending <= 64 * 1024, "pending %zu above the limit", max_pending);
	CHECK(conn_output_pending(a) > 0 && conn_wants_write(a), "output waits");
	CHECK(conn_get_state(a) == CONN_ESTABLISHED, "backpressure does not close");

	/* the reader catches up: everything arrives, in order, and sending resumes */
	pump(a, b, 200);
	CHECK(in_order(&rx_b, queued), "b got %d of %d", rx_b.n, queued);
	CHECK(conn_output_pending(a) == 0, "drained");
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_RAFT;
	f.u.raft = heartbeat(1, 2, (uint64_t) queued);
	CHECK(conn_queue_codec_frame(a, &f) == CONN_OK, "sending resumes");

	/* a frame bigger than max_output goes into an empty buffer ... */
	pump(a, b, 5);
	{
		static uint8_t big[100 * 1024];
		uint8_t    *enc;
		size_t		elen;

		memset(&f, 0, sizeof(f));
		f.kind = CODEC_FRAME_FORWARD_BATCH;
		f.u.forward_batch.origin = 1;
		f.u.forward_batch.payload = big;
		f.u.forward_batch.len = sizeof(big);
		CHECK(codec_frame_encode(&f, &enc, &elen) == CODEC_OK, "encode big");
		CHECK(conn_queue_frame(a, enc, elen) == CONN_OK, "big frame into empty buffer");
		/* ... but not behind anything else */
		CHECK(conn_queue_frame(a, enc, elen) == CONN_ERR_BACKPRESSURE,
			  "second big frame must wait");
		codec_buf_free(enc);
		CHECK(conn_queue_frame(a, big, 0) == CONN_ERR_TOO_LARGE, "empty frame");
		CHECK(conn_queue_frame(a, big, CODEC_MAX_FRAME_SIZE + 1) == CONN_ERR_TOO_LARGE,
			  "frame above the limit");
	}
	pump(a, b, 50);
	CHECK(rx_b.other >= 1 && rx_b.last_payload == 100 * 1024, "big frame arrived");

out:
	conn_free(a);
	conn_free(b);
}

static void
test_deadline(void)
{
	peer_conn  *c;
	peer_conn  *a;
	peer_conn  *b;
	int			raw;
	int			lfd = -1;
	int			cfd = -1;
	int			port;
	char		err[TRANSPORT_REASON_LEN];

	/* a peer that never answers */
	make_cfg(&cfg1, 1, CLUSTER, secret_a);
	cfg1.handshake_timeout_ms = 1500;
	c = make_raw(&cfg1, false, &raw);
	if (c == NULL)
		return;
	CHECK(conn_deadline(c) == 2500, "deadline %llu",
		  (unsigned long long) conn_deadline(c));
	conn_on_writable(c);
	conn_on_readable(c);
	conn_tick(c, 2499);
	CHECK(conn_get_state(c) == CONN_HANDSHAKE, "open before the deadline");
	conn_tick(c, 2500);
	CHECK(reason_has(c, "handshake did not complete within 1500 ms"), "%s",
		  conn_close_reason(c));
	conn_free(c);
	close(raw);

	/* a listener on 127.0.0.1 that never accepts: TCP connects, nobody talks */
	CHECK(transport_listen("127.0.0.1", 0, &lfd, err, sizeof(err)) == 0, "%s", err);
	port = transport_local_port(lfd);
	CHECK(transport_connect_start("127.0.0.1", port, &cfd, err, sizeof(err)) == 0,
		  "%s", err);
	c = conn_new_outbound(&cfg1, cfd, 2, 0, err, sizeof(err));
	CHECK(c != NULL, "%s", err);
	if (c != NULL)
	{
		conn_tick(c, 1499);
		CHECK(conn_get_state(c) != CONN_CLOSED, "open before the deadline");
		conn_tick(c, 1500);
		CHECK(reason_has(c, "did not complete within 1500 ms"), "%s",
			  conn_close_reason(c));
		conn_free(c);
	}
	close(lfd);

	/* an established connection has no deadline */
	make_cfg(&cfg2, 2, CLUSTER, secret_a);
	reset_rx();
	make_pair(&cfg1, &cfg2, 2, &a, &b);
	if (a != NULL && b != NULL)
	{
		pump(a, b, 5);
		conn_tick(a, UINT64_MAX);
		CHECK(conn_get_state(a) == CONN_ESTABLISHED, "no deadline once established");
	}
	conn_free(a);
	conn_free(b);
}

static void
test_backoff(void)
{
	transport_backoff b;
	transport_backoff b2;
	uint64_t	base;
	uint64_t	t;
	uint64_t	d;
	int			k;
	int			same = 0;

	backoff_init(&b, 0, 0, 42);
	CHECK(b.min_ms == 50 && b.max_ms == 5000, "defaults");
	base = 100;
	for (k = 0; k < 40; k++)
	{
		t = backoff_next(&b, 1000000);
		d = t - 1000000;
		CHECK(d == b.last_delay_ms, "returned time is now + delay");
		CHECK(d >= base / 2 && d <= base, "k=%d: delay %llu outside [%llu, %llu]",
			  k, (unsigned long long) d, (unsigned long long) base / 2,
			  (unsigned long long) base);
		CHECK(d >= 50 && d <= 5000, "k=%d: delay %llu outside [50, 5000]", k,
			  (unsigned long long) d);
		if (k >= 6)
			CHECK(d >= 2500, "k=%d: capped band reached", k);
		base = base * 2 > 5000 ? 5000 : base * 2;
	}

	backoff_reset(&b);
	d = backoff_next(&b, 0);
	CHECK(d >= 50 && d <= 100, "after reset: %llu", (unsigned long long) d);

	/* same seed, same sequence; another seed, another one */
	backoff_init(&b, 50, 5000, 7);
	backoff_init(&b2, 50, 5000, 7);
	for (k = 0; k < 10; k++)
		CHECK(backoff_next(&b, 0) == backoff_next(&b2, 0), "reproducible");
	backoff_init(&b, 50, 5000, 7);
	backoff_init(&b2, 50, 5000, 8);
	for (k = 0; k < 10; k++)
		same += backoff_next(&b, 0) == backoff_next(&b2, 0);
	CHECK(same < 5, "different seeds jitter differently (%d equal)", same);

	/* odd bounds */
	backoff_init(&b, 300, 100, 1);
	CHECK(b.max_ms == 300, "max below min becomes min");
	for (k = 0; k < 5; k++)
	{
		d = backoff_next(&b, 0);
		CHECK(d == 300, "fixed at 300: %llu", (unsigned long long) d);
	}
	backoff_init(&b, 1, UINT64_MAX, 1);
	for (k = 0; k < 100; k++)
		d = backoff_next(&b, 0);
	CHECK(d >= UINT64_MAX / 2 - 1, "huge cap without overflow: %llu",
		  (unsigned long long) d);
}

static void
test_api_edges(void)
{
	transport_config cfg;
	char		err[TRANSPORT_REASON_LEN];
	int			sv[2];
	peer_conn  *c;
	codec_frame f;
	uint8_t		one = 1;

	make_cfg(&cfg, 1, CLUSTER, secret_a);
	CHECK(transport_config_check(&cfg) == NULL, "valid config");
	cfg.self_id = 0;
	CHECK(transport_config_check(&cfg) != NULL, "node id 0");
	cfg.self_id = 1;
	cfg.secret_len = 0;
	CHECK(transport_config_check(&cfg) != NULL, "empty secret");
	cfg.secret_len = 32;
	cfg.max_version = CODEC_PROTOCOL_VERSION + 1;
	CHECK(transport_config_check(&cfg) != NULL, "unsupported version");
	cfg.max_version = 0;
	cfg.max_frame_size = CODEC_MAX_FRAME_SIZE + 1;
	CHECK(transport_config_check(&cfg) != NULL, "frame limit above the codec's");
	cfg.max_frame_size = 0;
	CHECK(transport_config_check(NULL) != NULL, "NULL config");

	/* a bad config refuses the socket and closes it */
	cfg.self_id = 0;
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	c = conn_new_inbound(&cfg, sv[0], 0, err, sizeof(err));
	CHECK(c == NULL && strstr(err, "node id") != NULL, "refused: %s", err);
	CHECK(send(sv[1], &one, 1, MSG_NOSIGNAL) < 0, "the conn closed its socket");
	close(sv[1]);
	cfg.self_id = 1;

	/* no nonce, no connection */
	cfg.rng = failing_rng;
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	c = conn_new_inbound(&cfg, sv[0], 0, err, sizeof(err));
	CHECK(c == NULL && strstr(err, "nonce") != NULL, "rng failure: %s", err);
	close(sv[1]);
	cfg.rng = test_rng;

	/* calls on a closed connection */
	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	c = conn_new_inbound(&cfg, sv[0], 0, err, sizeof(err));
	CHECK(c != NULL, "%s", err);
	if (c != NULL)
	{
		CHECK(conn_close_reason(c) == NULL, "open");
		conn_close(c, "first");
		conn_close(c, "second");
		CHECK(strcmp(conn_close_reason(c), "first") == 0, "first reason kept");
		CHECK(conn_queue_frame(c, &one, 1) == CONN_ERR_CLOSED, "queue on closed");
		CHECK(conn_next_frame(c, &f) == -1, "next on closed");
		conn_on_readable(c);
		conn_on_writable(c);
		conn_tick(c, UINT64_MAX);
		CHECK(conn_fd(c) == -1, "fd released");
		conn_free(c);
	}
	close(sv[1]);
	conn_free(NULL);
	CHECK(strcmp(conn_status_name(CONN_ERR_BACKPRESSURE), "output buffer full") == 0,
		  "status names");
}

/* The transcript layout, byte for byte, against a hand computation. */
static void
test_handshake_mac_layout(void)
{
	uint8_t		t[119];
	uint8_t		cn[32];
	uint8_t		rn[32];
	uint8_t		want[32];
	uint8_t		got[32];
	int			i;

	for (i = 0; i < 32; i++)
	{
		cn[i] = (uint8_t) i;
		rn[i] = (uint8_t) (0xff - i);
	}
	memcpy(t, "chronicle_raft handshake v1", 27);
	memcpy(t + 27, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);	/* cluster */
	memcpy(t + 35, "\0\0\0\0\0\0\0\x0b", 8);	/* challenger 11 */
	memcpy(t + 43, "\0\0\0\0\0\0\x01\x00", 8);	/* responder 256 */
	memcpy(t + 51, "\0\0\0\x01", 4);	/* version 1 */
	memcpy(t + 55, cn, 32);
	memcpy(t + 87, rn, 32);
	chr_hmac_sha256("k", 1, t, sizeof(t), want);
	transport_handshake_mac((const uint8_t *) "k", 1, UINT64_C(0x0102030405060708),
							11, 256, 1, cn, rn, got);
	CHECK(memcmp(want, got, 32) == 0, "transcript layout");
	transport_handshake_mac((const uint8_t *) "k", 1, UINT64_C(0x0102030405060708),
							256, 11, 1, rn, cn, got);
	CHECK(memcmp(want, got, 32) != 0, "roles are not interchangeable");
}

int
main(void)
{
	const char *seed_env = getenv("TRANSPORT_TEST_SEED");
	uint64_t	seed = DEFAULT_SEED;
	unit_before_case = reset_alloc_counts;
	unit_after_case = check_alloc_counts;

	if (seed_env != NULL && *seed_env != '\0')
		seed = strtoull(seed_env, NULL, 0);
	if (seed == 0)
		seed = DEFAULT_SEED;
	rng_state = seed;
	printf("# transport_test seed 0x%llx\n", (unsigned long long) seed);

	run_case("handshake MAC transcript layout", test_handshake_mac_layout);
	run_case("handshake over a socket pair, frames both ways in order", test_handshake_socketpair);
	run_case("handshake over loopback TCP, 3 MiB frame, EOF", test_handshake_tcp);
	run_case("connect refused", test_connect_refused);
	run_case("wrong secret on either side", test_wrong_secret);
	run_case("wrong cluster id", test_wrong_cluster);
	run_case("unknown, unexpected and own node id", test_unknown_node);
	run_case("protocol version mismatch", test_version_mismatch);
	run_case("frames before the handshake", test_frames_before_handshake);
	run_case("well-formed but wrong responses", test_bad_responses);
	run_case("replayed response and reflected challenge", test_replay_and_reflection);
	run_case("frames split into 1-byte reads", test_one_byte_reads);
	run_case("2000 frames in one read; forged sender", test_many_frames_one_read);
	run_case("oversized length prefix before authentication", test_oversized_before_auth);
	run_case("bad frames after the handshake", test_bad_frames_after_handshake);
	run_case("truncated frame then EOF", test_truncated_then_eof);
	run_case("random input from unauthenticated peers", test_random_input);
	run_case("output backpressure", test_backpressure);
	run_case("handshake deadline", test_deadline);
	run_case("reconnect backoff", test_backoff);
	run_case("API edges", test_api_edges);

	return unit_summary();
}
