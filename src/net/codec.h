/*-------------------------------------------------------------------------
 *
 * codec.h
 *	  Wire codec: the Raft core's messages and the transport's own frames
 *	  to and from protobuf (proto/chronicle.proto).
 *
 * Everything here is plain C with no PostgreSQL header, so the same code
 * runs in the background worker and in server-free unit tests.
 *
 * A frame on the wire is a 4-byte big-endian length followed by that many
 * bytes of one serialized chronicle.Frame (docs/protocol.md).  The encode
 * functions produce the serialized Frame only; codec_put_frame_len() and
 * codec_get_frame_len() handle the length prefix.
 *
 * Decoding never trusts its input: a buffer that is not a well-formed
 * Frame, or that decodes to values outside the ranges the core accepts
 * (unknown message type, body not matching type, too many entries,
 * non-contiguous entry indexes, ...), is rejected with an error code, and
 * nothing is left allocated.  Anything encode accepts, decode accepts and
 * reproduces field for field.
 *
 * src/net/codec.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef CHRONICLE_CODEC_H
#define CHRONICLE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

/* Protocol version spoken by this build (Frame.version). */
#define CODEC_PROTOCOL_VERSION		1
#define CODEC_MIN_PROTOCOL_VERSION	1

/* Largest serialized Frame accepted or produced (excludes the prefix). */
#define CODEC_MAX_FRAME_SIZE		((size_t) 64 * 1024 * 1024)

/* Bytes of the big-endian length prefix in front of each frame. */
#define CODEC_FRAME_HEADER_SIZE		4

/* Most entries one APPEND may carry. */
#define CODEC_MAX_ENTRIES			65536

/* Fixed sizes of the handshake's nonce and HMAC-SHA256. */
#define CODEC_NONCE_LEN				32
#define CODEC_HMAC_LEN				32

/* Result codes; all errors are negative. */
typedef enum codec_status
{
	CODEC_OK = 0,
	CODEC_ERR_NOMEM = -1,		/* allocator returned NULL */
	CODEC_ERR_INVALID = -2,		/* encode: struct violates the contract */
	CODEC_ERR_MALFORMED = -3,	/* decode: not a well-formed Frame */
	CODEC_ERR_TOO_LARGE = -4,	/* above CODEC_MAX_FRAME_SIZE */
	CODEC_ERR_VERSION = -5,		/* unsupported protocol version */
	CODEC_ERR_UNKNOWN_TYPE = -6,	/* unknown frame kind or message type */
	CODEC_ERR_RANGE = -7,		/* decoded value outside its valid range */
	CODEC_ERR_WRONG_KIND = -8	/* well-formed frame of another kind */
} codec_status;

/*----------
 * Transport frames other than Raft messages
 *----------
 */
typedef struct codec_handshake_challenge
{
	uint64_t	cluster_id;
	raft_node_id node_id;		/* sender, never 0 */
	uint32_t	min_version;	/* 1 <= min_version <= max_version */
	uint32_t	max_version;
	uint8_t		nonce[CODEC_NONCE_LEN];
} codec_handshake_challenge;

typedef struct codec_handshake_response
{
	uint64_t	cluster_id;
	raft_node_id node_id;		/* sender, never 0 */
	raft_node_id peer_id;		/* challenger, never 0 */
	uint32_t	version;		/* chosen version, never 0 */
	uint8_t		hmac[CODEC_HMAC_LEN];
} codec_handshake_response;

typedef struct codec_forward_batch
{
	uint64_t	batch_id;
	raft_node_id origin;		/* never 0 */
	const uint8_t *payload;		/* may be NULL when len == 0 */
	size_t		len;
	uint64_t	term;			/* the sender's term when it sent it */
} codec_forward_batch;

typedef enum codec_forward_outcome
{
	CODEC_FORWARD_COMMITTED = 0,
	CODEC_FORWARD_FAILED = 1,
	CODEC_FORWARD_UNKNOWN = 2,
	CODEC_FORWARD_NOT_LEADER = 3
} codec_forward_outcome;

typedef struct codec_forward_result
{
	uint64_t	batch_id;
	raft_node_id origin;		/* never 0 */
	codec_forward_outcome outcome;
	raft_term	term;
	raft_index	index;
	raft_node_id leader_hint;	/* 0 = unknown */
} codec_forward_result;

typedef enum codec_frame_kind
{
	CODEC_FRAME_NONE = 0,
	CODEC_FRAME_RAFT = 1,
	CODEC_FRAME_CHALLENGE = 2,
	CODEC_FRAME_RESPONSE = 3,
	CODEC_FRAME_FORWARD_BATCH = 4,
	CODEC_FRAME_FORWARD_RESULT = 5
} codec_frame_kind;

typedef struct codec_frame
{
	codec_frame_kind kind;
	uint32_t	version;		/* decode: the frame's; encode: 0 = current */
	union
	{
		raft_message raft;
		codec_handshake_challenge challenge;
		codec_handshake_response response;
		codec_forward_batch forward_batch;
		codec_forward_result forward_result;
	}			u;
} codec_frame;

/*----------
 * Functions
 *
 * Encoders allocate *out with malloc(); release it with codec_buf_free().
 * Decoders allocate through the given allocator (NULL: malloc/free); the
 * decoded struct owns its arrays and bytes until the matching free
 * function, and is zeroed on error so that freeing it is always safe.
 *----------
 */

/* Raft messages: a Frame whose body is a RaftMessage. */
extern int	raft_msg_encode(const raft_message *m, uint8_t **out, size_t *len);
extern int	raft_msg_decode(const uint8_t *buf, size_t len, raft_message *out,
							const raft_allocator *allocator);
extern void raft_msg_free(raft_message *m, const raft_allocator *allocator);

/* Any frame. */
extern int	codec_frame_encoded_size(const codec_frame *f, size_t *len);
extern int	codec_frame_encode_into(const codec_frame *f, uint8_t *buf,
									size_t cap, size_t *len);
extern int	codec_frame_encode(const codec_frame *f, uint8_t **out, size_t *len);
extern int	codec_frame_decode(const uint8_t *buf, size_t len, codec_frame *out,
							   const raft_allocator *allocator);
extern void codec_frame_free(codec_frame *f, const raft_allocator *allocator);
extern void codec_buf_free(uint8_t *buf);

/* The 4-byte big-endian length prefix. */
extern void codec_put_frame_len(uint8_t *hdr, size_t len);
extern int	codec_get_frame_len(const uint8_t *hdr, size_t *len);

/* Checks applied by both encode and decode; exported for callers' asserts. */
extern int	codec_validate_raft_msg(const raft_message *m);

extern const char *codec_status_name(int status);

#endif							/* CHRONICLE_CODEC_H */
