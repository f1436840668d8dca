//! The kernel-test convention: tests that need a real IPVS kernel run inside the VM.
//!
//! The host kernel of the development and CI machines has no IPVS. `tests/vm/run.sh` builds
//! the test binaries on the host, boots Debian's `linux-image-amd64` in a virtme-ng VM
//! (software emulation) and runs every `tests/kernel_*.rs` binary inside it with
//! [`IN_VM_ENV`]` = 1`. Outside the VM each kernel test starts with
//!
//! ```no_run
//! # fn t() {
//! if !haldir_lab::vm::in_vm_or_skip("kernel_smoke::ipvsadm_programs_a_service") {
//!     return;
//! }
//! # }
//! ```
//!
//! so a plain `cargo test` on the host passes and says loudly why the test did not run.

/// Set (to any value) by `tests/vm/run.sh` for the test binaries it runs inside the VM.
pub const IN_VM_ENV: &str = "HALDIR_IN_VM";

/// True when the process runs inside the kernel-test VM ([`IN_VM_ENV`] is set).
pub fn in_vm() -> bool {
    std::env::var_os(IN_VM_ENV).is_some()
}

/// True inside the VM. Outside it prints a loud `SKIPPED <name>` line naming the command
/// that runs the test for real (uncaptured, so `cargo test` shows it), and returns false:
/// the caller returns at once.
pub fn in_vm_or_skip(name: &str) -> bool {
    if in_vm() {
        return true;
    }
    // Straight to the stderr handle, not `eprintln!`: the test harness captures the macros'
    // output of passing tests, and this line must be seen.
    use std::io::Write;
    // One write of the whole line, so that another test thread's output cannot land inside
    // it (tests/run.sh counts these lines).
    let line = format!("SKIPPED {name}: needs the IPVS kernel; run tests/vm/run.sh\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_the_vm_the_guard_skips() {
        // The unit tests never run with HALDIR_IN_VM (the VM runs only tests/kernel_*).
        if std::env::var_os(IN_VM_ENV).is_none() {
            assert!(!in_vm_or_skip("vm::tests::outside_the_vm_the_guard_skips"));
        }
    }
}
