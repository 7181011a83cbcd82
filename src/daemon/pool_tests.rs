//! Tests of the run threads: no run waits behind another, and a thread is used again.

use std::sync::mpsc;
use std::time::Duration;

use super::Pool;

/// Generous: only reached when the pool is broken.
const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn a_run_never_waits_for_another_to_end() {
    let pool = Pool::new();
    let (first_tx, first_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<&str>();
    let done = done_tx.clone();
    // The first blocks until the second has run: with one thread for both, it would
    // wait forever.
    pool.run(move || {
        first_rx.recv_timeout(LIMIT).expect("the second run ran");
        done.send("first").expect("send");
    })
    .expect("a thread");
    // "second" is sent before the first is let go, so the order below cannot race.
    pool.run(move || {
        done_tx.send("second").expect("send");
        first_tx.send(()).expect("send");
    })
    .expect("a thread");
    assert_eq!(done_rx.recv_timeout(LIMIT), Ok("second"));
    assert_eq!(done_rx.recv_timeout(LIMIT), Ok("first"));
}

#[test]
fn a_thread_whose_run_ended_takes_the_next() {
    let pool = Pool::new();
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::new();
    for round in 0..20 {
        let tx = tx.clone();
        pool.run(move || tx.send(std::thread::current().id()).expect("send"))
            .expect("a thread");
        threads.push(rx.recv_timeout(LIMIT).expect("the run ran"));
        // Wait until the thread is back, waiting for work.
        let deadline = std::time::Instant::now() + LIMIT;
        while pool.available() != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: {} threads available",
                pool.available()
            );
            std::thread::yield_now();
        }
    }
    assert!(
        threads.iter().all(|t| *t == threads[0]),
        "one thread ran them all: {threads:?}"
    );
}
