# shellcheck shell=bash disable=SC2034 # sourced: the variables are used by the scripts
# Shared settings for scripts/vm/prepare and scripts/vm/run. Sourced, not executed.
#
# The VM harness boots Debian's own kernels under QEMU (TCG) because the machine's
# kernel has no ublk driver. Everything downloaded or built lives in the cache dir.

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT_DIR=$(dirname "$(dirname "$VM_DIR")")
CACHE_DIR=${UBLK_VM_CACHE:-$PROJECT_DIR/.cache/vm}

# Kernels we know how to fetch: "6.1" (Debian 12's own, bookworm; built without ublk, so
# prepare builds ublk_drv from the same release's linux-source-6.1), "6.12"
# (bookworm-backports) and "7" (trixie-backports).
VM_KERNELS=(6.1 6.12 7)

# Exit code meaning "the VM itself failed" (no exit code came back from the guest).
VM_FAILED=86

vm_say() { printf 'ublk-vm: %s\n' "$*" >&2; }
vm_log() { if [[ ${UBLK_VM_VERBOSE:-} == 1 ]]; then vm_say "$@"; fi; }
vm_die() { vm_say "error: $*"; exit "$VM_FAILED"; }

# vm_kernel_list SPEC: print the kernels selected by SPEC ("6.1", "6.12", "7" or "all").
vm_kernel_list() {
  case $1 in
    all) printf '%s\n' "${VM_KERNELS[@]}" ;;
    6.1 | 6.12 | 7) printf '%s\n' "$1" ;;
    *) vm_die "UBLK_VM_KERNEL must be 6.1, 6.12, 7 or all (got '$1')" ;;
  esac
}
