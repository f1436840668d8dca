//! The control socket is never reachable with a wider mode than 0600: it is bound in
//! a private directory, made 0600 there and only then renamed into place, so there is
//! no instant between bind and chmod when another user could connect (issue 15,
//! item 8). A watcher polls the socket's path while it is bound over and over.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_never_appears_with_a_mode_wider_than_0600() {
    let dir = std::env::temp_dir().join(format!("haldir-control-mode-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("haldir.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = std::thread::spawn({
        let (path, stop) = (path.clone(), stop.clone());
        move || {
            let (mut seen, mut wide) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                if let Ok(meta) = std::fs::symlink_metadata(&path) {
                    if meta.file_type().is_socket() {
                        seen += 1;
                        let mode = meta.permissions().mode() & 0o777;
                        if mode != 0o600 {
                            wide.push(mode);
                        }
                    }
                }
            }
            (seen, wide)
        }
    });
    for _ in 0..500 {
        let listener = haldir::control::bind(&path).unwrap();
        drop(listener);
        std::fs::remove_file(&path).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (seen, wide) = watcher.join().unwrap();
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    println!("the watcher saw the socket {seen} times");
    assert!(
        wide.is_empty(),
        "the socket was seen {} times (of {seen}) with a mode other than 0600: {:o}",
        wide.len(),
        wide[0]
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(
        seen > 0,
        "the watcher never saw the socket: the test proves nothing"
    );
}
