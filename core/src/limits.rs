//! Named limits. Every size or count the system bounds is declared here once.

/// Largest chunk of object data a client may send in one `PutChunk` message.
pub const CLIENT_CHUNK_BYTES_MAX: usize = 1024 * 1024;

/// Size of the chunks objects are stored (and replicated) in. Every stored chunk but
/// the last of an object has exactly this size, which makes ranged reads arithmetic.
/// 256 KiB keeps sled values small enough to avoid its blob-file overhead (STACK.md).
pub const STORAGE_CHUNK_BYTES: usize = 256 * 1024;

/// Objects of at most this many bytes travel inside one Raft entry and are stored
/// in the metadata engine; larger ones are chunked into the blob store. sled keeps
/// values much above this resident in memory (measured: 16 KiB values held 27% of
/// what was written, 256 KiB values all of it), so only small objects go inline.
pub const INLINE_BYTES_MAX: usize = 8 * 1024;

/// Default maximum object size (5 GiB), configurable per node.
pub const OBJECT_BYTES_MAX_DEFAULT: u64 = 5 * 1024 * 1024 * 1024;

/// Longest object key, in bytes (Azure allows 1024 characters).
pub const OBJECT_KEY_BYTES_MAX: usize = 1024;

/// Total size of user metadata names and values on one object (Azure: 8 KiB).
pub const METADATA_BYTES_MAX: usize = 8 * 1024;

/// Longest content type string.
pub const CONTENT_TYPE_BYTES_MAX: usize = 256;

/// Default and maximum page size of an object listing.
pub const LIST_PAGE_DEFAULT: u32 = 1000;
/// Maximum page size of an object listing.
pub const LIST_PAGE_MAX: u32 = 5000;

/// Largest gRPC message a node accepts from clients: one chunk plus framing.
pub const CLIENT_MESSAGE_BYTES_MAX: usize = CLIENT_CHUNK_BYTES_MAX + 64 * 1024;

/// Largest gRPC message between nodes (Raft append batches of object chunks).
pub const PEER_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;
