//! The only module of ringway-core with `unsafe`: thin wrappers over system calls that the
//! runtime does not offer.

use std::os::fd::{AsRawFd, FromRawFd};

/// What a non-blocking peek says about an idle pooled connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Nothing to read, not closed: safe to reuse.
    Idle,
    /// The peer closed it, reset it, or sent bytes nobody asked for.
    Dead,
}

/// Peeks at a socket without blocking to tell whether an idle connection is still usable.
pub fn liveness<S: AsRawFd>(socket: &S) -> Liveness {
    let mut byte = 0u8;
    // SAFETY: `socket` owns an open file descriptor for the duration of the call, and the
    // buffer is one valid, writable byte on our stack. MSG_PEEK leaves the data in place;
    // MSG_DONTWAIT makes the call return at once whatever the socket's blocking mode.
    let n = unsafe {
        libc::recv(
            socket.as_raw_fd(),
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted => Liveness::Idle,
            _ => Liveness::Dead,
        }
    } else {
        Liveness::Dead
    }
}

/// Moves the calling thread to the `SCHED_IDLE` policy: it runs only when no other thread
/// wants its CPU, and a shard that wakes up on that CPU preempts it at once. Work done on it
/// (compiling a large config, freeing an old one) then costs the shards nothing but idle
/// time, where a lower nice value would still take whole time slices from them.
pub fn idle_priority() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` on our stack for the duration of the call;
    // pid 0 is the calling thread, whose policy alone changes.
    let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Hands the allocator's free memory back to the system (glibc's `malloc_trim`): after a
/// large config was parsed or an old epoch freed, the allocator would otherwise keep the
/// peak of those tens of megabytes as the process's resident memory. A no-op elsewhere.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: `malloc_trim` takes a plain integer and only returns free pages of the
    // allocator's own heaps to the system; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A second descriptor of `socket`'s connection (close-on-exec), e.g. to read from it while
/// another operation writes through the first.
pub fn dup_socket<S: AsRawFd>(socket: &S) -> std::io::Result<std::net::TcpStream> {
    // SAFETY: `socket` owns an open descriptor for the duration of the call; F_DUPFD_CLOEXEC
    // creates a new one and touches nothing else.
    let fd = unsafe { libc::fcntl(socket.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created above, is open, and nothing else owns it.
    Ok(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// Shuts both directions of the connection on `fd` down, so that an operation waiting on it
/// (a write to a peer that stopped reading) fails at once. `fd` must belong to a socket the
/// caller holds open.
pub fn shutdown(fd: std::os::fd::RawFd) {
    // SAFETY: shutdown(2) takes a descriptor number and touches no memory of ours; the caller
    // holds the socket open, so `fd` names that socket and nothing else.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn idle_priority_applies_to_the_calling_thread_only() {
        // SAFETY (test): `sched_getscheduler(0)` only reads the calling thread's policy.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        let idle = std::thread::spawn(move || (idle_priority(), policy()))
            .join()
            .unwrap();
        assert!(idle.0.is_ok(), "{:?}", idle.0);
        assert_eq!(idle.1, libc::SCHED_IDLE);
        assert_eq!(policy(), before);
    }

    #[test]
    fn free_memory_goes_back_without_touching_live_memory() {
        let live: Vec<Box<[u8; 64]>> = (0..1000).map(|i| Box::new([i as u8; 64])).collect();
        let garbage: Vec<Box<[u8; 64]>> = (0..100_000).map(|_| Box::new([7; 64])).collect();
        drop(garbage);
        release_free_memory();
        assert!(live
            .iter()
            .enumerate()
            .all(|(i, b)| b.iter().all(|&x| x == i as u8)));
    }

    #[test]
    fn a_duplicate_reads_what_the_peer_sends() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let mut second = dup_socket(&client).unwrap();
        assert_ne!(second.as_raw_fd(), client.as_raw_fd());
        server.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        std::io::Read::read_exact(&mut second, &mut got).unwrap();
        assert_eq!(&got, b"hi");
    }

    #[test]
    fn idle_then_data_then_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        assert_eq!(liveness(&client), Liveness::Idle);
        server.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while liveness(&client) == Liveness::Idle && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(liveness(&client), Liveness::Dead);
        let client2 = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server2, _) = listener.accept().unwrap();
        drop(server2);
        while liveness(&client2) == Liveness::Idle && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert_eq!(liveness(&client2), Liveness::Dead);
    }
}
