//! The kernel's truth against a racing attacker: what the chain records is what the kernel
//! used, not what a caller's memory held a moment earlier or later.
//!
//! Each test plays the attacker of issue 12: one thread rewrites the buffer another thread
//! passes to a syscall, and every recorded event is checked against the object the kernel
//! actually acted on (the opened file's inode; the argv the new program received).

use std::{
    ffi::CString,
    os::unix::fs::MetadataExt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use lineage_tests::Agent;
use serde_json::Value;

fn gettid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { libc::gettid() as u32 }
}

/// A path buffer shared with a thread that flips one byte of it as fast as it can.
struct Flipper {
    buf: Arc<Vec<std::sync::atomic::AtomicU8>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Flipper {
    /// `text` NUL-terminated; the byte at `at` alternates between `a` and `b`.
    fn start(text: &str, at: usize, a: u8, b: u8) -> Flipper {
        let buf: Arc<Vec<std::sync::atomic::AtomicU8>> = Arc::new(
            text.bytes()
                .chain([0])
                .map(std::sync::atomic::AtomicU8::new)
                .collect(),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let (b2, s2) = (buf.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut flips = 0u64;
            while !s2.load(Ordering::Relaxed) {
                b2[at].store(a, Ordering::Relaxed);
                b2[at].store(b, Ordering::Relaxed);
                flips += 1;
            }
            flips
        });
        Flipper {
            buf,
            stop,
            thread: Some(thread),
        }
    }

    fn ptr(&self) -> *const libc::c_char {
        self.buf.as_ptr().cast()
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

#[test]
fn a_racing_thread_cannot_make_the_chain_record_another_file_than_the_one_opened() {
    const TRIES: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (a, b) = (root.join("race-a"), root.join("race-b"));
    std::fs::write(&a, b"a").unwrap();
    std::fs::write(&b, b"b").unwrap();
    let (ino_a, ino_b) = (
        std::fs::metadata(&a).unwrap().ino(),
        std::fs::metadata(&b).unwrap().ino(),
    );
    let text = a.to_str().unwrap().to_owned();
    let at = text.len() - 1;

    let agent = Agent::start(&["--print", "json"]);
    let flipper = Flipper::start(&text, at, b'a', b'b');
    let me = gettid();
    // What the kernel opened, in call order.
    let mut opened = Vec::with_capacity(TRIES);
    for _ in 0..TRIES {
        // SAFETY: a NUL-terminated buffer that stays alive; the fd is closed at once.
        let fd = unsafe { libc::openat(libc::AT_FDCWD, flipper.ptr(), libc::O_RDONLY) };
        assert!(fd >= 0, "open failed: {}", std::io::Error::last_os_error());
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and out pointer.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        unsafe { libc::close(fd) };
        opened.push(st.st_ino);
    }
    let flips = flipper.stop();
    std::thread::sleep(Duration::from_millis(200));
    let run = agent.stop();

    let a_str = a.to_str().unwrap();
    let b_str = b.to_str().unwrap();
    let recorded: Vec<&Value> = run
        .of_kind("file")
        .filter(|e| e["pid"] == me && e["op"] == "open")
        .filter(|e| {
            let p = e["path"].as_str().unwrap_or_default();
            p == a_str || p == b_str
        })
        .collect();
    assert_eq!(
        run.declared_loss("file") + run.unexplained_loss(),
        0,
        "no loss during the race (it would make the comparison incomplete)"
    );
    assert_eq!(
        recorded.len(),
        TRIES,
        "every open is on the record exactly once"
    );
    let opened_a = opened.iter().filter(|&&i| i == ino_a).count();
    let opened_b = opened.iter().filter(|&&i| i == ino_b).count();
    assert!(
        opened_a > 0 && opened_b > 0,
        "the race is real: both files were opened ({opened_a} a, {opened_b} b, {flips} flips)"
    );
    let mut mismatches = 0;
    let mut given_differs = 0;
    for (e, ino) in recorded.iter().zip(&opened) {
        let expected = if *ino == ino_a { a_str } else { b_str };
        if e["path"] != expected || e["ino"] != *ino || e["path_source"] != "file" {
            mismatches += 1;
        }
        if e["path_given"].is_string() {
            given_differs += 1;
        }
    }
    println!(
        "racing open: {TRIES} opens ({opened_a} a, {opened_b} b, {flips} flips); \
         {mismatches} recorded a different file than the kernel opened; \
         {given_differs} had a different name in the caller's memory at exit (kept as path_given)"
    );
    assert_eq!(
        mismatches, 0,
        "the chain records the file the kernel opened"
    );
}
