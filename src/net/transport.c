/*-------------------------------------------------------------------------
 *
 * transport.c
 *	  Non-blocking TCP connections between chronicle_raft servers: framing,
 *	  the mutual HMAC handshake of docs/protocol.md, bounded buffers, and
 *	  the reconnect backoff.
 *
 * This file owns the byte stream of a connection; codec.c owns what a
 * frame means.  Invariants:
 *
 *	- nothing the peer sends can crash us or make us allocate more than
 *	  its frame limit: a length prefix is checked (0, above the limit)
 *	  before the input buffer grows for it, and before the peer is
 *	  authenticated the limit is TRANSPORT_HANDSHAKE_MAX_FRAME, so an
 *	  unauthenticated peer costs about a kilobyte of input buffer;
 *	- no frame other than the handshake's is decoded for, or delivered to,
 *	  the caller before the peer's HandshakeResponse carried a valid HMAC:
 *	  conn_next_frame() returns frames only in CONN_ESTABLISHED, and the
 *	  only way into that state is handle_response() after every check;
 *	- every problem with the peer's bytes closes the connection and leaves
 *	  a reason for the log; the peer is told nothing (no error frames), so
 *	  a prober learns nothing about which check failed;
 *	- queued output never exceeds the larger of max_output and one frame
 *	  (a frame above max_output is accepted only into an empty buffer), and
 *	  the input buffer never exceeds the larger of IN_BUF_SIZE and one
 *	  frame plus its prefix;
 *	- no clock reads, no blocking calls on a connection, no signals (send()
 *	  with MSG_NOSIGNAL), no threads.
 *
 * The handshake, per connection: both ends queue their challenge at once.
 * On the peer's challenge we check cluster id, node id and versions, then
 * queue our response (HMAC over the transcript with the peer as
 * challenger).  On the peer's response we check its fields and HMAC (with
 * us as challenger) and become CONN_ESTABLISHED.  Our response is queued
 * before anything the caller queues afterwards, so the peer verifies us
 * before it reads any frame of ours.
 *
 * src/net/transport.c
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "net/hmac.h"
#include "net/transport.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0			/* SO_NOSIGPIPE is set instead, if it exists */
#endif

/* Input buffer before and after authentication. */
#define IN_BUF_HANDSHAKE	1024
#define IN_BUF_SIZE			(64 * 1024)

/* An idle output buffer above this size is released. */
#define OUT_BUF_KEEP		(64 * 1024)
#define OUT_BUF_MIN			4096

/* recv() calls per conn_on_readable(), so one busy peer cannot starve others. */
#define MAX_READS_PER_CALL	16

/* Frame.version of HandshakeChallenge/Response, readable by every peer. */
#define HANDSHAKE_FRAME_VERSION 1

/* Bytes of the HMAC transcript (docs/protocol.md, "Handshake"). */
#define TRANSCRIPT_LEN	(TRANSPORT_HANDSHAKE_LABEL_LEN + 8 + 8 + 8 + 4 + \
						 CODEC_NONCE_LEN + CODEC_NONCE_LEN)

struct peer_conn
{
	const transport_config *cfg;
	raft_allocator alloc;		/* cfg->allocator resolved */
	int			fd;				/* -1 once closed */
	conn_state	state;
	bool		outbound;
	bool		peer_eof;		/* recv() returned 0 */
	raft_node_id expected_peer; /* outbound: who we dialed; 0 = any */
	uint64_t	timeout_ms;
	uint64_t	deadline_ms;	/* handshake must be done by then */

	/* handshake */
	uint8_t		my_nonce[CODEC_NONCE_LEN];
	uint8_t		peer_nonce[CODEC_NONCE_LEN];
	bool		got_challenge;
	raft_node_id peer_id;		/* from the peer's accepted challenge */
	uint32_t	version;		/* negotiated */

	/* input: bytes in[in_start .. in_end) are received, not yet consumed */
	uint8_t    *in;
	size_t		in_cap;
	size_t		in_start;
	size_t		in_end;

	/* output: bytes out[out_start .. out_end) are queued, not yet sent */
	uint8_t    *out;
	size_t		out_cap;
	size_t		out_start;
	size_t		out_end;

	char		addr[80];
	char		reason[TRANSPORT_REASON_LEN];
};

static void closef(peer_conn *c, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/*----------
 * Small helpers
 *----------
 */
static void
set_err(char *err, size_t errlen, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void
put_be64(uint8_t *p, uint64_t v)
{
	int			i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t) (v >> (56 - 8 * i));
}

static void
put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

static int
set_nonblock_cloexec(int fd)
{
	int			fl;

	fl = fcntl(fd, F_GETFL, 0);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	fl = fcntl(fd, F_GETFD, 0);
	if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
		return -1;
	return 0;
}

static const char *
frame_kind_name(codec_frame_kind k)
{
	switch (k)
	{
		case CODEC_FRAME_RAFT:
			return "raft";
		case CODEC_FRAME_CHALLENGE:
			return "handshake challenge";
		case CODEC_FRAME_RESPONSE:
			return "handshake response";
		case CODEC_FRAME_FORWARD_BATCH:
			return "forward batch";
		case CODEC_FRAME_FORWARD_RESULT:
			return "forward result";
		case CODEC_FRAME_NONE:
			break;
	}
	return "unknown";
}

/* "host:port" of a socket address, "local" for AF_UNIX. */
static void
format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char		host[64];		/* numeric: an IPv6 address with scope fits */
	char		serv[8];

	if (sa->sa_family == AF_UNIX)
	{
		snprintf(out, outlen, "local");
		return;
	}
	if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv),
					NI_NUMERICHOST | NI_NUMERICSERV) != 0)
	{
		snprintf(out, outlen, "?");
		return;
	}
	if (sa->sa_family == AF_INET6)
		snprintf(out, outlen, "[%s]:%s", host, serv);
	else
		snprintf(out, outlen, "%s:%s", host, serv);
}

