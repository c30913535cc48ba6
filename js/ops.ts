// The kernel's request opcodes and flags (UBLK_IO_OP_*, UBLK_IO_F_* in
// include/uapi/linux/ublk_cmd.h), under readable names.

export const UBLK_IO_OP_READ = 0
export const UBLK_IO_OP_WRITE = 1
export const UBLK_IO_OP_FLUSH = 2
export const UBLK_IO_OP_DISCARD = 3
export const UBLK_IO_OP_WRITE_SAME = 4
export const UBLK_IO_OP_WRITE_ZEROES = 5

export const UBLK_IO_F_FAILFAST_DEV = 1 << 8
export const UBLK_IO_F_FAILFAST_TRANSPORT = 1 << 9
export const UBLK_IO_F_FAILFAST_DRIVER = 1 << 10
export const UBLK_IO_F_META = 1 << 11
export const UBLK_IO_F_FUA = 1 << 13
export const UBLK_IO_F_NOUNMAP = 1 << 15

/** A request's operation, as handlers see it. */
export type Op = 'read' | 'write' | 'flush' | 'discard' | 'writeSame' | 'writeZeroes' | 'unknown'

const opNames: Op[] = ['read', 'write', 'flush', 'discard', 'writeSame', 'writeZeroes']

export function opName(op: number): Op {
  return opNames[op] ?? 'unknown'
}
