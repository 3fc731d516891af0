/*-------------------------------------------------------------------------
 *
 * transport.h
 *	  TCP transport between chronicle_raft servers: non-blocking sockets,
 *	  length-prefixed frames, the mutual HMAC handshake of
 *	  docs/protocol.md, and a reconnect backoff.
 *
 * Plain C with POSIX sockets, no PostgreSQL header, no threads and no
 * clock reads: every function that depends on time takes now_ms from the
 * caller.  The background worker drives it from its single-threaded
 * WaitEventSet loop; the unit tests drive it over socketpair() and
 * loopback TCP.
 *
 * Driving a connection (one peer_conn per socket):
 *
 *	- wait for readability when conn_wants_read(), for writability when
 *	  conn_wants_write(); call conn_tick() when conn_deadline() passes;
 *	- on readable: conn_on_readable(), then conn_next_frame() until it
 *	  returns 0 or -1 (frames stay buffered until taken, and a full input
 *	  buffer stops reading, so the peer is slowed down rather than the
 *	  worker's memory growing);
 *	- on writable: conn_on_writable();
 *	- send with conn_queue_frame() / conn_queue_codec_frame() once
 *	  conn_state() is CONN_ESTABLISHED; CONN_ERR_BACKPRESSURE means the
 *	  peer is not reading fast enough: drop the message (Raft retries);
 *	- once conn_state() is CONN_CLOSED the socket is closed already: log
 *	  conn_close_reason(), stop waiting on the old descriptor, conn_free().
 *
 * src/net/transport.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_TRANSPORT_H
#define CHRONICLE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/codec.h"

/* Largest frame accepted before the peer is authenticated. */
#define TRANSPORT_HANDSHAKE_MAX_FRAME	512

/* Defaults for the zero fields of transport_config. */
#define TRANSPORT_DEFAULT_MAX_OUTPUT	((size_t) 16 * 1024 * 1024)
#define TRANSPORT_DEFAULT_HANDSHAKE_TIMEOUT_MS	5000

/* Room for a close reason, including the terminator. */
#define TRANSPORT_REASON_LEN	256

/* Fixed prefix of the handshake HMAC transcript (no terminator). */
#define TRANSPORT_HANDSHAKE_LABEL	"chronicle_raft handshake v1"
#define TRANSPORT_HANDSHAKE_LABEL_LEN	27

/* Returns true if node id may connect (a member, not removed). */
typedef bool (*transport_peer_check) (void *arg, raft_node_id id);

/* Fills buf with len cryptographically random bytes; 0 on success. */
typedef int (*transport_rng) (void *arg, uint8_t *buf, size_t len);

/*
 * Settings shared by all connections of a node.  Connections keep a pointer
 * to it, so it must outlive them and not change while they exist.
 */
typedef struct transport_config
{
	uint64_t	cluster_id;
	raft_node_id self_id;		/* never 0 */
	const uint8_t *secret;		/* shared cluster secret, never sent */
	size_t		secret_len;		/* at least 1; 32 random bytes recommended */
	uint32_t	min_version;	/* 0: CODEC_MIN_PROTOCOL_VERSION */
	uint32_t	max_version;	/* 0: CODEC_PROTOCOL_VERSION */
	size_t		max_frame_size; /* 0: CODEC_MAX_FRAME_SIZE; both directions */
	size_t		max_output;		/* 0: TRANSPORT_DEFAULT_MAX_OUTPUT */
	uint64_t	handshake_timeout_ms;	/* 0: the default; covers connect too */
	unsigned int tcp_user_timeout_ms;	/* 0: kernel default (Linux only) */
	transport_peer_check peer_allowed;	/* NULL: any id but our own */
	void	   *peer_allowed_arg;
	transport_rng rng;			/* NULL: /dev/urandom */
	void	   *rng_arg;
	const raft_allocator *allocator;	/* buffers and decoded frames; NULL:
										 * malloc */
} transport_config;