/*----------
 * Configuration
 *----------
 */
static uint32_t
cfg_min_version(const transport_config *cfg)
{
	return cfg->min_version ? cfg->min_version : CODEC_MIN_PROTOCOL_VERSION;
}

static uint32_t
cfg_max_version(const transport_config *cfg)
{
	return cfg->max_version ? cfg->max_version : CODEC_PROTOCOL_VERSION;
}

static size_t
cfg_max_frame(const transport_config *cfg)
{
	return cfg->max_frame_size ? cfg->max_frame_size : CODEC_MAX_FRAME_SIZE;
}

static size_t
cfg_max_output(const transport_config *cfg)
{
	return cfg->max_output ? cfg->max_output : TRANSPORT_DEFAULT_MAX_OUTPUT;
}

const char *
transport_config_check(const transport_config *cfg)
{
	if (cfg == NULL)
		return "no transport configuration";
	if (cfg->self_id == RAFT_NO_NODE)
		return "own node id is 0";
	if (cfg->secret == NULL || cfg->secret_len == 0)
		return "cluster secret is empty";
	if (cfg_min_version(cfg) < CODEC_MIN_PROTOCOL_VERSION ||
		cfg_max_version(cfg) > CODEC_PROTOCOL_VERSION ||
		cfg_min_version(cfg) > cfg_max_version(cfg))
		return "protocol version range not supported by this build";
	if (cfg_max_frame(cfg) > CODEC_MAX_FRAME_SIZE ||
		cfg_max_frame(cfg) < TRANSPORT_HANDSHAKE_MAX_FRAME)
		return "max_frame_size outside the codec's limits";
	return NULL;
}

/*----------
 * Sockets
 *----------
 */
int
transport_listen(const char *host, int port, int *fd_out, char *err,
				 size_t errlen)
{
	struct addrinfo hints;
	struct addrinfo *res = NULL;
	struct addrinfo *ai;
	char		portstr[16];
	int			rc;
	int			fd = -1;
	int			one = 1;

	*fd_out = -1;
	if (port < 0 || port > 65535)
	{
		set_err(err, errlen, "invalid port %d", port);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (host != NULL && (host[0] == '\0' || strcmp(host, "*") == 0))
		host = NULL;
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0)
	{
		set_err(err, errlen, "could not resolve \"%s\": %s",
				host ? host : "*", gai_strerror(rc));
		return -1;
	}
	set_err(err, errlen, "no address to listen on");
	for (ai = res; ai != NULL; ai = ai->ai_next)
	{
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
		{
			set_err(err, errlen, "could not create socket: %s", strerror(errno));
			continue;
		}
		/* a restarted node must rebind while old connections sit in TIME_WAIT */
		(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (set_nonblock_cloexec(fd) < 0 ||
			bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
			listen(fd, 64) < 0)
		{
			set_err(err, errlen, "could not listen on %s:%d: %s",
					host ? host : "*", port, strerror(errno));
			close(fd);
			fd = -1;
			continue;
		}
		break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	*fd_out = fd;
	return 0;
}

int
transport_local_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t	len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *) &ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *) &ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *) &ss)->sin6_port);
	return -1;
}

int
transport_accept(int listen_fd, int *fd_out, char *err, size_t errlen)
{
	int			fd;

	*fd_out = -1;
	for (;;)
	{
		fd = accept(listen_fd, NULL, NULL);
		if (fd >= 0)
			break;
		if (errno == EINTR)
			continue;
		/* nothing pending, or the client gave up before we got to it */
		if (errno == EAGAIN || errno == EWOULDBLOCK ||
			errno == ECONNABORTED || errno == EPROTO)
			return 0;
		set_err(err, errlen, "could not accept a connection: %s", strerror(errno));
		return -1;
	}
	if (set_nonblock_cloexec(fd) < 0)
	{
		set_err(err, errlen, "could not make an accepted socket non-blocking: %s",
				strerror(errno));
		close(fd);
		return -1;
	}
	*fd_out = fd;
	return 1;
}

