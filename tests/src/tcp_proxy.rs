//! A TCP proxy whose link a test can cut and restore: one process's view of a server
//! (say, MySQL for one consumer) goes away while the server itself, and everyone else's
//! view of it, stays up. Cut: live connections are shut down and the port refuses new
//! ones (its listener is closed); restored: the same port listens again.
//!
//! Plain threads, not tokio tasks: the proxy must go on forwarding while a test's
//! runtime thread is blocked in a synchronous wait.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How often the accepting thread looks at the cut flag and for new connections.
const POLL: Duration = Duration::from_millis(10);

struct Link {
    cut: AtomicBool,
    stop: AtomicBool,
    /// Both ends of every live forwarded connection, to shut down on a cut.
    live: Mutex<Vec<TcpStream>>,
}

/// Forwards 127.0.0.1:`port` to a target address until dropped.
pub struct TcpProxy {
    pub port: u16,
    link: Arc<Link>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let port = crate::servers::free_port(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        let listener = bind(port);
        let link = Arc::new(Link {
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
        });
        let acceptor = {
            let link = link.clone();
            thread::spawn(move || accept_loop(listener, port, target, link))
        };
        TcpProxy {
            port,
            link,
            acceptor: Some(acceptor),
        }
    }

    /// Shuts down every forwarded connection and refuses new ones until [`restore`].
    ///
    /// [`restore`]: TcpProxy::restore
    pub fn cut(&self) {
        self.link.cut.store(true, Ordering::SeqCst);
        for stream in self.link.live.lock().expect("proxy lock").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Accepts and forwards connections again, on the same port.
    pub fn restore(&self) {
        self.link.cut.store(false, Ordering::SeqCst);
    }

    /// `mysql://user@host:port/db` with host:port replaced by this proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.link.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn bind(port: u16) -> TcpListener {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("proxy port");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    listener
}

/// Accepts while not cut (closing the listener while cut), until the proxy is dropped.
fn accept_loop(listener: TcpListener, port: u16, target: SocketAddr, link: Arc<Link>) {
    let mut listener = Some(listener);
    while !link.stop.load(Ordering::SeqCst) {
        if link.cut.load(Ordering::SeqCst) {
            listener = None;
            thread::sleep(POLL);
            continue;
        }
        let Some(open) = listener.as_ref() else {
            listener = Some(bind(port));
            continue;
        };
        match open.accept() {
            Ok((client, _)) => forward(client, target, &link),
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
}

/// Connects to `target` and copies both ways on two threads.
fn forward(client: TcpStream, target: SocketAddr, link: &Link) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect(target) else {
        return;
    };
    let (Ok(client_clone), Ok(server_clone)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut live = link.live.lock().expect("proxy lock");
        if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
            live.push(a);
            live.push(b);
        }
    }
    thread::spawn(move || copy(client, server));
    thread::spawn(move || copy(server_clone, client_clone));
}

/// Copies `from` to `to` until either side ends, then shuts both down.
fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