typedef enum conn_state
{
	CONN_CONNECTING = 0,		/* outbound, TCP connect in progress */
	CONN_HANDSHAKE = 1,			/* challenge sent, peer not yet verified */
	CONN_ESTABLISHED = 2,		/* peer verified; frames flow */
	CONN_CLOSED = 3				/* socket closed; see conn_close_reason() */
} conn_state;

/* Results of the queue functions; errors are negative. */
typedef enum conn_status
{
	CONN_OK = 0,
	CONN_ERR_CLOSED = -1,		/* the connection is closed */
	CONN_ERR_NOT_ESTABLISHED = -2,	/* handshake not finished */
	CONN_ERR_BACKPRESSURE = -3, /* output buffer full; frame not queued */
	CONN_ERR_TOO_LARGE = -4,	/* frame empty or above max_frame_size */
	CONN_ERR_NOMEM = -5,		/* allocation failed; frame not queued */
	CONN_ERR_INVALID = -6		/* bad argument or unencodable frame */
} conn_status;

typedef struct peer_conn peer_conn;

/*----------
 * Sockets.  All return 0 on success and -1 with a message in err
 * (errlen bytes, always terminated) on failure.  host is numeric or a name;
 * a name is resolved with getaddrinfo(), which may block, so the worker
 * should pass addresses it resolved once at startup.
 *----------
 */

/* A non-blocking listening socket; port 0 picks an ephemeral port. */
extern int	transport_listen(const char *host, int port, int *fd_out,
							 char *err, size_t errlen);

/* The local port of a bound socket, or -1. */
extern int	transport_local_port(int fd);

/*
 * Accept one pending connection: 1 with *fd_out set, 0 if none is pending,
 * -1 on error (the listener stays usable unless the error says otherwise).
 */
extern int	transport_accept(int listen_fd, int *fd_out, char *err,
							 size_t errlen);

/*
 * Start a non-blocking connect.  Success means "in progress or done":
 * hand the descriptor to conn_new_outbound(), which finds out which.
 */
extern int	transport_connect_start(const char *host, int port, int *fd_out,
									char *err, size_t errlen);

/*----------
 * Connections
 *----------
 */

/* NULL if cfg is usable, else why not. */
extern const char *transport_config_check(const transport_config *cfg);

/*
 * Wrap a socket in a connection and queue our challenge.  The connection
 * owns fd from here on, also on failure (NULL, reason in err).  An
 * outbound connection expects the peer to be expected_peer (0: any allowed
 * id); the handshake must finish by now_ms + handshake_timeout_ms.
 */
extern peer_conn *conn_new_outbound(const transport_config *cfg, int fd,
									raft_node_id expected_peer,
									uint64_t now_ms, char *err, size_t errlen);
extern peer_conn *conn_new_inbound(const transport_config *cfg, int fd,
								   uint64_t now_ms, char *err, size_t errlen);

/* Read what the socket has (bounded per call) and run the handshake. */
extern void conn_on_readable(peer_conn *c);

/*
 * Take the next received frame once established: 1 with *out filled (free
 * it with codec_frame_free(out, cfg->allocator)), 0 if no complete frame
 * is buffered, -1 if the connection is (now) closed.
 */
extern int	conn_next_frame(peer_conn *c, codec_frame *out);

/* Write as much queued output as the socket takes; completes a connect. */
extern void conn_on_writable(peer_conn *c);

/* Close the connection if its handshake deadline has passed. */
extern void conn_tick(peer_conn *c, uint64_t now_ms);

/*
 * Queue one serialized Frame (without the length prefix) for sending, e.g.
 * the output of raft_msg_encode().  The frame must carry conn_version().
 * A frame is accepted whole or not at all: if the output buffer already
 * holds data and the frame would take it above max_output, the result is
 * CONN_ERR_BACKPRESSURE.  A frame larger than max_output is accepted when
 * the buffer is empty, so no frame size below max_frame_size is unsendable.
 */