int
transport_connect_start(const char *host, int port, int *fd_out, char *err,
						size_t errlen)
{
	struct addrinfo hints;
	struct addrinfo *res = NULL;
	struct addrinfo *ai;
	char		portstr[16];
	int			rc;
	int			fd = -1;

	*fd_out = -1;
	if (host == NULL || host[0] == '\0' || port <= 0 || port > 65535)
	{
		set_err(err, errlen, "invalid address %s:%d", host ? host : "(null)", port);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0)
	{
		set_err(err, errlen, "could not resolve \"%s\": %s", host, gai_strerror(rc));
		return -1;
	}
	set_err(err, errlen, "no address for \"%s\"", host);
	for (ai = res; ai != NULL; ai = ai->ai_next)
	{
		fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
		if (fd < 0)
		{
			set_err(err, errlen, "could not create socket: %s", strerror(errno));
			continue;
		}
		if (set_nonblock_cloexec(fd) < 0)
		{
			set_err(err, errlen, "could not make a socket non-blocking: %s",
					strerror(errno));
			close(fd);
			fd = -1;
			continue;
		}
		do
			rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
		while (rc < 0 && errno == EINTR);
		if (rc == 0 || errno == EINPROGRESS)
			break;
		set_err(err, errlen, "could not connect to %s:%d: %s", host, port,
				strerror(errno));
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return -1;
	*fd_out = fd;
	return 0;
}

/*----------
 * Connection basics
 *----------
 */
static void
closef(peer_conn *c, const char *fmt,...)
{
	va_list		ap;

	if (c->state == CONN_CLOSED)
		return;
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);

	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = CONN_CLOSED;
	c->deadline_ms = 0;

	/* nothing will be read or sent any more: give the memory back now */
	if (c->in != NULL)
		c->alloc.free(c->alloc.ctx, c->in);
	c->in = NULL;
	c->in_cap = c->in_start = c->in_end = 0;
	if (c->out != NULL)
		c->alloc.free(c->alloc.ctx, c->out);
	c->out = NULL;
	c->out_cap = c->out_start = c->out_end = 0;
}

void
conn_close(peer_conn *c, const char *reason)
{
	if (c != NULL)
		closef(c, "%s", reason != NULL ? reason : "closed locally");
}

void
conn_free(peer_conn *c)
{
	raft_allocator a;

	if (c == NULL)
		return;
	conn_close(c, "connection freed");
	a = c->alloc;
	chr_secure_zero(c, sizeof(*c));
	a.free(a.ctx, c);
}

static int
default_rng(void *arg, uint8_t *buf, size_t len)
{
	int			fd;
	ssize_t		n;
	size_t		got = 0;

	(void) arg;
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (got < len)
	{
		n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
		{
			close(fd);
			return -1;
		}
		got += (size_t) n;
	}
	close(fd);
	return 0;
}

/*
 * Make room for need more output bytes: compact, then grow.  Limits are the
 * callers' business; this only fails when memory does.
 */
static bool
out_reserve(peer_conn *c, size_t need)
{
	size_t		pending = c->out_end - c->out_start;
	size_t		newcap;
	uint8_t    *p;

	if (c->out_cap - c->out_end >= need)
		return true;
	if (c->out_start > 0)
	{
		memmove(c->out, c->out + c->out_start, pending);
		c->out_start = 0;
		c->out_end = pending;
		if (c->out_cap - c->out_end >= need)
			return true;
	}
	newcap = c->out_cap > OUT_BUF_MIN ? c->out_cap : OUT_BUF_MIN;
	while (newcap - pending < need)
		newcap *= 2;
	p = c->out == NULL ? c->alloc.alloc(c->alloc.ctx, newcap)
		: c->alloc.realloc(c->alloc.ctx, c->out, newcap);
	if (p == NULL)
		return false;
	c->out = p;
	c->out_cap = newcap;
	return true;
}

/* Append one frame, bypassing state and backpressure (handshake only). */
static bool
queue_handshake_frame(peer_conn *c, const codec_frame *f)
{
	size_t		len;
	size_t		wrote;

	if (codec_frame_encoded_size(f, &len) != CODEC_OK ||
		!out_reserve(c, CODEC_FRAME_HEADER_SIZE + len) ||
		codec_frame_encode_into(f, c->out + c->out_end + CODEC_FRAME_HEADER_SIZE,
								c->out_cap - c->out_end - CODEC_FRAME_HEADER_SIZE,
								&wrote) != CODEC_OK)
		return false;
	codec_put_frame_len(c->out + c->out_end, wrote);
	c->out_end += CODEC_FRAME_HEADER_SIZE + wrote;
	return true;
}

