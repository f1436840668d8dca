//! Handing freed heap memory back to the system after large, short-lived allocations:
//! reading a configuration, a large IPVS round, a status document or metrics page of a
//! large table (issue 16: at 10,000 virtual servers the reading alone peaks at about
//! 70 MB, and a status document took as much, that glibc's allocator would otherwise
//! keep as the process's resident memory for good).
//!
//! The work after such an event frees more as it goes (a reload's new model makes a new
//! desired table, the old one is dropped once the IPVS round has used it), so the
//! release waits until nothing has asked for one for [`SETTLE`]: [`release_soon`]
//! asks, [`run_releases`] releases. The allocator's settings ([`tune_allocator`]) and the
//! daemon's opt-out of transparent huge pages ([`keep_in_small_pages`]) keep what was handed
//! back from coming back resident.

use std::time::Duration;

use tokio::sync::{watch, Notify};

/// How long after the last [`release_soon`] the memory is released.
pub const SETTLE: Duration = Duration::from_secs(2);

/// An answer of at least this many bytes (a status document, a metrics page, a dump)
/// asks for a release.
pub const LARGE_ANSWER_BYTES: usize = 1 << 20;

static WANTED: Notify = Notify::const_new();

/// Blocks at least this large are mapped on their own and unmapped when freed
/// ([`tune_allocator`]).
pub const MMAP_THRESHOLD_BYTES: i32 = 128 * 1024;

/// Sets glibc's allocator up for a daemon that keeps a few MB and now and then reads or
/// writes tens of MB (figures at 10,000 virtual servers, idle daemon in the VM):
/// - one arena for every thread (`M_ARENA_MAX` = 1). By default each thread that
///   allocates gets an arena of its own, and each keeps what its thread once needed: two
///   such arenas held 14 MB of a 37 MB resident size;
/// - a fixed mmap threshold (`M_MMAP_THRESHOLD`, [`MMAP_THRESHOLD_BYTES`]). glibc raises
///   it to the size of the largest mapped block freed so far, so after the first large
///   round the buffers of every later one (netlink replies, the text view of the table)
///   came from the heap, among the live data, and their pages stayed resident: 27 MB
///   resident for 13 MB in use; with the threshold fixed, 19 MB.
///
/// haldir's threads allocate little and rarely at once: the shared arena's lock costs
/// nothing measurable. Call it first in `main`, before any thread starts.
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets parameters of the allocator; called before any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}

/// Keeps the daemon's memory in 4 KiB pages: opts it out of transparent huge pages
/// (`PR_SET_THP_DISABLE`, Linux 3.15; inherited by the script launcher, which gives scripts
/// the system's setting back). With THP set to `always` (Debian's default), khugepaged
/// merges any 2 MiB stretch of the heap that has one page in use into a huge page
/// (`max_ptes_none` 511): measured at 10,000 virtual servers in the VM, it turned the
/// idle daemon's free heap pages into 1.4-3.5 MB of resident memory every 10 s (its scan
/// period), until the next release split them again, and held 8 MB of the 14.8 MB heap in
/// huge pages. haldir's heap is a few MB of small allocations; a huge page saves it
/// nothing measurable. Errors (a kernel without THP) leave things as they were.
pub fn keep_in_small_pages() {
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Returns the allocator's free memory to the system (`malloc_trim(0)`: free pages of
/// every arena, not only the top of the heap). A few milliseconds at 10,000 virtual
/// servers; not for a hot path.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only walks the allocator's own lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs `build` on a thread of its own, then returns a copy of what it built made on the
/// calling thread; the original is dropped and the free memory released on another
/// thread while the caller goes on (at 10,000 virtual servers the two were a tenth of a
/// second of a start under emulation; [`wait_released`] waits for them). The copy is
/// compact, allocated once the builder's garbage (a configuration's reading and drafts)
/// is free, and the original then goes back whole, instead of the kept value's pieces
/// pinning pages scattered through the garbage (after a reload at 10,000 virtual servers,
/// 85 MB resident for about 30 MB of live data, before this). Builds in place if no
/// thread can be started. At start, call it after the script launcher is forked: the fork
/// needs the process to have one thread.
pub fn built_apart<T, F>(build: F) -> T
where
    T: Clone + Send + 'static,
    F: FnOnce() -> T + Send,
{
    let mut build = Some(build);
    let built = std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("haldir-build".into())
            .spawn_scoped(scope, || build.take().map(|build| build()));
        match spawned {
            Ok(handle) => Some(
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            ),
            Err(_) => None,
        }
    });
    let Some(Some(original)) = built else {
        // No thread: built here.
        return build
            .take()
            .map(|build| build())
            .expect("the builder ran nowhere");
    };
    let copy = original.clone();
    released_apart(original);
    copy
}

