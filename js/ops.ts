// The kernel's request opcodes and flags (UBLK_IO_OP_*, UBLK_IO_F_* in
// include/uapi/linux/ublk_cmd.h), as the addon exports them from the UAPI
// bindings, under readable names for handlers.
import native from './native'

export const {
  UBLK_IO_OP_READ,
  UBLK_IO_OP_WRITE,
  UBLK_IO_OP_FLUSH,
  UBLK_IO_OP_DISCARD,
  UBLK_IO_OP_WRITE_SAME,
  UBLK_IO_OP_WRITE_ZEROES,
  UBLK_IO_F_FAILFAST_DEV,
  UBLK_IO_F_FAILFAST_TRANSPORT,
  UBLK_IO_F_FAILFAST_DRIVER,
  UBLK_IO_F_META,
  UBLK_IO_F_FUA,
  UBLK_IO_F_NOUNMAP,
} = native

/** A request's operation, as handlers see it. */
export type Op = 'read' | 'write' | 'flush' | 'discard' | 'writeSame' | 'writeZeroes' | 'unknown'

const opNames = new Map<number, Op>([
  [UBLK_IO_OP_READ, 'read'],
  [UBLK_IO_OP_WRITE, 'write'],
  [UBLK_IO_OP_FLUSH, 'flush'],
  [UBLK_IO_OP_DISCARD, 'discard'],
  [UBLK_IO_OP_WRITE_SAME, 'writeSame'],
  [UBLK_IO_OP_WRITE_ZEROES, 'writeZeroes'],
])

export function opName(op: number): Op {
  return opNames.get(op) ?? 'unknown'
}
