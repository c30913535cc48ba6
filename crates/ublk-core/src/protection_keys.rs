//! A queue thread's memory protection key rights (the x86 PKRU register).
//!
//! V8 allocates a protection key for WebAssembly code
//! (`--wasm-memory-protection-keys`, on by default) and write-disables it in
//! the main thread, before any addon runs. Threads inherit PKRU from their
//! creator, so every queue thread started with V8's rights, while the
//! kernel's idle task and kernel threads run with the kernel's default ones.
//! Each switch between a queue thread and idle therefore rewrote PKRU: tens
//! of cycles on hardware, but QEMU's TCG flushes its whole emulated TLB on
//! every write. Measured on 7.3 under TCG at QD1 with fio on the other CPU,
//! that made the queue thread's kernel path 1.7x as costly as in a process
//! without V8 (`bench/results/2026-12-05-qd1-protection-keys.md`).
//!
//! A queue thread therefore takes the default rights for every key that its
//! inherited rights restrict ([`queue_rights`]). That only takes away access
//! it cannot need: each IO buffer is both read and written by the kernel on
//! the queue thread's behalf, which a write-disabled key would already have
//! made fail. Keys left fully open (someone may have tagged our memory with
//! them) stay open. `UBLK_QUEUE_PKRU=0` keeps the inherited rights.

/// PKRU as the kernel initialises it (`init_pkru_value`): key 0 open, keys
/// 1-15 access-disabled.
pub const DEFAULT_PKRU: u32 = 0x5555_5554;

/// Access-disable and write-disable bits of one key.
const KEY_BITS: u32 = 0b11;

/// The rights a queue thread takes: key 0 and every fully open key as
/// inherited, every restricted key as the kernel's default.
pub fn queue_rights(inherited: u32) -> u32 {
    (1..16).fold(inherited, |rights, key| {
        let shift = 2 * key;
        if inherited >> shift & KEY_BITS == 0 {
            rights
        } else {
            rights & !(KEY_BITS << shift) | DEFAULT_PKRU & (KEY_BITS << shift)
        }
    })
}

/// This thread's PKRU, or None where the OS has not enabled protection keys.
#[cfg(target_arch = "x86_64")]
pub fn current() -> Option<u32> {
    os_enabled().then(|| {
        let pkru: u32;
        // SAFETY: RDPKRU is defined when CR4.PKE is set, which OSPKE reports;
        // it reads a register and touches no memory.
        unsafe { std::arch::asm!("rdpkru", in("ecx") 0, out("eax") pkru, out("edx") _, options(nomem, nostack)) };
        pkru
    })
}

/// No PKRU outside x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub fn current() -> Option<u32> {
    None
}

/// Gives the calling thread [`queue_rights`] of its own. Returns the rights
/// before and after, or None where the OS has not enabled protection keys.
pub fn take_queue_rights() -> Option<(u32, u32)> {
    let inherited = current()?;
    let rights = queue_rights(inherited);
    if rights != inherited {
        write(rights);
    }
    Some((inherited, current()?))
}

/// Sets this thread's PKRU. Only called once `current` has found the OS
/// support (WRPKRU faults without it).
#[cfg(target_arch = "x86_64")]
fn write(rights: u32) {
    // SAFETY: WRPKRU changes this thread's rights only, and `queue_rights`
    // only restricts keys that were already restricted: the memory this
    // thread touches carries key 0 or an open key (see the module docs).
    unsafe { std::arch::asm!("wrpkru", in("eax") rights, in("ecx") 0, in("edx") 0, options(nostack)) };
}

/// Never called: `current` is None outside x86-64.
#[cfg(not(target_arch = "x86_64"))]
fn write(_rights: u32) {}

/// Whether the OS has enabled protection keys (CPUID.(EAX=7,ECX=0):ECX.OSPKE).
#[cfg(target_arch = "x86_64")]
fn os_enabled() -> bool {
    // A leaf above the CPU's highest one may read as another leaf's data,
    // so leaf 7 counts only where leaf 0 says it exists. The intrinsic
    // is safe in current Rust and was unsafe in older releases.
    #[allow(unused_unsafe)]
    // SAFETY: CPUID has no preconditions on x86-64.
    let (highest, leaf) = unsafe { (std::arch::x86_64::__cpuid(0).eax, std::arch::x86_64::__cpuid_count(7, 0)) };
    highest >= 7 && leaf.ecx & (1 << 4) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_keys_take_the_default_and_open_keys_stay_open() {
        assert_eq!(queue_rights(DEFAULT_PKRU), DEFAULT_PKRU);
        // V8's rights: key 1 write-disabled instead of access-disabled.
        assert_eq!(queue_rights(0x5555_5558), DEFAULT_PKRU);
        // Key 1 fully open: kept open.
        assert_eq!(queue_rights(0x5555_5550), 0x5555_5550);
        // Key 0 is never touched, restricted or not.
        assert_eq!(queue_rights(0x5555_5557), 0x5555_5557);
        // Key 15 write-disabled, key 2 open.
        assert_eq!(queue_rights(0x9555_5544), 0x5555_5544);
    }

    #[test]
    fn a_thread_takes_queue_rights_where_the_os_has_protection_keys() {
        let taken = std::thread::spawn(take_queue_rights).join().unwrap();
        match current() {
            None => assert_eq!(taken, None, "nothing to take without OS support"),
            Some(here) => {
                let (before, after) = taken.expect("the OS has protection keys");
                assert_eq!(before, here, "a new thread inherits its creator's rights");
                assert_eq!(after, queue_rights(before));
                assert_eq!(current(), Some(here), "other threads keep theirs");
            }
        }
    }

    /// The rights V8 leaves its own key with: write-disabled.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_key_write_disabled_like_v8_s_becomes_access_disabled() {
        if current().is_none() {
            return; // covered by the test above
        }
        std::thread::spawn(|| {
            const PKEY_DISABLE_WRITE: libc::c_long = 2;
            // SAFETY: pkey_alloc changes only this thread's rights.
            let key = unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, PKEY_DISABLE_WRITE) };
            assert!(key > 0, "pkey_alloc: {}", std::io::Error::last_os_error());
            let shift = 2 * key as u32;
            let (before, after) = take_queue_rights().unwrap();
            // SAFETY: the key is this test's own and tags no memory.
            unsafe { libc::syscall(libc::SYS_pkey_free, key) };
            assert_eq!(before >> shift & KEY_BITS, 0b10, "write-disabled as allocated");
            assert_eq!(after >> shift & KEY_BITS, 0b01, "access-disabled, the default");
            assert_eq!(after, queue_rights(before));
        })
        .join()
        .unwrap();
    }
}
