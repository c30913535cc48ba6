//! Facts JavaScript must agree on with the core, exported from where they are
//! defined: the request and completion layout (`ublk_core::dispatch::wire`),
//! the rings' header (`ublk_core::ring::header`, which holds the rest of the
//! layout), the kernel's limits and the request ops and flags
//! of `include/uapi/linux/ublk_cmd.h`.

use napi_derive::napi;
use ublk_core::config;
use ublk_core::dispatch::wire;
use ublk_core::ring::header;
use ublk_core::sys;

/// Words per request in the request ring.
#[napi]
pub const REQUEST_WORDS: u32 = wire::REQUEST_WORDS as u32;
/// Word of a request: the io id (`tag | generation << 16`), to complete it with.
#[napi]
pub const REQUEST_IO_ID: u32 = wire::REQUEST_IO_ID as u32;
/// Word of a request: `op_flags` (op in the low 8 bits, `UBLK_IO_F_*` above).
#[napi]
pub const REQUEST_OP_FLAGS: u32 = wire::REQUEST_OP_FLAGS as u32;
/// Word of a request: the start sector's low 32 bits (512-byte sectors).
#[napi]
pub const REQUEST_START_SECTOR_LO: u32 = wire::REQUEST_START_SECTOR_LO as u32;
/// Word of a request: the start sector's high 32 bits.
#[napi]
pub const REQUEST_START_SECTOR_HI: u32 = wire::REQUEST_START_SECTOR_HI as u32;
/// Word of a request: its length in 512-byte sectors.
#[napi]
pub const REQUEST_NR_SECTORS: u32 = wire::REQUEST_NR_SECTORS as u32;
/// Words per completion: io id, result.
#[napi]
pub const COMPLETION_WORDS: u32 = wire::COMPLETION_WORDS as u32;
/// The tag bits of an io id.
#[napi]
pub const IO_ID_TAG_MASK: u32 = wire::IO_ID_TAG_MASK;

/// Ring header word: the request ring's tail (written by the queue thread).
#[napi]
pub const RING_REQUEST_TAIL: u32 = header::REQUEST_TAIL as u32;
/// Ring header word: 1 while a notification is unread (JS clears it before reading the tail).
#[napi]
pub const RING_NOTIFY: u32 = header::NOTIFY as u32;
/// Ring header word: the completion ring's tail (written by JS).
#[napi]
pub const RING_COMPLETION_TAIL: u32 = header::COMPLETION_TAIL as u32;
/// Ring header word: the completion ring's head (written by the queue thread).
#[napi]
pub const RING_COMPLETION_HEAD: u32 = header::COMPLETION_HEAD as u32;
/// Ring header word: 1 while the queue thread waits; whoever swaps it to 0 wakes it.
#[napi]
pub const RING_WAITING: u32 = header::WAITING as u32;

/// Ring header word: entries in each ring.
#[napi]
pub const RING_CAPACITY: u32 = header::CAPACITY as u32;
/// Ring header word: the word offset of the request entries.
#[napi]
pub const RING_REQUESTS_AT: u32 = header::REQUESTS_AT as u32;
/// Ring header word: the word offset of the completion entries.
#[napi]
pub const RING_COMPLETIONS_AT: u32 = header::COMPLETIONS_AT as u32;

/// The kernel's largest queue depth (`UBLK_MAX_QUEUE_DEPTH`).
#[napi]
pub const UBLK_MAX_QUEUE_DEPTH: u32 = config::UBLK_MAX_QUEUE_DEPTH;
/// The largest request buffer (bytes) a device can ask for.
#[napi]
pub const MAX_IO_BUF_BYTES: u32 = config::MAX_IO_BUF_BYTES;
/// The most hardware queues (one thread each) this package serves a device with.
#[napi]
pub const MAX_QUEUES: u32 = config::MAX_QUEUES as u32;

#[napi]
pub const UBLK_IO_OP_READ: u32 = sys::UBLK_IO_OP_READ;
#[napi]
pub const UBLK_IO_OP_WRITE: u32 = sys::UBLK_IO_OP_WRITE;
#[napi]
pub const UBLK_IO_OP_FLUSH: u32 = sys::UBLK_IO_OP_FLUSH;
#[napi]
pub const UBLK_IO_OP_DISCARD: u32 = sys::UBLK_IO_OP_DISCARD;
#[napi]
pub const UBLK_IO_OP_WRITE_SAME: u32 = sys::UBLK_IO_OP_WRITE_SAME;
#[napi]
pub const UBLK_IO_OP_WRITE_ZEROES: u32 = sys::UBLK_IO_OP_WRITE_ZEROES;
#[napi]
pub const UBLK_IO_F_FAILFAST_DEV: u32 = sys::UBLK_IO_F_FAILFAST_DEV;
#[napi]
pub const UBLK_IO_F_FAILFAST_TRANSPORT: u32 = sys::UBLK_IO_F_FAILFAST_TRANSPORT;
#[napi]
pub const UBLK_IO_F_FAILFAST_DRIVER: u32 = sys::UBLK_IO_F_FAILFAST_DRIVER;
#[napi]
pub const UBLK_IO_F_META: u32 = sys::UBLK_IO_F_META;
#[napi]
pub const UBLK_IO_F_FUA: u32 = sys::UBLK_IO_F_FUA;
#[napi]
pub const UBLK_IO_F_NOUNMAP: u32 = sys::UBLK_IO_F_NOUNMAP;