/// The thread dropping the last [`built_apart`] original, until [`wait_released`].
static RELEASING: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(None);

/// Drops `original` and then releases the free memory, on a thread of its own (here if
/// none can be started).
fn released_apart<T: Send + 'static>(original: T) {
    let mut releasing = RELEASING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(previous) = releasing.take() {
        let _ = previous.join();
    }
    let spawned = std::thread::Builder::new()
        .name("haldir-free".into())
        .spawn(move || {
            drop(original);
            release_free_memory();
        });
    match spawned {
        Ok(handle) => *releasing = Some(handle),
        // The closure, and the original with it, was dropped here.
        Err(_) => release_free_memory(),
    }
}

/// Waits until the last [`built_apart`] original is dropped and the free memory released:
/// until the thread doing it has ended (dropping privileges needs the process to have one
/// thread).
pub fn wait_released() {
    let pending = RELEASING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    if let Some(pending) = pending {
        let _ = pending.join();
    }
}

/// [`release_free_memory`] now, on the blocking pool, for the end of a large burst that
/// nothing follows (a round of thousands of operations). Call it inside the runtime.
pub fn release_now() {
    drop(tokio::task::spawn_blocking(release_free_memory));
}

/// Asks for [`release_free_memory`] once things settle ([`run_releases`]).
pub fn release_soon() {
    WANTED.notify_one();
}

/// [`release_soon`] after an answer of `bytes` bytes was built, when that is at least
/// [`LARGE_ANSWER_BYTES`].
pub fn release_after_answer(bytes: usize) {
    if bytes >= LARGE_ANSWER_BYTES {
        release_soon();
    }
}

/// Releases the free memory [`SETTLE`] after the last of a burst of [`release_soon`]
/// calls, on the blocking pool, until `shutdown` turns true.
pub async fn run_releases(shutdown: watch::Receiver<bool>) {
    settled_releases(&WANTED, shutdown, || async {
        let _ = tokio::task::spawn_blocking(release_free_memory).await;
    })
    .await;
}

async fn settled_releases<F, Fut>(wanted: &Notify, mut shutdown: watch::Receiver<bool>, release: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = wanted.notified() => {}
        }
        // Settled: no new request within SETTLE.
        loop {
            tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                () = wanted.notified() => continue,
                () = tokio::time::sleep(SETTLE) => break,
            }
        }
        release().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_built_apart_is_the_value_built_in_place() {
        let built = built_apart(|| (std::thread::current().id(), vec![String::from("x"); 3]));
        assert_ne!(
            built.0,
            std::thread::current().id(),
            "built on another thread"
        );
        assert_eq!(built.1, vec!["x"; 3]);
    }

    /// Notes the thread each of its values is dropped on.
    #[derive(Clone)]
    struct DropsNoted(Arc<std::sync::Mutex<Vec<std::thread::ThreadId>>>);

    impl Drop for DropsNoted {
        fn drop(&mut self) {
            self.0.lock().unwrap().push(std::thread::current().id());
        }
    }

    #[test]
    fn the_original_is_dropped_apart_and_gone_once_released() {
        let drops = Arc::new(std::sync::Mutex::new(Vec::new()));
        let copy = built_apart(|| DropsNoted(drops.clone()));
        wait_released();
        let here = std::thread::current().id();
        {
            let drops = drops.lock().unwrap();
            assert_eq!(drops.len(), 1, "the original, not the copy");
            assert_ne!(drops[0], here, "dropped on another thread");
        }
        assert!(
            RELEASING.lock().unwrap().is_none(),
            "nothing left to wait for"
        );
        drop(copy);
        assert_eq!(drops.lock().unwrap().last(), Some(&here));
    }

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_requests_is_one_release_once_it_settles() {
        let wanted = Arc::new(Notify::new());
        let releases = Arc::new(AtomicU32::new(0));
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn({
            let (wanted, releases) = (wanted.clone(), releases.clone());
            async move {
                settled_releases(&wanted, shutdown, || {
                    releases.fetch_add(1, Ordering::SeqCst);
                    async {}
                })
                .await;
            }
        });
        for _ in 0..5 {
            wanted.notify_one();
            tokio::time::sleep(SETTLE / 2).await;
        }
        assert_eq!(
            releases.load(Ordering::SeqCst),
            0,
            "not while requests come"
        );
        tokio::time::sleep(SETTLE).await;
        assert_eq!(releases.load(Ordering::SeqCst), 1, "one for the burst");
        tokio::time::sleep(SETTLE * 5).await;
        assert_eq!(releases.load(Ordering::SeqCst), 1, "none without a request");
        wanted.notify_one();
        tokio::time::sleep(SETTLE * 2).await;
        assert_eq!(releases.load(Ordering::SeqCst), 2);
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("the task ends on shutdown")
            .unwrap();
    }
}