static void
set_socket_options(peer_conn *c)
{
	int			one = 1;

	/* Raft messages are small and latency-bound: no Nagle delay */
	(void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef SO_NOSIGPIPE
	(void) setsockopt(c->fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
#ifdef TCP_USER_TIMEOUT
	if (c->cfg->tcp_user_timeout_ms > 0)
	{
		unsigned int t = c->cfg->tcp_user_timeout_ms;

		/* fail a connection whose sent data stays unacknowledged this long */
		(void) setsockopt(c->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &t, sizeof(t));
	}
#endif
	/* failures above only cost performance; AF_UNIX pairs reject some */
}

static void
fill_peer_addr(peer_conn *c)
{
	struct sockaddr_storage ss;
	socklen_t	len = sizeof(ss);

	if (getpeername(c->fd, (struct sockaddr *) &ss, &len) == 0)
		format_addr((struct sockaddr *) &ss, len, c->addr, sizeof(c->addr));
}

static peer_conn *
conn_create(const transport_config *cfg, int fd, bool outbound,
			raft_node_id expected_peer, uint64_t now_ms, char *err,
			size_t errlen)
{
	const char *bad = transport_config_check(cfg);
	raft_allocator a;
	peer_conn  *c;
	codec_frame f;
	transport_rng rng;

	if (bad != NULL || fd < 0)
	{
		set_err(err, errlen, "%s", bad != NULL ? bad : "invalid socket");
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	raft_allocator_resolve(cfg->allocator, &a);
	c = a.alloc(a.ctx, sizeof(peer_conn));
	if (c == NULL)
	{
		set_err(err, errlen, "out of memory");
		close(fd);
		return NULL;
	}
	memset(c, 0, sizeof(*c));
	c->cfg = cfg;
	c->alloc = a;
	c->fd = fd;
	c->outbound = outbound;
	c->expected_peer = expected_peer;
	c->state = outbound ? CONN_CONNECTING : CONN_HANDSHAKE;
	c->timeout_ms = cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms
		: TRANSPORT_DEFAULT_HANDSHAKE_TIMEOUT_MS;
	c->deadline_ms = now_ms + c->timeout_ms;
	snprintf(c->addr, sizeof(c->addr), "?");

	if (set_nonblock_cloexec(fd) < 0)
	{
		set_err(err, errlen, "could not make the socket non-blocking: %s",
				strerror(errno));
		conn_free(c);
		return NULL;
	}
	set_socket_options(c);
	fill_peer_addr(c);

	rng = cfg->rng != NULL ? cfg->rng : default_rng;
	if (rng(cfg->rng_arg, c->my_nonce, CODEC_NONCE_LEN) != 0)
	{
		set_err(err, errlen, "could not generate a handshake nonce");
		conn_free(c);
		return NULL;
	}

	c->in = a.alloc(a.ctx, IN_BUF_HANDSHAKE);
	if (c->in == NULL)
	{
		set_err(err, errlen, "out of memory");
		conn_free(c);
		return NULL;
	}
	c->in_cap = IN_BUF_HANDSHAKE;

	/* our challenge goes first, without waiting for the peer's */
	memset(&f, 0, sizeof(f));
	f.kind = CODEC_FRAME_CHALLENGE;
	f.version = HANDSHAKE_FRAME_VERSION;
	f.u.challenge.cluster_id = cfg->cluster_id;
	f.u.challenge.node_id = cfg->self_id;
	f.u.challenge.min_version = cfg_min_version(cfg);
	f.u.challenge.max_version = cfg_max_version(cfg);
	memcpy(f.u.challenge.nonce, c->my_nonce, CODEC_NONCE_LEN);
	if (!queue_handshake_frame(c, &f))
	{
		set_err(err, errlen, "could not queue the handshake challenge");
		conn_free(c);
		return NULL;
	}
	return c;
}

peer_conn *
conn_new_outbound(const transport_config *cfg, int fd,
				  raft_node_id expected_peer, uint64_t now_ms, char *err,
				  size_t errlen)
{
	return conn_create(cfg, fd, true, expected_peer, now_ms, err, errlen);
}

peer_conn *
conn_new_inbound(const transport_config *cfg, int fd, uint64_t now_ms,
				 char *err, size_t errlen)
{
	return conn_create(cfg, fd, false, RAFT_NO_NODE, now_ms, err, errlen);
}

/*
 * An outbound connection: has the TCP connect finished?  Returns true once
 * connected (moving to CONN_HANDSHAKE), false while in progress or after a
 * failure (then the connection is closed).
 */
static bool
check_connected(peer_conn *c)
{
	int			soerr = 0;
	socklen_t	len = sizeof(soerr);
	struct sockaddr_storage ss;
	socklen_t	sslen = sizeof(ss);

	if (c->state != CONN_CONNECTING)
		return c->state != CONN_CLOSED;
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		soerr = errno;
	if (soerr != 0)
	{
		closef(c, "connect failed: %s", strerror(soerr));
		return false;
	}
	if (getpeername(c->fd, (struct sockaddr *) &ss, &sslen) < 0)
	{
		if (errno == ENOTCONN)
			return false;		/* still in progress */
		closef(c, "connect failed: %s", strerror(errno));
		return false;
	}
	format_addr((struct sockaddr *) &ss, sslen, c->addr, sizeof(c->addr));
	c->state = CONN_HANDSHAKE;
	return true;
}

/*----------
 * Input
 *----------
 */

/* Largest frame the peer may send in the current state. */
static size_t
frame_limit(const peer_conn *c)
{
	return c->state == CONN_ESTABLISHED ? cfg_max_frame(c->cfg)
		: TRANSPORT_HANDSHAKE_MAX_FRAME;
}

/*
 * Look at the frame at in_start: 1 if it is complete (*flen = body size),
 * 0 if more bytes are needed, -1 if its length prefix is invalid.  With
 * do_close the connection is closed on -1.
 */
static int
peek_frame(peer_conn *c, size_t *flen, bool do_close)
{
	size_t		avail = c->in_end - c->in_start;
	size_t		limit = frame_limit(c);
	size_t		len;

	*flen = 0;
	if (avail < CODEC_FRAME_HEADER_SIZE)
		return 0;
	(void) codec_get_frame_len(c->in + c->in_start, &len);
	if (len == 0)
	{
		if (do_close)
			closef(c, "received an empty frame (length prefix 0)");
		return -1;
	}
	if (len > limit)
	{
		if (do_close)
			closef(c, "received a frame length of %zu bytes, above the limit of %zu%s",
				   len, limit,
				   c->state == CONN_ESTABLISHED ? "" : " before authentication");
		return -1;
	}
	*flen = len;
	return avail - CODEC_FRAME_HEADER_SIZE >= len ? 1 : 0;
}

/*
 * Make room in the input buffer for the next recv().  Returns false if
 * there is none because complete frames wait to be taken, or the
 * connection got closed (bad prefix, no memory).
 */
static bool
make_room(peer_conn *c)
{
	size_t		avail = c->in_end - c->in_start;
	size_t		want;
	size_t		flen;
	int			r;
	uint8_t    *p;

	if (avail == 0)
		c->in_start = c->in_end = 0;
	if (c->state == CONN_ESTABLISHED && c->in_cap < IN_BUF_SIZE)
		want = IN_BUF_SIZE;
	else if (c->in_end < c->in_cap)
		return true;
	else
	{
		if (c->in_start > 0)
		{
			memmove(c->in, c->in + c->in_start, avail);
			c->in_start = 0;
			c->in_end = avail;
			return true;
		}
		/* full from the start: grow only for a frame we accept */
		r = peek_frame(c, &flen, true);
		if (r != 0)
			return false;		/* complete frame waiting, or closed */
		want = CODEC_FRAME_HEADER_SIZE + flen;
		if (want <= c->in_cap)
			return false;		/* cannot happen: avail < want <= cap */
	}
	p = c->alloc.realloc(c->alloc.ctx, c->in, want);
	if (p == NULL)
	{
		closef(c, "out of memory for a %zu-byte input buffer", want);
		return false;
	}
	c->in = p;
	c->in_cap = want;
	return true;
}

/* After a frame was taken: give back a buffer grown for one large frame. */
static void
maybe_shrink_input(peer_conn *c)
{
	size_t		avail = c->in_end - c->in_start;
	uint8_t    *p;

	if (c->in_cap <= IN_BUF_SIZE || avail > IN_BUF_SIZE)
		return;
	p = c->alloc.alloc(c->alloc.ctx, IN_BUF_SIZE);
	if (p == NULL)
		return;					/* keep the big one; no harm */
	memcpy(p, c->in + c->in_start, avail);
	c->alloc.free(c->alloc.ctx, c->in);
	c->in = p;
	c->in_cap = IN_BUF_SIZE;
	c->in_start = 0;
	c->in_end = avail;
}

static void
close_at_eof(peer_conn *c)
{
	size_t		avail = c->in_end - c->in_start;
	size_t		len;

	if (avail == 0)
	{
		closef(c, "peer closed the connection%s",
			   c->state == CONN_ESTABLISHED ? "" : " during the handshake");
		return;
	}
	if (avail < CODEC_FRAME_HEADER_SIZE)
	{
		closef(c, "peer closed the connection after %zu bytes of a length prefix%s",
			   avail, c->state == CONN_ESTABLISHED ? "" : " during the handshake");
		return;
	}
	(void) codec_get_frame_len(c->in + c->in_start, &len);
	closef(c, "peer closed the connection in the middle of a frame (%zu of %zu bytes)%s",
		   avail - CODEC_FRAME_HEADER_SIZE, len,
		   c->state == CONN_ESTABLISHED ? "" : " during the handshake");
}

static void
handle_challenge(peer_conn *c, const codec_frame *f)
{
	const codec_handshake_challenge *ch = &f->u.challenge;
	const transport_config *cfg = c->cfg;
	uint32_t	lo;
	uint32_t	hi;
	codec_frame rf;

	if (c->got_challenge)
	{
		closef(c, "peer sent a second handshake challenge");
		return;
	}
	if (f->version != HANDSHAKE_FRAME_VERSION)
	{
		closef(c, "handshake challenge in frame version %u, must be %d",
			   f->version, HANDSHAKE_FRAME_VERSION);
		return;
	}
	if (ch->cluster_id != cfg->cluster_id)
	{
		closef(c, "peer node %llu belongs to cluster %llu, not to our cluster %llu",
			   (unsigned long long) ch->node_id,
			   (unsigned long long) ch->cluster_id,
			   (unsigned long long) cfg->cluster_id);
		return;
	}
	if (ch->node_id == cfg->self_id)
	{
		closef(c, "peer claims our own node id %llu",
			   (unsigned long long) ch->node_id);
		return;
	}
	if (c->expected_peer != RAFT_NO_NODE && ch->node_id != c->expected_peer)
	{
		closef(c, "dialed node %llu but the peer is node %llu",
			   (unsigned long long) c->expected_peer,
			   (unsigned long long) ch->node_id);
		return;
	}
	if (cfg->peer_allowed != NULL &&
		!cfg->peer_allowed(cfg->peer_allowed_arg, ch->node_id))
	{
		closef(c, "node %llu is not an allowed member of the cluster",
			   (unsigned long long) ch->node_id);
		return;
	}
	lo = ch->min_version > cfg_min_version(cfg) ? ch->min_version
		: cfg_min_version(cfg);
	hi = ch->max_version < cfg_max_version(cfg) ? ch->max_version
		: cfg_max_version(cfg);
	if (lo > hi)
	{
		closef(c, "no common protocol version: peer node %llu speaks %u..%u, we speak %u..%u",
			   (unsigned long long) ch->node_id, ch->min_version,
			   ch->max_version, cfg_min_version(cfg), cfg_max_version(cfg));
		return;
	}
	if (memcmp(ch->nonce, c->my_nonce, CODEC_NONCE_LEN) == 0)
	{
		closef(c, "peer reflected our own handshake nonce");
		return;
	}

	c->got_challenge = true;
	c->peer_id = ch->node_id;
	c->version = hi;
	memcpy(c->peer_nonce, ch->nonce, CODEC_NONCE_LEN);

	/* answer: the peer is the challenger, we are the responder */
	memset(&rf, 0, sizeof(rf));
	rf.kind = CODEC_FRAME_RESPONSE;
	rf.version = HANDSHAKE_FRAME_VERSION;
	rf.u.response.cluster_id = cfg->cluster_id;
	rf.u.response.node_id = cfg->self_id;
	rf.u.response.peer_id = c->peer_id;
	rf.u.response.version = c->version;
	transport_handshake_mac(cfg->secret, cfg->secret_len, cfg->cluster_id,
							c->peer_id, cfg->self_id, c->version,
							c->peer_nonce, c->my_nonce,
							rf.u.response.hmac);
	if (!queue_handshake_frame(c, &rf))
		closef(c, "out of memory queueing the handshake response");
}

static void
handle_response(peer_conn *c, const codec_frame *f)
{
	const codec_handshake_response *r = &f->u.response;
	const transport_config *cfg = c->cfg;
	uint8_t		want[CODEC_HMAC_LEN];
	bool		ok;

	if (!c->got_challenge)
	{
		closef(c, "handshake response before the peer's challenge");
		return;
	}
	if (f->version != HANDSHAKE_FRAME_VERSION)
	{
		closef(c, "handshake response in frame version %u, must be %d",
			   f->version, HANDSHAKE_FRAME_VERSION);
		return;
	}
	if (r->cluster_id != cfg->cluster_id)
	{
		closef(c, "handshake response names cluster %llu, not our cluster %llu",
			   (unsigned long long) r->cluster_id,
			   (unsigned long long) cfg->cluster_id);
		return;
	}
	if (r->node_id != c->peer_id)
	{
		closef(c, "handshake response from node %llu, but the challenge came from node %llu",
			   (unsigned long long) r->node_id,
			   (unsigned long long) c->peer_id);
		return;
	}
	if (r->peer_id != cfg->self_id)
	{
		closef(c, "handshake response addressed to node %llu, we are node %llu",
			   (unsigned long long) r->peer_id,
			   (unsigned long long) cfg->self_id);
		return;
	}
	if (r->version != c->version)
	{
		closef(c, "handshake response chose protocol version %u, expected %u",
			   r->version, c->version);
		return;
	}

	/* we are the challenger of this half */
	transport_handshake_mac(cfg->secret, cfg->secret_len, cfg->cluster_id,
							cfg->self_id, c->peer_id, c->version,
							c->my_nonce, c->peer_nonce, want);
	ok = chr_ct_equal(want, r->hmac, CODEC_HMAC_LEN);
	chr_secure_zero(want, sizeof(want));
	if (!ok)
	{
		closef(c, "handshake HMAC from node %llu does not verify (different cluster secret?)",
			   (unsigned long long) c->peer_id);
		return;
	}

	c->state = CONN_ESTABLISHED;
	c->deadline_ms = 0;
}

/* Consume and act on handshake frames while the handshake runs. */
static void
run_handshake(peer_conn *c)
{
	codec_frame f;
	size_t		flen;
	int			rc;

	while (c->state == CONN_HANDSHAKE)
	{
		if (peek_frame(c, &flen, true) <= 0)
			return;
		rc = codec_frame_decode(c->in + c->in_start + CODEC_FRAME_HEADER_SIZE,
								flen, &f, &c->alloc);
		c->in_start += CODEC_FRAME_HEADER_SIZE + flen;
		if (rc != CODEC_OK)
		{
			closef(c, "undecodable frame during the handshake: %s",
				   codec_status_name(rc));
			return;
		}
		if (f.kind == CODEC_FRAME_CHALLENGE)
			handle_challenge(c, &f);
		else if (f.kind == CODEC_FRAME_RESPONSE)
			handle_response(c, &f);
		else
			closef(c, "%s frame before the handshake completed",
				   frame_kind_name(f.kind));
		codec_frame_free(&f, &c->alloc);
	}
}

void
conn_on_readable(peer_conn *c)
{
	ssize_t		n;
	int			i;

	if (c == NULL || c->state == CONN_CLOSED || c->peer_eof)
		return;
	if (!check_connected(c))
		return;

	for (i = 0; i < MAX_READS_PER_CALL; i++)
	{
		if (!make_room(c))
			break;
		n = recv(c->fd, c->in + c->in_end, c->in_cap - c->in_end, 0);
		if (n > 0)
		{
			c->in_end += (size_t) n;
			run_handshake(c);
			if (c->state == CONN_CLOSED)
				return;
			continue;
		}
		if (n == 0)
		{
			c->peer_eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		closef(c, "read failed: %s", strerror(errno));
		return;
	}
	if (c->state == CONN_CLOSED)
		return;

	/*
	 * At EOF, frames received before it are still delivered, so only close
	 * now if there is nothing complete left to take.
	 */
	if (c->peer_eof && c->state != CONN_ESTABLISHED)
		close_at_eof(c);
}

int
conn_next_frame(peer_conn *c, codec_frame *out)
{
	const transport_config *cfg;
	size_t		flen;
	int			r;
	int			rc;

	memset(out, 0, sizeof(*out));
	if (c == NULL || c->state == CONN_CLOSED)
		return -1;
	if (c->state != CONN_ESTABLISHED)
		return 0;
	cfg = c->cfg;

	r = peek_frame(c, &flen, true);
	if (r < 0)
		return -1;
	if (r == 0)
	{
		if (!c->peer_eof)
			return 0;
		close_at_eof(c);
		return -1;
	}

	rc = codec_frame_decode(c->in + c->in_start + CODEC_FRAME_HEADER_SIZE,
							flen, out, &c->alloc);
	c->in_start += CODEC_FRAME_HEADER_SIZE + flen;
	if (rc != CODEC_OK)
	{
		closef(c, "undecodable frame: %s", codec_status_name(rc));
		return -1;
	}
	if (out->kind == CODEC_FRAME_CHALLENGE || out->kind == CODEC_FRAME_RESPONSE)
	{
		closef(c, "%s after the handshake completed", frame_kind_name(out->kind));
		codec_frame_free(out, &c->alloc);
		return -1;
	}
	if (out->version != c->version)
	{
		closef(c, "%s frame in protocol version %u, negotiated %u",
			   frame_kind_name(out->kind), out->version, c->version);
		codec_frame_free(out, &c->alloc);
		return -1;
	}

	/*
	 * A member could claim to be another one; all members share the secret,
	 * so this is a consistency check more than a defence, but it keeps a
	 * misrouted or forged message away from the core.
	 */
	if (out->kind == CODEC_FRAME_RAFT &&
		(out->u.raft.from != c->peer_id || out->u.raft.to != cfg->self_id ||
		 out->u.raft.cluster_id != cfg->cluster_id))
	{
		closef(c, "raft message from node %llu to node %llu in cluster %llu on the connection of node %llu",
			   (unsigned long long) out->u.raft.from,
			   (unsigned long long) out->u.raft.to,
			   (unsigned long long) out->u.raft.cluster_id,
			   (unsigned long long) c->peer_id);
		codec_frame_free(out, &c->alloc);
		return -1;
	}
	maybe_shrink_input(c);
	return 1;
}

/*----------
 * Output
 *----------
 */
void
conn_on_writable(peer_conn *c)
{
	ssize_t		n;

	if (c == NULL || c->state == CONN_CLOSED)
		return;
	if (!check_connected(c))
		return;

	while (c->out_start < c->out_end)
	{
		n = send(c->fd, c->out + c->out_start, c->out_end - c->out_start,
				 MSG_NOSIGNAL);
		if (n > 0)
		{
			c->out_start += (size_t) n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
			break;
		closef(c, "write failed: %s", strerror(errno));
		return;
	}
	if (c->out_start == c->out_end)
	{
		c->out_start = c->out_end = 0;
		if (c->out_cap > OUT_BUF_KEEP)
		{
			c->alloc.free(c->alloc.ctx, c->out);
			c->out = NULL;
			c->out_cap = 0;
		}
	}
}

/* Checks common to both queue functions; CONN_OK if len may be queued. */
static int
queue_check(peer_conn *c, size_t len)
{
	size_t		pending;

	if (c->state == CONN_CLOSED)
		return CONN_ERR_CLOSED;
	if (c->state != CONN_ESTABLISHED)
		return CONN_ERR_NOT_ESTABLISHED;
	if (len == 0 || len > cfg_max_frame(c->cfg))
		return CONN_ERR_TOO_LARGE;
	pending = c->out_end - c->out_start;
	if (pending > 0 &&
		pending + CODEC_FRAME_HEADER_SIZE + len > cfg_max_output(c->cfg))
		return CONN_ERR_BACKPRESSURE;
	if (!out_reserve(c, CODEC_FRAME_HEADER_SIZE + len))
		return CONN_ERR_NOMEM;
	return CONN_OK;
}

int
conn_queue_frame(peer_conn *c, const uint8_t *frame, size_t len)
{
	int			rc;

	if (c == NULL || (frame == NULL && len > 0))
		return CONN_ERR_INVALID;
	rc = queue_check(c, len);
	if (rc != CONN_OK)
		return rc;
	codec_put_frame_len(c->out + c->out_end, len);
	memcpy(c->out + c->out_end + CODEC_FRAME_HEADER_SIZE, frame, len);
	c->out_end += CODEC_FRAME_HEADER_SIZE + len;
	return CONN_OK;
}

int
conn_queue_codec_frame(peer_conn *c, const codec_frame *f)
{
	codec_frame copy;
	size_t		len;
	size_t		wrote;
	int			rc;

	if (c == NULL || f == NULL ||
		f->kind == CODEC_FRAME_CHALLENGE || f->kind == CODEC_FRAME_RESPONSE)
		return CONN_ERR_INVALID;
	if (c->state != CONN_ESTABLISHED)
		return c->state == CONN_CLOSED ? CONN_ERR_CLOSED : CONN_ERR_NOT_ESTABLISHED;
	copy = *f;
	copy.version = c->version;
	rc = codec_frame_encoded_size(&copy, &len);
	if (rc == CODEC_ERR_TOO_LARGE)
		return CONN_ERR_TOO_LARGE;
	if (rc != CODEC_OK)
		return CONN_ERR_INVALID;
	rc = queue_check(c, len);
	if (rc != CONN_OK)
		return rc;
	if (codec_frame_encode_into(&copy, c->out + c->out_end + CODEC_FRAME_HEADER_SIZE,
								c->out_cap - c->out_end - CODEC_FRAME_HEADER_SIZE,
								&wrote) != CODEC_OK)
		return CONN_ERR_INVALID;
	codec_put_frame_len(c->out + c->out_end, wrote);
	c->out_end += CODEC_FRAME_HEADER_SIZE + wrote;
	return CONN_OK;
}

void
conn_tick(peer_conn *c, uint64_t now_ms)
{
	if (c == NULL)
		return;
	if ((c->state == CONN_CONNECTING || c->state == CONN_HANDSHAKE) &&
		now_ms >= c->deadline_ms)
		closef(c, "%s did not complete within %llu ms",
			   c->state == CONN_CONNECTING ? "connect" : "handshake",
			   (unsigned long long) c->timeout_ms);
}

/*----------
 * Accessors
 *----------
 */
conn_state
conn_get_state(const peer_conn *c)
{
	return c->state;
}

int
conn_fd(const peer_conn *c)
{
	return c->fd;
}

bool
conn_is_outbound(const peer_conn *c)
{
	return c->outbound;
}

bool
conn_wants_read(const peer_conn *c)
{
	size_t		flen;

	if (c->state == CONN_CLOSED || c->state == CONN_CONNECTING || c->peer_eof)
		return false;
	/* while a received frame waits to be taken, reading more can wait */
	if (c->state == CONN_ESTABLISHED &&
		peek_frame((peer_conn *) c, &flen, false) != 0)
		return false;
	return true;
}

bool
conn_wants_write(const peer_conn *c)
{
	if (c->state == CONN_CLOSED)
		return false;
	return c->state == CONN_CONNECTING || c->out_end > c->out_start;
}

size_t
conn_output_pending(const peer_conn *c)
{
	return c->out_end - c->out_start;
}

raft_node_id
conn_peer_id(const peer_conn *c)
{
	return c->peer_id;
}

uint32_t
conn_version(const peer_conn *c)
{
	return c->version;
}

uint64_t
conn_deadline(const peer_conn *c)
{
	return c->deadline_ms;
}

const char *
conn_close_reason(const peer_conn *c)
{
	return c->state == CONN_CLOSED ? c->reason : NULL;
}

const char *
conn_peer_addr(const peer_conn *c)
{
	return c->addr;
}

const char *
conn_state_name(conn_state s)
{
	switch (s)
	{
		case CONN_CONNECTING:
			return "connecting";
		case CONN_HANDSHAKE:
			return "handshake";
		case CONN_ESTABLISHED:
			return "established";
		case CONN_CLOSED:
			return "closed";
	}
	return "unknown";
}

const char *
conn_status_name(int status)
{
	switch (status)
	{
		case CONN_OK:
			return "ok";
		case CONN_ERR_CLOSED:
			return "connection closed";
		case CONN_ERR_NOT_ESTABLISHED:
			return "handshake not finished";
		case CONN_ERR_BACKPRESSURE:
			return "output buffer full";
		case CONN_ERR_TOO_LARGE:
			return "frame empty or too large";
		case CONN_ERR_NOMEM:
			return "out of memory";
		case CONN_ERR_INVALID:
			return "invalid argument";
	}
	return "unknown status";
}

/*----------
 * Handshake MAC
 *----------
 */
void
transport_handshake_mac(const uint8_t *secret, size_t secret_len,
						uint64_t cluster_id, raft_node_id challenger,
						raft_node_id responder, uint32_t version,
						const uint8_t challenger_nonce[CODEC_NONCE_LEN],
						const uint8_t responder_nonce[CODEC_NONCE_LEN],
						uint8_t out[CODEC_HMAC_LEN])
{
	uint8_t		t[TRANSCRIPT_LEN];
	uint8_t    *p = t;

	memcpy(p, TRANSPORT_HANDSHAKE_LABEL, TRANSPORT_HANDSHAKE_LABEL_LEN);
	p += TRANSPORT_HANDSHAKE_LABEL_LEN;
	put_be64(p, cluster_id);
	p += 8;
	put_be64(p, challenger);
	p += 8;
	put_be64(p, responder);
	p += 8;
	put_be32(p, version);
	p += 4;
	memcpy(p, challenger_nonce, CODEC_NONCE_LEN);
	p += CODEC_NONCE_LEN;
	memcpy(p, responder_nonce, CODEC_NONCE_LEN);

	chr_hmac_sha256(secret, secret_len, t, sizeof(t), out);
}

/*----------
 * Reconnect backoff
 *----------
 */
static uint64_t
splitmix64(uint64_t *state)
{
	uint64_t	z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

void
backoff_init(transport_backoff *b, uint64_t min_ms, uint64_t max_ms,
			 uint64_t seed)
{
	b->min_ms = min_ms ? min_ms : TRANSPORT_BACKOFF_MIN_MS;
	b->max_ms = max_ms ? max_ms : TRANSPORT_BACKOFF_MAX_MS;
	if (b->max_ms < b->min_ms)
		b->max_ms = b->min_ms;
	b->failures = 0;
	b->last_delay_ms = 0;
	b->rng = seed;
}

uint64_t
backoff_next(transport_backoff *b, uint64_t now_ms)
{
	uint64_t	base;
	uint64_t	lo;
	uint64_t	delay;
	uint32_t	k;

	/* base = min(max, 2 * min * 2^failures), without overflowing */
	base = b->min_ms > b->max_ms / 2 ? b->max_ms : 2 * b->min_ms;
	for (k = 0; k < b->failures && base < b->max_ms; k++)
		base = base > b->max_ms / 2 ? b->max_ms : 2 * base;

	lo = base / 2 < b->min_ms ? b->min_ms : base / 2;
	delay = lo + splitmix64(&b->rng) % (base - lo + 1);

	if (b->failures < UINT32_MAX)
		b->failures++;
	b->last_delay_ms = delay;
	return now_ms + delay;
}

void
backoff_reset(transport_backoff *b)
{
	b->failures = 0;
	b->last_delay_ms = 0;
}
