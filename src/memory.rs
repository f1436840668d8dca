//! Handing freed heap memory back to the system after the large, short-lived
//! allocations of reading a configuration (issue 16: at 10,000 virtual servers the
//! reading peaks at about 100 MB that glibc's allocator would otherwise keep as the
//! process's resident memory for good).

/// Returns the allocator's free memory to the system (`malloc_trim(0)`: free pages of
/// every arena, not only the top of the heap). A few milliseconds at 10,000 virtual
/// servers; call after a configuration was read, not on a hot path.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only walks the allocator's own lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