extern int	conn_queue_frame(peer_conn *c, const uint8_t *frame, size_t len);

/* The same for a frame struct, encoded in place with conn_version(). */
extern int	conn_queue_codec_frame(peer_conn *c, const codec_frame *f);

/* Close now (if not closed yet); the first reason given is kept. */
extern void conn_close(peer_conn *c, const char *reason);

/* Free a connection, closing it first if needed.  NULL is ignored. */
extern void conn_free(peer_conn *c);

extern conn_state conn_get_state(const peer_conn *c);
extern int	conn_fd(const peer_conn *c);	/* -1 once closed */
extern bool conn_is_outbound(const peer_conn *c);
extern bool conn_wants_read(const peer_conn *c);
extern bool conn_wants_write(const peer_conn *c);
extern size_t conn_output_pending(const peer_conn *c);

/* The peer's id: 0 until its challenge passed the checks. */
extern raft_node_id conn_peer_id(const peer_conn *c);

/* The negotiated protocol version: 0 until the peer's challenge passed. */
extern uint32_t conn_version(const peer_conn *c);

/* Handshake deadline (0 once established or closed). */
extern uint64_t conn_deadline(const peer_conn *c);

/* Why the connection was closed, or NULL while it is open. */
extern const char *conn_close_reason(const peer_conn *c);

/* The peer's address as "host:port" ("local" for a Unix socket pair). */
extern const char *conn_peer_addr(const peer_conn *c);

extern const char *conn_state_name(conn_state s);
extern const char *conn_status_name(int status);

/*
 * HMAC-SHA256(secret, transcript) of docs/protocol.md: the label, then
 * cluster_id, challenger and responder ids (8 bytes BE each), version (4
 * bytes BE), the challenger's nonce, the responder's nonce.
 */
extern void transport_handshake_mac(const uint8_t *secret, size_t secret_len,
									uint64_t cluster_id,
									raft_node_id challenger,
									raft_node_id responder,
									uint32_t version,
									const uint8_t challenger_nonce[CODEC_NONCE_LEN],
									const uint8_t responder_nonce[CODEC_NONCE_LEN],
									uint8_t out[CODEC_HMAC_LEN]);

/*----------
 * Reconnect backoff
 *
 * After the k-th consecutive failure (k = 0, 1, ...) the next attempt waits
 * a delay drawn uniformly from [base_k / 2, base_k], where base_k =
 * min(max_ms, 2 * min_ms * 2^k): 50..100 ms, 100..200 ms, ... up to
 * 2.5..5 s with the defaults, never below min_ms or above max_ms.  The
 * jitter keeps nodes that lost a peer at the same moment from redialing in
 * lockstep; its generator is seeded by the caller, so a run reproduces.
 * Reset when a connection reaches CONN_ESTABLISHED (not on mere TCP
 * connect, or a peer that accepts and then fails the handshake would be
 * redialed at the shortest interval forever).
 *----------
 */
typedef struct transport_backoff
{
	uint64_t	min_ms;
	uint64_t	max_ms;
	uint32_t	failures;		/* consecutive failures so far */
	uint64_t	last_delay_ms;
	uint64_t	rng;			/* splitmix64 state */
} transport_backoff;

#define TRANSPORT_BACKOFF_MIN_MS	50
#define TRANSPORT_BACKOFF_MAX_MS	5000

/* min_ms 0: TRANSPORT_BACKOFF_MIN_MS; max_ms 0: the default cap; max_ms
 * below min_ms: min_ms. */
extern void backoff_init(transport_backoff *b, uint64_t min_ms,
						 uint64_t max_ms, uint64_t seed);

/* Record a failure at now_ms; returns when to try again (absolute ms). */
extern uint64_t backoff_next(transport_backoff *b, uint64_t now_ms);

/* A connection succeeded: the next failure waits about min_ms again. */
extern void backoff_reset(transport_backoff *b);

#endif							/* CHRONICLE_TRANSPORT_H */
